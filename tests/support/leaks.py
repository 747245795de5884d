"""How much of a key a text gives away."""

from __future__ import annotations

# Runs shorter than the redaction's own threshold are not counted: any text
# shares a few characters with a key.
from adapters.base import MIN_FRAGMENT

__all__ = ["MIN_FRAGMENT", "fragment"]


def fragment(key: str, text: str) -> int:
    """The longest run of ``key``'s characters found in ``text`` (0 if under MIN_FRAGMENT)."""
    best = 0
    for start in range(len(key)):
        for end in range(len(key), start + max(best, MIN_FRAGMENT - 1), -1):
            if key[start:end] in text:
                best = end - start
                break
    return best

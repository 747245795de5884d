"""Checks of one value, shared by every settings type and parser.

One rule per kind of value ("a finite number of seconds", "a tag", "an
http(s) URL", "a token"), so a message says the same thing wherever the value
is written: a config file, a settings object built in code, a query string.
"""

from __future__ import annotations

import math
import re
from typing import Final
from urllib.parse import urlsplit

__all__ = [
    "ENV_NAME",
    "MAX_TAGS",
    "TAG_ACCEPTED",
    "TAG_PATTERN",
    "TOKEN_CHARS",
    "ConfigError",
    "check_seconds",
    "finite",
    "seconds_problem",
    "tag_problem",
    "url_problem",
]

#: A tag: letters, digits and ``_ . : -`` (Kubernetes-label-like), non-empty.
TAG_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:-]+")
#: At most this many tags on one model or provider entry (and in one filter).
MAX_TAGS: Final = 32
TAG_ACCEPTED: Final = (
    f"a list of at most {MAX_TAGS} distinct non-empty strings of letters, digits and _ . : -, "
    'e.g. ["prod", "eu"]'
)
#: An environment variable's name.
ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: A key or token: visible ASCII, no spaces (it travels in a header).
TOKEN_CHARS: Final = re.compile(r"[\x21-\x7e]+")


class ConfigError(ValueError):
    """An invalid configuration; ``str()`` is the user-facing message."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {p}" for p in problems]
        super().__init__("\n".join(lines))


def finite(value: float) -> bool:
    """``math.isfinite``, but False (not OverflowError) for an int too large for a float.

    TOML and JSON both accept integers of any size; comparing one with a float
    limit would otherwise raise instead of reporting a bad value.
    """
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def seconds_problem(value: object, *, zero_ok: bool = False) -> str | None:
    """Why ``value`` is not a duration in seconds, or None when it is one.

    A duration is a finite int or float, > 0 (or >= 0 where 0 means "off").
    ``True`` is not a duration, although Python counts it as the int 1.
    """
    rule = ">= 0 (0 = off)" if zero_ok else "> 0"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a finite number of seconds {rule}, got {value!r}"
    if not finite(value) or value < 0 or (value == 0 and not zero_ok):
        return f"must be a finite number of seconds {rule}, got {value!r}"
    return None


def check_seconds(name: str, value: object, *, zero_ok: bool = False) -> float:
    """``value`` as float seconds; ``ValueError("<name> must be ...")`` when it is not one."""
    problem = seconds_problem(value, zero_ok=zero_ok)
    if problem is not None:
        raise ValueError(f"{name} {problem}")
    assert isinstance(value, int | float)
    return float(value)


def tag_problem(tag: object) -> str | None:
    """Why ``tag`` is not a valid tag, or None when it is (config and filters share it)."""
    if not isinstance(tag, str):
        return f"a tag must be a string, got {type(tag).__name__}"
    if not TAG_PATTERN.fullmatch(tag):
        shown = tag if len(tag) <= 40 else tag[:40] + "..."
        return f"{shown!r} is not a valid tag (letters, digits and _ . : - only, non-empty)"
    return None


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an http(s) base URL, or None (keys never go in a URL)."""
    if not url.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a port out of range
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if not parts.hostname:
        return "has no host name"
    if parts.query or parts.fragment:
        return "must not have a query or fragment (keys go in api_key_env, never in the URL)"
    return None

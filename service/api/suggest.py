"""What a 404 for an unknown model or provider name lists: a few close names, never all.

With ten thousand models, listing every configured name answered a 50-byte
request with more than a megabyte, to anyone. Now ``available`` lists every
configured name only while there are at most :data:`LISTED` of them; past
that, at most :data:`CLOSE` names close to the one asked for (difflib's
ratio), and the message says how many are configured.

The close names must not cost what the list did: difflib over every name
takes ~0.1 s for a name shaped like the configured ones (10,000 names), per
request, for an anonymous caller. So a trigram index, built once per set of
names, picks a few dozen candidates first; only those are compared, and a
trigram that most names share (``mod``, ``el-``) does not count: it says
nothing about which name was meant.
"""

from __future__ import annotations

import difflib
import functools
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final

__all__ = ["CLOSE", "LISTED", "suggest"]

#: Every configured name is listed while there are at most this many.
LISTED: Final = 10
#: Past that, at most this many close names.
CLOSE: Final = 5
#: How much of an asked-for name is compared (a name may be 4,000 characters long).
_MAX_COMPARED: Final = 100
#: Unknown names (of one batch) that get suggestions; the others are only named.
_MAX_WANTED: Final = 3
#: Candidates compared with difflib, the best by shared trigrams.
_POOL: Final = 40


def _trigrams(name: str) -> set[str]:
    padded = f"  {name.lower()} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


class _Index:
    """Trigram -> the names having it, for picking candidates without comparing them all."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.postings: dict[str, list[int]] = {}
        for number, name in enumerate(names):
            for gram in _trigrams(name[:_MAX_COMPARED]):
                self.postings.setdefault(gram, []).append(number)
        # A trigram in more names than this tells too little to be worth counting.
        self.common = max(LISTED, len(names) // 10)

    def close(self, word: str, n: int) -> list[str]:
        word = word[:_MAX_COMPARED]
        counts: Counter[int] = Counter()
        for gram in _trigrams(word):
            posting = self.postings.get(gram)
            if posting is not None and len(posting) <= self.common:
                counts.update(posting)
        pool = [self.names[number] for number, _ in counts.most_common(_POOL)]
        return difflib.get_close_matches(word, pool, n=n, cutoff=0.6)


@functools.lru_cache(maxsize=8)
def _index(names: tuple[str, ...]) -> _Index:
    return _Index(names)


def suggest(wanted: Iterable[str], names: Sequence[str]) -> list[str]:
    """What a 404 lists for ``wanted`` (unknown names): all ``names`` if few, else a few close ones."""
    if len(names) <= LISTED:
        return list(names)
    index = _index(tuple(names))
    found: list[str] = []
    for word in list(wanted)[:_MAX_WANTED]:
        for name in index.close(word, CLOSE):
            if name not in found:
                found.append(name)
    return found[:CLOSE]

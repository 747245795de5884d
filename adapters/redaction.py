"""Secrets, and keeping them out of every text that leaves an adapter.

A :class:`Secret` never shows itself; :func:`redact` masks known secrets,
key-shaped tokens and what a cut left of a secret in a text, and
:func:`scrub` makes upstream text a one-line message: redacted whole first,
then cut (a cut first could leave the start of a key that redaction no
longer recognises).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

__all__ = ["MIN_FRAGMENT", "RawSecrets", "Secret", "prepare_secrets", "redact", "scrub"]

#: Longest upstream text kept in an error message.
_MAX_ERROR_CHARS = 200


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or f-strings.

    API keys travel through config objects, adapters and error paths; wrapping
    them means an accidental ``print(config)`` or log line cannot leak one.
    Call :meth:`reveal` at the one place the raw value is needed (a header).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:  # pickling would write the key to disk in clear
        raise TypeError("Secret values cannot be pickled")


# Shapes of provider keys, redacted even when they are not *our* key (an
# upstream echoing some other key back in an error body is still a leak).
_KEY_PATTERNS = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|sk-ant-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._\-]{8,})"
)
#: The shortest piece of a known secret that counts as one when a cut leaves it.
MIN_FRAGMENT: Final = 4
#: Where a text has been cut: an ellipsis (ours is "…"), or a mask such as our
#: "***" or an upstream's own ("sk-abc1****wxyz").
_CUT_MARKS = re.compile(r"…|\.\.\.|\*+")
#: The start of a provider-shaped key left at a cut edge (too short for _KEY_PATTERNS).
_KEY_START_AT_EDGE = re.compile(r"(?<![A-Za-z0-9_\-])(?:sk-|AIza)[A-Za-z0-9_\-]+\Z")
_MASK: Final = "***"
_MAX_MARKS: Final = 64


class RawSecrets(tuple[str, ...]):
    """Secret values prepared for masking: 4+ characters, longest first, each once.

    What :func:`redact` and :func:`scrub` work from; made once (see
    :func:`prepare_secrets`), it is used as it is by every text redacted with
    it, instead of being rebuilt from every secret each time.
    """

    __slots__ = ()

    def __repr__(self) -> str:  # the values are keys
        return f"RawSecrets(<{len(self)} values>)"

    __str__ = __repr__


def prepare_secrets(secrets: Iterable[Secret | str | None]) -> RawSecrets:
    """``secrets`` prepared once for many calls of :func:`redact` or :func:`scrub`."""
    return _raw_secrets(secrets)


def _raw_secrets(secrets: Iterable[Secret | str | None]) -> RawSecrets:
    """The secrets' values worth masking (4+ characters), longest first, each once."""
    if isinstance(secrets, RawSecrets):
        return secrets
    raws = {
        raw
        for secret in secrets
        if (raw := secret.reveal() if isinstance(secret, Secret) else secret)
        and isinstance(raw, str)
        and len(raw) >= MIN_FRAGMENT
    }
    # Longest first: a secret that contains another is masked whole.
    return RawSecrets(sorted(raws, key=len, reverse=True))


def _mask_whole(text: str, raws: Sequence[str]) -> str:
    """``text`` with every whole occurrence of each of ``raws`` masked, in their order."""
    for raw in raws:
        text = text.replace(raw, _MASK)
    return text


def _prefix_ending_at(text: str, end: int, raw: str) -> int:
    """Length of the longest piece of ``text`` ending at ``end`` that starts ``raw`` (>= 4)."""
    head = raw[:MIN_FRAGMENT]
    at = text.find(head, max(0, end - len(raw)), end)
    while at != -1 and end - at >= MIN_FRAGMENT:
        if raw.startswith(text[at:end]):
            return end - at  # the first hit is the longest
        at = text.find(head, at + 1, end)
    return 0


def _suffix_starting_at(text: str, start: int, raw: str) -> int:
    """Length of the longest piece of ``text`` starting at ``start`` that ends ``raw`` (>= 4)."""
    tail = raw[-MIN_FRAGMENT:]
    stop = min(len(text), start + len(raw))
    at = text.rfind(tail, start, stop)
    while at != -1:
        if raw.endswith(text[start : at + MIN_FRAGMENT]):
            return at + MIN_FRAGMENT - start  # the last hit is the longest
        at = text.rfind(tail, start, at + MIN_FRAGMENT - 1)
    return 0


def _mask_cut_fragments(text: str, raws: Sequence[str]) -> str:
    """Mask what a cut left of a secret: its start before a cut edge, its end after one.

    Edges are the ends of the text (trailing and leading whitespace aside)
    and the cut marks in it (an ellipsis, a run of ``*``). Text cut by someone
    else (an upstream that shortens or masks the keys it quotes, a caller that
    cut before redacting) can only leave a key's fragments there.
    """
    if not raws and "sk-" not in text and "AIza" not in text:
        return text
    # Cut marks past the first few are not where a cut happened (a body full of
    # "..."); the cap keeps the work bounded whatever the text.
    marks = list(itertools.islice(_CUT_MARKS.finditer(text), _MAX_MARKS))
    ends = {len(text.rstrip()), *(m.start() for m in marks)}  # a fragment may end here
    starts = {len(text) - len(text.lstrip()), *(m.end() for m in marks)}  # or start here
    spans: list[tuple[int, int]] = []
    for end in ends:
        last = text[max(0, end - MIN_FRAGMENT) : end]
        # ``last in raw`` first: one cheap test rules out almost every secret.
        size = max(
            (_prefix_ending_at(text, end, raw) for raw in raws if last in raw), default=0
        )
        shaped = _KEY_START_AT_EDGE.search(text, max(0, end - 64), end)
        if shaped is not None:
            size = max(size, end - shaped.start())
        if size >= MIN_FRAGMENT:
            spans.append((end - size, end))
    for start in starts:
        first = text[start : start + MIN_FRAGMENT]
        size = max(
            (_suffix_starting_at(text, start, raw) for raw in raws if first in raw), default=0
        )
        if size:
            spans.append((start, start + size))
    if not spans:
        return text
    pieces: list[str] = []
    done = 0
    for start, end in sorted(spans):
        if end <= done:
            continue
        pieces.append(text[done:max(start, done)])
        pieces.append(_MASK)
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


def redact(text: str, secrets: Iterable[Secret | str | None] = ()) -> str:
    """Return ``text`` with every known secret and key-shaped token masked.

    Also what a cut left of a known secret: 4 or more of its first characters
    right before a cut edge (the end of the text, an ellipsis, a ``*`` mask) or
    of its last characters right after one. So text cut before it was redacted
    leaves nothing recognisable; still, redact whole texts, then cut
    (:func:`scrub` does both).
    """
    raws = _raw_secrets(secrets)
    text = _KEY_PATTERNS.sub(_MASK, _mask_whole(text, raws))
    return _mask_cut_fragments(text, raws)


def _words(text: str, budget: int) -> tuple[str, bool]:
    """``text`` with each whitespace run as one space, up to about ``budget`` characters.

    Returns the text and whether more followed. Whole words only, so a word
    is never cut here, and never more work than the budget, however long the
    text (a 1 MB body of whitespace costs one pass of the regex engine).
    """
    words: list[str] = []
    size = 0
    for match in _WORD.finditer(text):
        if size >= budget:
            return " ".join(words), True
        word = match.group()
        if len(word) > budget:  # one giant word: its start is all we can show
            words.append(word[: budget + 1])
            return " ".join(words), True
        words.append(word)
        size += len(word) + 1
    return " ".join(words), False


_WORD = re.compile(r"\S+")
#: Text looked at past the limit, so a key-shaped token that straddles the limit
#: is still seen whole by the pattern redaction before the cut.
_LOOKAHEAD = 512


def scrub(
    text: str, secrets: Iterable[Secret | str | None] = (), limit: int | None = None
) -> str:
    """Upstream text as a one-line message: every secret masked first, then cut to ``limit``.

    The order is the point: a cut first could leave the start of a key that
    exact-value redaction no longer recognises. Whitespace runs become one
    space; a cut ends in "…".
    """
    limit = _MAX_ERROR_CHARS if limit is None else limit
    raws = _raw_secrets(secrets)
    text = _mask_whole(text, raws)  # the whole text, at C speed, before anything is cut
    head, more = _words(text, limit + _LOOKAHEAD)
    head = redact(head, raws)
    return _cut(head, limit, more)


def _cut(text: str, limit: int, more: bool = False) -> str:
    if len(text) <= limit and not more:
        return text
    return text[: limit - 1].rstrip() + "…"


def _shorten(text: str, limit: int = _MAX_ERROR_CHARS) -> str:
    text = " ".join(text.split())
    return _cut(text, limit)

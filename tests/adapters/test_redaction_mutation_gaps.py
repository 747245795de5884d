"""Redaction details a mutation-testing pass (issue 13) found untested.

Which secrets are worth masking and in which order, the longest piece of a
key at a cut edge when its first (or last) characters recur in it, several
fragments in one text, and how ``scrub`` bounds and cuts a long text. Keys
contain ``rhtestkey`` (see tests/adapters/test_redaction.py).
"""

from __future__ import annotations

import pytest

from adapters import Secret, redact
from adapters.base import scrub
from tests.support.leaks import fragment

KEY = "rhtestkey-Lw3Ps8Dn1Hq6Vz4C"
#: Keys whose first (or last) four characters recur inside them.
HEAD_TWICE = "rhtestrhtestkey-Q7Zp9"
TAIL_TWICE = "rhtestkey-9Qw7Xk2Zp5Xk2Z"
HEAD_OF_ONE_CHARACTER = "rrrrrhtestkey-Ab12"
TAIL_OF_ONE_CHARACTER = "rhtestkey-Ab1ZZZZZ"


def test_only_secrets_of_four_characters_or_more_are_masked() -> None:
    assert redact("pin abc here", ["abc"]) == "pin abc here"
    assert redact("pin abcd here", ["abcd"]) == "pin *** here"


@pytest.mark.parametrize("order", ["short-first", "long-first"])
def test_a_secret_containing_another_is_masked_whole(order: str) -> None:
    inner = KEY[14:22]  # "s8Dn1Hq6": shorter than KEY, and sorts after it
    secrets = [inner, KEY] if order == "short-first" else [KEY, inner]
    assert redact(f"key: {KEY}.", secrets) == "key: ***."


def test_a_cut_key_at_the_very_start_of_the_text_is_masked() -> None:
    assert redact(KEY[:12] + "…", [KEY]) == "***…"
    assert redact("sk-ab12…") == "***…"


def test_a_middle_piece_of_a_key_is_no_cut_fragment() -> None:
    # A cut leaves a key's start or end; four characters from its middle are
    # ordinary text, also where the key's end appeared earlier in the text.
    assert redact("value Lw3P…", [KEY]) == "value Lw3P…"
    for text in ("said Vz4C …Hq6V more", "said Vz4C …Hq6V Vz4C more"):
        assert redact(text, [KEY]) == text


@pytest.mark.parametrize(
    ("text", "secret", "shown"),
    [
        # The key's first four characters appear earlier, not as its start.
        ("x rhte " + KEY[:12] + "…", KEY, "x rhte ***…"),
        # The key's start contains its first four characters twice.
        ("token rhtestrhte…", HEAD_TWICE, "token ***…"),
        ("xrrrrrr…", HEAD_OF_ONE_CHARACTER, "xr***…"),
    ],
    ids=["head-earlier", "head-twice", "head-overlapping"],
)
def test_the_longest_start_of_a_key_before_a_cut_is_masked(
    text: str, secret: str, shown: str
) -> None:
    assert redact(text, [secret]) == shown


@pytest.mark.parametrize(
    ("text", "secret", "shown"),
    [
        # The key's last four characters appear again after its end.
        ("…Hq6Vz4C Vz4C said", KEY, "…*** Vz4C said"),
        # The key's end contains its last four characters twice.
        ("…Xk2Zp5Xk2Z Xk2Z said", TAIL_TWICE, "…*** Xk2Z said"),
        ("Xk2Zp5Xk2Z said", TAIL_TWICE, "*** said"),
        ("…ZZZZZZ said", TAIL_OF_ONE_CHARACTER, "…***Z said"),
    ],
    ids=["tail-later", "tail-twice", "tail-twice-at-start", "tail-overlapping"],
)
def test_the_longest_end_of_a_key_after_a_cut_is_masked(
    text: str, secret: str, shown: str
) -> None:
    assert redact(text, [secret]) == shown


def test_every_fragment_is_masked_once_when_two_keys_share_one() -> None:
    # "s8Dn1Hq6Vz4C" ends KEY and starts the other: two equal spans, then one more.
    other = "s8Dn1Hq6Vz4C-rhtestkey-2"
    assert redact("s8Dn1Hq6Vz4C… then rhtestkey-Lw", [KEY, other]) == "***… then ***"


def test_scrub_cuts_to_two_hundred_characters_by_default() -> None:
    shown = scrub("x " * 300)
    assert len(shown) == 200 and shown.endswith(" x x…")


@pytest.mark.parametrize(
    ("text", "limit", "shown"),
    [
        ("word " * 1000, 50, "word " * 9 + "word…"),
        ("short " + "x" * 5000, 50, "short " + "x" * 43 + "…"),  # one giant word
        ("x" * 50, 50, "x" * 50),  # exactly the limit: nothing cut
        ("aaaa bbbb cccc", 6, "aaaa…"),  # no space before the ellipsis
    ],
    ids=["many-words", "giant-word", "at-the-limit", "cut-at-a-space"],
)
def test_scrub_cuts_long_texts_to_the_limit(text: str, limit: int, shown: str) -> None:
    assert scrub(text, [], limit) == shown


@pytest.mark.parametrize(
    "text",
    ["sk-" + "a" * 1000 + " tail", "sk-" + "a" * 300 + " sk-" + "b" * 250 + " tail end"],
    ids=["giant-token", "tokens-filling-the-lookahead"],
)
def test_scrub_marks_a_cut_even_when_redaction_shrank_the_text_under_the_limit(text: str) -> None:
    # Key-shaped tokens fill what scrub looks at; masked, they leave a short text,
    # but more text followed them: the result still says it was cut.
    assert scrub(text, [], 50).endswith("…")


def test_scrub_masks_both_ends_of_a_key_an_upstream_masked_itself() -> None:
    text = f"bad key {KEY[:8]}****{KEY[-4:]} given"
    shown = scrub(text, [Secret(KEY)])
    assert fragment(KEY, shown) == 0
    assert shown == "bad key ********** given"

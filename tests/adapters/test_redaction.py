"""Redaction and cutting of upstream text: a cut never leaves a recognisable piece of a key.

``redact`` masks known secrets and key-shaped tokens, and also what a cut
left of a known secret: 4 or more of its first characters right before a cut
edge (the end of the text, an ellipsis, a ``*`` mask), or of its last
characters right after one. ``scrub`` redacts a whole text, then cuts it.
The system view (every adapter type over real sockets) is in
tests/system/test_key_fragments.py.

Keys start with ``rhtestkey`` and have no provider's prefix, so only
exact-value redaction can hide them; no key appears in a test id.
"""

from __future__ import annotations

import time

import pytest

from adapters import HttpAdapter, OpenAIAdapter, Secret, redact
from adapters.base import MIN_FRAGMENT, scrub
from adapters.transport import RawResponse
from tests.support.leaks import fragment

KEY = "rhtestkey-Lw3Ps8Dn1Hq6Vz4C"
OTHER = "rhtestkey0Bx7Mf2Kc9Rt5Yj1G"



CUTS = range(MIN_FRAGMENT, len(KEY))  # characters of the key the cut kept


@pytest.mark.parametrize("kept", CUTS)
def test_the_start_of_a_key_at_the_end_of_a_cut_text_is_masked(kept: int) -> None:
    cut = "upstream said: " + KEY[:kept]
    for text in (cut, cut + "…", cut + "...", cut + "  ", cut + "…'"):
        shown = redact(text, [Secret(KEY)])
        assert fragment(KEY, shown) == 0, (kept, len(text))
        assert shown.startswith("upstream said: ***")


@pytest.mark.parametrize("kept", CUTS)
def test_the_end_of_a_key_at_the_start_of_a_cut_text_is_masked(kept: int) -> None:
    for text in (KEY[-kept:] + " was refused", "…" + KEY[-kept:] + " was refused"):
        shown = redact(text, [KEY])
        assert fragment(KEY, shown) == 0, kept
        assert shown.endswith("*** was refused")


def test_an_upstreams_own_mask_leaves_neither_end_of_the_key() -> None:
    # The way some providers quote a key: its start, stars, its last 4 characters.
    text = f"Incorrect API key provided: {KEY[:8]}{'*' * 14}{KEY[-4:]}. See the docs."
    shown = redact(text, [KEY])
    assert fragment(KEY, shown) == 0
    assert shown.startswith("Incorrect API key provided: ***") and shown.endswith(". See the docs.")


def test_the_longest_fragment_wins_whichever_secret_is_longer() -> None:
    # A long secret matching 4 characters must not shadow another matching more.
    long_secret = "zz" + KEY[-6:-2] + "0123456789abcdefghij"
    text = "quoted: " + KEY[:12]
    assert fragment(KEY, redact(text, [long_secret, KEY])) == 0


def test_a_key_shaped_token_cut_short_at_an_edge_is_masked() -> None:
    assert redact("key sk-ab12…") == "key ***…"
    assert redact("key AIzaSyA1…") == "key ***…"
    # Not inside a word, and not ordinary words at the end.
    assert redact("deployment task-1") == "deployment task-1"
    assert redact("missing bearer token") == "missing bearer token"


def test_ordinary_text_is_left_alone() -> None:
    secrets = [Secret(KEY), OTHER]
    for text in (
        "model 'gpt-4' is not in the provider's model list (3 entries)…",
        "HTTP 503: upstream overloaded; try again later...",
        "cannot connect to 127.0.0.1:11434: Connection refused",
        f"three characters of a key are no fragment: {KEY[:MIN_FRAGMENT - 1]}",
        "stars *** and an ellipsis … in the middle",
    ):
        assert redact(text, secrets) == text


@pytest.mark.parametrize("at", [0, 40, 60, 70, 75, 79, 80, 90, 190])
def test_scrub_redacts_the_whole_text_before_it_cuts(at: int) -> None:
    text = "~" * at + KEY + "~" * 300
    shown = scrub(text, [Secret(KEY)], 80)
    assert len(shown) <= 80 and shown.endswith("…")
    assert fragment(KEY, shown) == 0
    if at <= 76:
        assert "***" in shown  # the key was inside what is shown: masked, not cut away


def test_scrub_is_cheap_and_safe_on_a_megabyte_of_whitespace_before_the_key() -> None:
    text = " \n" * 500_000 + KEY + " tail"
    started = time.perf_counter()
    shown = scrub(text, [KEY], 200)
    assert time.perf_counter() - started < 0.5
    assert shown == "*** tail"


def test_scrub_never_cuts_inside_a_key_shaped_token_it_has_not_seen_whole() -> None:
    unknown = "sk-" + "a1b2c3d4" * 40  # 323 characters, straddling the limit
    shown = scrub("x" * 150 + " " + unknown, [], 200)
    assert "a1b2c3d4" not in shown


def adapter() -> HttpAdapter:
    return OpenAIAdapter(provider="p", base_url="https://example.invalid/v1", model="m",
                         api_key=Secret(KEY))


@pytest.mark.parametrize("before", [4, 9, 13, 21, 25])
def test_a_non_json_200_never_quotes_a_piece_of_the_key(before: int) -> None:
    body = ("~" * (80 - before) + KEY + "~" * 100).encode()
    outcome = adapter()._classify(RawResponse(200, {"content-type": "text/plain"}, body, False))
    assert outcome.error is not None and not outcome.healthy
    assert fragment(KEY, outcome.error) == 0
    assert "***" in outcome.error


def test_a_content_type_quoting_the_key_is_redacted_too() -> None:
    headers = {"content-type": "text/plain; token=" + KEY}
    outcome = adapter()._classify(RawResponse(200, headers, b"<html>", False))
    assert outcome.error is not None and fragment(KEY, outcome.error) == 0


def test_an_error_status_body_cut_at_the_message_limit_leaves_no_piece() -> None:
    body = ('{"error": {"message": "' + "~" * 190 + KEY + '"}}').encode()
    outcome = adapter()._classify(RawResponse(500, {}, body, False))
    assert outcome.error is not None and fragment(KEY, outcome.error) == 0


def test_text_cut_before_it_was_redacted_leaves_no_piece() -> None:
    """What a caller that cuts first gets (e.g. a webhook's failure text cut to 200)."""
    for at in range(170, 200):
        text = ("x" * at + " " + KEY + " more")[:200]
        assert fragment(KEY, redact(text, [KEY])) == 0, at

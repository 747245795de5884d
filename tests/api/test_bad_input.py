"""Hostile input: every endpoint, over a real server, with bytes no client library would send.

``tests/api/test_app.py`` covers the parameter rules through Quart's test client;
this file sends the raw request line over a socket (so nothing normalises
``..``, re-encodes ``%`` or rejects odd bytes on the way), table-driven over
every endpoint, and then lets Hypothesis look for a query string or model
path that makes the app answer 500 or something that is not JSON.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from quart_trio import QuartTrio

from tests.support.app import asgi_scope, make_app, standard_fleet
from tests.support.served import GUARD, Answer, raw_get, running_service

CHECK_ROUTES = ["/v1/health/", "/v1/health/models", "/v1/health/models/gpt-4", "/v1/health/performance"]
OPEN_ROUTES = ["/livez", "/readyz"]


# (raw query, the parameter a check route must reject, or None for "accepted")
QUERIES: list[tuple[bytes, str | None]] = [
    (b"timeout=NaN", "timeout"),
    (b"timeout=inf", "timeout"),
    (b"timeout=-Infinity", "timeout"),
    (b"timeout=-1", "timeout"),
    (b"timeout=0", "timeout"),
    (b"timeout=-0", "timeout"),
    (b"timeout=1e309", "timeout"),
    (b"timeout=1e-400", "timeout"),  # underflows to 0.0
    (b"timeout=" + b"9" * 5000, "timeout"),  # a huge number: inf
    (b"timeout=" + b"x" * 6000, "timeout"),  # a huge string: echoed only in part
    (b"timeout=" + b"%F0%9F%92%A3" * 300, "timeout"),  # unicode, also huge
    (b"timeout=%EF%BC%91", "timeout"),  # a fullwidth digit: float() would take it
    (b"timeout=%D9%A3", "timeout"),  # an Arabic-Indic digit: likewise
    (b"timeout=1%00", "timeout"),
    (b"timeout=%FF", "timeout"),  # not UTF-8
    (b"timeout=%", "timeout"),
    (b"timeout=1&timeout=1", "timeout"),
    (b"timeout=1&time%6Fut=2", "timeout"),  # the same name, spelt differently
    (b"timeout=5;use_concurrent=maybe", "timeout"),  # ';' is not a separator
    (b"timeout=120.0000001", "timeout"),
    (b"use_concurrent=", "use_concurrent"),
    (b"use_concurrent=tru%C3%A9", "use_concurrent"),
    (b"use_concurrent=1&use_concurrent=1", "use_concurrent"),
    (b"details=%00", "details"),
    (b"details=", "details"),
    # Accepted: encodings of valid values, and names nobody asked for.
    (b"timeout=%31", None),
    (b"timeout=+5", None),  # '+' is a space, and spaces around a value are allowed
    (b"timeout=%2B5&use_concurrent=%74rue&details=NO%20", None),
    (b"timeout=1e1", None),
    (b"timeout[]=NaN&use_concurrent[]=x", None),
    (b"=&&&=&%", None),
    (b"a=" + b"x" * 6000, None),
]

# (raw model name in the path, the expected status)
MODEL_NAMES: list[tuple[bytes, int]] = [
    (b"gpt-4", 200),
    (b"gpt%2D4", 200),
    (b"../../etc/passwd", 404),
    (b"..%2F..%2Fetc%2Fpasswd", 404),
    (b"%2e%2e%2f%2e%2e%2fetc%2fpasswd", 404),
    (b"..%252F..%252Fetc", 404),  # double-encoded: decoded once, as it should be
    (b"%C0%AE%C0%AE%2F", 404),  # overlong UTF-8 dots
    (b"%00", 404),
    (b"%FF%FE", 404),
    (b"gpt-%EF%BC%94", 404),  # a fullwidth 4
    (b"GPT-4", 404),
    (b"gpt-4%20", 404),
    (b"gpt-4/", 404),
    (b"gpt-4%3Ftimeout%3DNaN", 404),  # an encoded '?' is part of the name
    (b"gpt-4?timeout=NaN", 400),  # a real '?' starts the query
    (b"a" * 4000, 404),  # very long, still within the request-line limit
    (b"%61" * 1500, 404),
]


def check_json_answer(answer: Answer, where: str) -> dict[str, Any]:
    assert answer.headers.get(b"content-type") == b"application/json", where
    assert answer.headers.get(b"cache-control") == b"no-store", where
    body = answer.json()
    assert isinstance(body, dict), where
    assert b"Traceback" not in answer.body, where
    return body


async def test_hostile_query_values_get_json_answers_on_every_endpoint() -> None:
    problems: list[str] = []
    async with running_service(checks={"timeout": 5, "model_timeout": 5, "adapter_timeout": 5}) as service:
        for route in CHECK_ROUTES + OPEN_ROUTES:
            for query, rejected in QUERIES:
                where = f"{route}?{query[:60]!r}"
                with trio.fail_after(GUARD * 2):
                    answer = await raw_get(service, route.encode() + b"?" + query)
                body = check_json_answer(answer, where)
                if route in OPEN_ROUTES or rejected is None:
                    expected: tuple[int, str | None] = (200, None)
                else:
                    expected = (400, rejected)
                got = (answer.status, body.get("parameter"))
                if got != expected:
                    problems.append(f"{where}: expected {expected}, got {got}: {body}")
                # A bad value is echoed, but never in full.
                if answer.status == 400 and len(body["message"]) > 400:
                    problems.append(f"{where}: message of {len(body['message'])} chars")
    assert not problems, "\n".join(problems)


async def test_hostile_model_names_are_404_json_and_nothing_escapes_the_route() -> None:
    problems: list[str] = []
    # Every valid name probes afresh (no answer cached for anonymous callers).
    async with running_service(checks={"model_timeout": 5, "adapter_timeout": 5},
                               server={"anonymous_min_interval": 0}) as service:
        before = service.sim.total_stats().requests
        for name, expected in MODEL_NAMES:
            with trio.fail_after(GUARD * 2):
                answer = await raw_get(service, b"/v1/health/models/" + name)
            body = check_json_answer(answer, repr(name[:60]))
            if answer.status != expected:
                problems.append(f"{name[:60]!r}: expected {expected}, got {answer.status}: {body}")
            elif expected == 404 and (
                body.get("error") != "unknown_model" or len(body["message"]) > 400
            ):
                problems.append(f"{name[:60]!r}: {body}")
        # Only the two valid names probed anything (each: two gpt-4 providers).
        assert service.sim.total_stats().requests - before == 4
    assert not problems, "\n".join(problems)


async def test_requests_the_http_layer_refuses_are_4xx_and_the_server_keeps_serving() -> None:
    async with running_service() as service:
        for target in [
            b"/v1/health/models/" + b"a" * 70_000,  # past the request-line limit
            b"/v1/health/?timeout=\xff\xfe",  # raw bytes that are not a valid target
            b"/v1/health/models/\x80",
        ]:
            with trio.fail_after(GUARD):
                answer = await raw_get(service, target)
            assert 400 <= answer.status < 500, (target[:40], answer)
        with trio.fail_after(GUARD):
            assert (await raw_get(service, b"/livez")).json() == {"status": "ok"}


# -- the property -----------------------------------------------------------------------------

_PARAM_NAMES = st.sampled_from(["timeout", "use_concurrent", "details", "TIMEOUT", "x", ""])
_TRICKY_VALUES = st.sampled_from(
    ["nan", "inf", "-1", "0", "1e309", "1e-320", "1", "120", "120.5", ".5", "5.", "+1", " 1 ",
     "true", "FALSE", "yes", "0x10", "1_0", "\uff11", "\x00", "%", "%%", "\u202e1"]
)
_VALUES = st.one_of(
    _TRICKY_VALUES,
    st.text(max_size=40),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)
_QUERY_PAIRS = st.lists(st.tuples(st.one_of(_PARAM_NAMES, st.text(max_size=10)), _VALUES), max_size=5)


def _encode(pairs: list[tuple[str, str]], raw_tail: bytes) -> bytes:
    text = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    return text.encode("ascii") + raw_tail


async def asgi_get(app: QuartTrio, raw_path: bytes, query: bytes) -> tuple[int, bytes]:
    """Drive the ASGI app directly (what hypercorn would do), with any bytes at all."""
    messages: list[dict[str, Any]] = []
    to_app, from_server = trio.open_memory_channel[dict[str, Any]](1)
    await to_app.send({"type": "http.request", "body": b"", "more_body": False})

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asgi_app: Any = app
    await asgi_app(asgi_scope(raw_path, query), from_server.receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], body


class BackgroundApp:
    """The app, started once, in a Trio loop on a thread of its own.

    Hypothesis drives examples synchronously; starting an app per example
    (a lifespan, a TLS context) would cost more than the examples. Each
    example instead hands one request to this loop and waits for the answer.
    """

    def __init__(self) -> None:
        self.app, _ = make_app(standard_fleet(), checks={"adapter_timeout": 5})
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with self.app.test_app():
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> BackgroundApp:
        self._thread.start()
        assert self._ready.wait(GUARD * 2), "the app did not start"
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._stop is not None
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(GUARD * 2)

    def get(self, raw_path: bytes, query: bytes) -> tuple[int, bytes]:
        async def guarded() -> tuple[int, bytes]:
            with trio.fail_after(GUARD):
                return await asgi_get(self.app, raw_path, query)

        return trio.from_thread.run(guarded, trio_token=self._token)


@pytest.fixture(scope="module")
def background_app() -> Iterator[BackgroundApp]:
    with BackgroundApp() as app:
        yield app


def test_raw_non_utf8_bytes_in_the_query_are_a_400_not_a_crash(
    background_app: BackgroundApp,
) -> None:
    # Hypercorn refuses such bytes itself; other ASGI servers pass them on.
    status, body = background_app.get(b"/v1/health/", b"timeout=\xff\xfe&details=\x80")
    assert status == 400
    assert json.loads(body)["parameter"] == "timeout"


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples on every run: a test, not a lottery
    database=None,
)
@given(
    route=st.sampled_from([*CHECK_ROUTES, "/v1/health/models/", *OPEN_ROUTES, "/nope"]),
    model=st.one_of(st.none(), st.text(max_size=30), st.binary(max_size=20)),
    pairs=_QUERY_PAIRS,
    raw_tail=st.one_of(st.just(b""), st.binary(max_size=12)),
)
def test_no_query_string_or_model_path_gets_a_500_or_a_non_json_answer(
    background_app: BackgroundApp,
    route: str,
    model: str | bytes | None,
    pairs: list[tuple[str, str]],
    raw_tail: bytes,
) -> None:
    raw_path = route.encode()
    if model is not None:
        encoded = model if isinstance(model, bytes) else model.encode("utf-8", "surrogatepass")
        raw_path = b"/v1/health/models/" + quote(encoded, safe="/%").encode("ascii")
    status, body = background_app.get(raw_path, _encode(pairs, raw_tail))
    assert status in {200, 400, 404, 503}, (status, body[:200])
    data = json.loads(body)
    assert isinstance(data, dict)
    if status == 503:
        # Only a health verdict (a budget too tiny to start anything) may be a 503.
        assert data.get("status") == "unhealthy", data

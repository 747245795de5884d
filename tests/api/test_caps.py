"""Caps on event streams (global and per client address) and on connections.

Without them, enough open streams or idle connections exhausted the file
descriptors: ``GET /v1/health/`` timed out and every ``accept`` logged a
"Too many open files" traceback. Now:

* ``[server] max_streams`` / ``max_streams_per_client``: a stream past either
  cap is refused at once, as JSON (503 ``too_many_streams``, or 429
  ``too_many_streams_from_client``) with ``Retry-After``, and a quarter of the
  connections (at least 8) is always left to everything but streams;
* ``[server] max_connections``: a connection past the cap closes the idle
  connection that has waited longest (what a keep-alive timeout would do),
  or, when every connection is busy with a request, gets a minimal
  ``HTTP/1.1 503`` JSON answer and is closed.

Config values are validated with precise messages. Everything here runs on
loopback and waits on the service's own counters, never on the clock; the
file-descriptor measurement is in tests/system/test_connection_caps.py.
"""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import h11
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from service import ConfigError, parse_config
from service.api.app import EXTENSION_KEY
from service.api.compat import CONNECTIONS_KEY
from service.api.metrics import REFUSAL_COUNTERS
from service.api.openapi import openapi_spec
from service.api.routes_health import _client_key
from service.live.stream import EventHub, StreamsFull
from tests.support import eventually
from tests.support.served import GUARD, Answer, Service, raw_get, running_service

# -- config -------------------------------------------------------------------------


def parsed(server: dict[str, Any]) -> Any:
    document = {"server": server, "models": [{"name": "m", "providers": [
        {"name": "p", "type": "ollama"}]}]}
    return parse_config(document, source="<test>", env={}).server


def problem(server: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parsed(server)
    message = str(info.value)
    assert "Traceback" not in message
    return message


def test_the_caps_default_to_values_derived_when_serving() -> None:
    server = parsed({})
    assert (server.max_connections, server.max_streams, server.max_streams_per_client) == (
        None, None, None)


def test_explicit_caps_are_kept() -> None:
    server = parsed({"max_connections": 100, "max_streams": 75, "max_streams_per_client": 5})
    assert (server.max_connections, server.max_streams, server.max_streams_per_client) == (
        100, 75, 5)


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ({"max_connections": 15}, "server.max_connections: must be at least 16, got 15"),
        ({"max_connections": True}, "server.max_connections: must be an integer, got True"),
        ({"max_connections": 100.0}, "server.max_connections: must be an integer, got 100.0"),
        ({"max_streams": 0}, "server.max_streams: must be at least 1, got 0"),
        ({"max_streams_per_client": -1}, "server.max_streams_per_client: must be at least 1, "
         "got -1"),
        ({"max_connections": 100, "max_streams": 76},
         "server.max_streams: must leave a quarter of server.max_connections (at least 8) to "
         "check requests and /livez: at most 75 with max_connections = 100, got 76"),
        ({"max_connections": 16, "max_streams": 9},
         "server.max_streams: must leave a quarter of server.max_connections (at least 8) to "
         "check requests and /livez: at most 8 with max_connections = 16, got 9"),
        ({"max_streams": 4, "max_streams_per_client": 5},
         "server.max_streams_per_client: must be at most server.max_streams (4), got 5"),
        ({"max_streams_per_client": 257},
         "server.max_streams_per_client: must be at most server.max_streams (256 by "
         "default), got 257"),
        ({"max_stream": 3}, "server.max_stream: unknown key; did you mean 'max_streams'?"),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else None,
)
def test_each_bad_cap_gets_one_precise_line(server: dict[str, Any], expected: str) -> None:
    message = problem(server)
    assert expected in message, message
    assert message.count("\n") <= 1  # the source line and this one problem


# -- the event hub ------------------------------------------------------------------


async def test_the_hub_refuses_a_stream_past_either_cap_and_counts_unstarted_ones() -> None:
    hub = EventHub()
    hub.limit(3, per_client=2)
    first = hub.stream({}, client="a")  # admitted now, although not iterated yet
    second = hub.stream({}, client="a")
    with pytest.raises(StreamsFull) as per_client:
        hub.stream({}, client="a")
    assert (per_client.value.per_client, per_client.value.limit) == (True, 2)
    third = hub.stream({}, client="b")
    with pytest.raises(StreamsFull) as total:
        hub.stream({}, client="c")
    assert (total.value.per_client, total.value.limit) == (False, 3)
    assert hub.streams == 3 and hub.refused == 2
    # A stream that ran and ended gives its place back...
    assert b"event: hello" in await first.__anext__()
    await first.aclose()
    assert hub.streams == 2
    # ...and so does one that never started (its client went away first).
    del second
    gc.collect()
    assert hub.streams == 1
    again = hub.stream({}, client="a")
    assert hub.streams == 2
    for stream in (third, again):
        await stream.aclose()
    assert hub.streams == 0


async def test_a_closed_hub_answers_hello_without_counting() -> None:
    hub = EventHub()
    hub.limit(1, per_client=1)
    hub.close()
    for _ in range(3):  # more than the cap: nothing is held while stopping
        chunks = [chunk async for chunk in hub.stream({}, client="a")]
        assert len(chunks) == 1 and b"event: hello" in chunks[0]
    assert hub.streams == 0


# -- served --------------------------------------------------------------------------


def hub_of(service: Service) -> EventHub:
    hub: EventHub = service.app.extensions[EXTENSION_KEY].events
    return hub


def address(service: Service) -> tuple[str, int]:
    host, port = service.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def read_head(stream: trio.SocketStream) -> tuple[int, bytes]:
    """The status and the raw head of the answer on ``stream`` (the body may follow)."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await stream.receive_some(65536)
        assert chunk, f"closed before a whole head: {head!r}"
        head += chunk
    return int(head.split(b" ", 2)[1]), head


async def exchange(service: Service, request: bytes) -> Answer:
    """``request`` on a fresh connection; the answer read to the connection's end."""
    stream = await trio.open_tcp_stream(*address(service))
    async with stream:
        await stream.send_all(request)
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    client.receive_data(b"")
    response, body = None, b""
    while True:
        event = client.next_event()
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed) or event is h11.NEED_DATA:
            break
    assert response is not None, data
    return Answer(response.status_code, dict(response.headers), body)


STREAM = b"GET /v1/health/stream HTTP/1.1\r\nHost: test\r\n\r\n"


@asynccontextmanager
async def open_streams(service: Service, count: int) -> AsyncIterator[list[trio.SocketStream]]:
    """``count`` event streams open (the server has sent each its head)."""
    async with AsyncExitStack() as stack:
        streams = []
        for _ in range(count):
            stream = await trio.open_tcp_stream(*address(service))
            await stack.enter_async_context(stream)
            await stream.send_all(STREAM)
            status, _ = await read_head(stream)
            assert status == 200
            streams.append(stream)
        yield streams


async def refusal_counters(service: Service) -> dict[str, float]:
    """The service's refusal counters, as ``/metrics`` shows them (name -> value)."""
    answer = await raw_get(service, b"/metrics")
    assert answer.status == 200, answer
    families = text_string_to_metric_families(answer.body.decode())
    return {
        sample.name: sample.value
        for family in families
        for sample in family.samples
        if family.name in {name for name, _ in REFUSAL_COUNTERS.values()}
    }


def assert_json_refusal(answer: Answer, status: int, error: str, retry_after: bytes) -> dict[str, Any]:
    assert answer.status == status, answer
    assert answer.headers[b"content-type"] == b"application/json"
    assert answer.headers[b"retry-after"] == retry_after
    assert answer.headers[b"connection"] == b"close"
    assert answer.headers[b"cache-control"] == b"no-store"
    body: dict[str, Any] = answer.json()
    assert body["error"] == error and set(body) == {"error", "message"}, body
    return body


async def test_a_stream_past_max_streams_is_a_json_503_and_checks_still_answer() -> None:
    async with running_service(
        server={"max_streams": 2, "max_streams_per_client": 2, "max_connections": 16}
    ) as service:
        with trio.fail_after(GUARD * 2):
            async with open_streams(service, 2):
                answer = await exchange(service, STREAM)
                body = assert_json_refusal(answer, 503, "too_many_streams", b"5")
                assert body["message"] == (
                    "at most 2 event streams may be open at once ([server] max_streams); "
                    "retry later")
                assert (await raw_get(service, b"/livez")).status == 200
                assert (await raw_get(service, b"/v1/health/")).status == 200
                assert hub_of(service).streams == 2
                assert (await refusal_counters(service))[
                    "router_health_streams_refused_total"] == 1
            await hub_of(service).open_streams.wait_value(0)
            async with open_streams(service, 2):  # the places are free again
                pass


async def test_a_stream_past_max_streams_per_client_is_a_json_429() -> None:
    async with running_service(
        server={"max_streams": 4, "max_streams_per_client": 1, "max_connections": 16}
    ) as service:
        with trio.fail_after(GUARD * 2):
            async with open_streams(service, 1):
                answer = await exchange(service, STREAM)
                body = assert_json_refusal(answer, 429, "too_many_streams_from_client", b"5")
                assert body["message"] == (
                    "at most 1 event stream may be open from one client address "
                    "([server] max_streams_per_client); close one or retry later")


async def test_a_connection_past_max_connections_closes_an_idle_one_to_get_in() -> None:
    # A long keep-alive: only the cap may close an idle connection here.
    async with running_service(server={"max_connections": 16, "keep_alive_timeout": 60}) as service:
        slots = service.app.extensions[CONNECTIONS_KEY]
        closed = trio.Event()
        with trio.fail_after(GUARD * 2):
            async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
                for _ in range(16):  # every place taken by a connection that sends nothing
                    idle = await trio.open_tcp_stream(*address(service))
                    await stack.enter_async_context(idle)

                    async def watch(stream: trio.SocketStream = idle) -> None:
                        if await stream.receive_some(1) == b"":
                            closed.set()

                    nursery.start_soon(watch)
                await eventually(lambda: slots.open == 16, within=GUARD)  # all taken
                answer = await raw_get(service, b"/livez")
                assert answer.status == 200 and answer.json() == {"status": "ok"}
                await closed.wait()  # an idle connection made the room
                assert (slots.evicted, slots.refused) == (1, 0)
                counters = await refusal_counters(service)
                assert counters["router_health_connections_evicted_total"] >= 1  # ours, maybe more
                assert counters["router_health_connections_refused_total"] == 0
                nursery.cancel_scope.cancel()


async def test_a_connection_past_max_connections_all_busy_gets_a_raw_json_503() -> None:
    async with running_service(
        checks={"adapter_timeout": 60, "model_timeout": 60, "timeout": 60},
        server={"max_connections": 16, "max_streams": 8, "max_streams_per_client": 8},
    ) as service:
        service.sim.set_behavior("openai", mode="hang")
        state = service.app.extensions[EXTENSION_KEY]
        slots = service.app.extensions[CONNECTIONS_KEY]
        with trio.fail_after(GUARD * 3):
            async with open_streams(service, 8), AsyncExitStack() as stack:
                for _ in range(8):  # the other 8 places: requests waiting on a hanging provider
                    busy = await trio.open_tcp_stream(*address(service))
                    await stack.enter_async_context(busy)
                    await busy.send_all(b"GET /v1/health/?timeout=60 HTTP/1.1\r\nHost: t\r\n\r\n")
                await eventually(lambda: state.health_runs.statistics().callers_waiting >= 8)
                answer = await exchange(service, b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n")
                body = assert_json_refusal(answer, 503, "too_many_connections", b"1")
                assert body["message"] == (
                    "all 16 connections this server takes ([server] max_connections) are busy; "
                    "retry shortly")
                assert answer.headers[b"x-content-type-options"] == b"nosniff"
                assert b"default-src 'none'" in answer.headers[b"content-security-policy"]
                assert (slots.refused, slots.evicted) == (1, 0)
            service.sim.set_behavior("openai", mode="ok")
        # Once the busy connections are gone, the server answers again.
        await eventually(lambda: slots.open == 0, within=GUARD * 3)  # the server's own count
        with trio.fail_after(GUARD):
            assert (await raw_get(service, b"/livez")).status == 200
            counters = await refusal_counters(service)
        assert counters["router_health_connections_refused_total"] == 1
        assert "router_health_cluster_messages_rejected_total" not in counters  # no [cluster]


def test_the_document_has_the_refusals() -> None:
    document = openapi_spec()

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def errors(response: dict[str, Any]) -> set[str]:
        schema = resolve(response)["content"]["application/json"]["schema"]
        options = schema.get("anyOf", [schema])
        return {resolve(option)["properties"]["error"]["const"] for option in options}

    stream = document["paths"]["/v1/health/stream"]["get"]["responses"]
    assert errors(stream["503"]) == {"not_ready", "too_many_streams"}
    assert errors(stream["429"]) == {"too_many_streams_from_client"}
    assert "Retry-After" in stream["429"]["headers"] and "Retry-After" in stream["503"]["headers"]
    refusal = document["components"]["responses"]["TooManyConnections"]
    assert errors(refusal) == {"too_many_connections"}
    assert "max_connections" in document["info"]["description"]


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # the same /64: one client
        ("::ffff:192.0.2.7", "192.0.2.7"),  # IPv4 over an IPv6 socket: the IPv4 address
        (None, ""),
        ("/run/rh.sock", "/run/rh.sock"),
    ],
)
def test_streams_count_per_address_an_ipv6_64_as_one(address: str | None, key: str) -> None:
    assert _client_key(address) == key

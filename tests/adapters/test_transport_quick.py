"""The transport's quick read of a whole answer agrees with h11's, or leaves it to h11.

``_whole_response`` parses an answer that arrived whole in one read without
h11's event machinery. It must never disagree with h11: for every answer
below (well-formed, odd, malformed, partial), either it declines (None) or
h11 reads the same bytes to the same status, headers, body and keep-alive.
"""

from __future__ import annotations

import functools
import itertools

import h11
import pytest
import trio

from adapters.transport import (
    HttpConnection,
    ProbeRequest,
    TransportError,
    _body_of,
    _request_head,
    _send_request,
    _split_url,
    _state_head,
    _whole_response,
)

CAP = 1 << 20

STATUS_LINES = [
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 200",
    b"HTTP/1.1 200 ",
    b"HTTP/1.1 404 Not Found",
    b"HTTP/1.1 429 Too Many Requests",
    b"HTTP/1.1 503 Service\tUnavailable",
    b"HTTP/1.1 999 Odd",
    b"HTTP/1.1 204 No Content",
    b"HTTP/1.1 304 Not Modified",
    b"HTTP/1.1 100 Continue",
    b"HTTP/1.0 200 OK",
    b"HTTP/2.0 200 OK",
    b"HTTP/1.1 20 OK",
    b"HTTP/1.1 200 caf\xc3\xa9",
    b"HTTP/1.1 200 bad\x00reason",
    b"http/1.1 200 OK",
    b" HTTP/1.1 200 OK",
]

HEADER_SETS: list[list[bytes]] = [
    [],
    [b"Content-Type: application/json"],
    [b"content-type:application/json", b"Date: Wed, 02 Dec 2026 02:36:16 GMT"],
    [b"X-Spaces:    padded value   "],
    [b"X-Empty:"],
    [b"X-Tab:\tv"],
    [b"Retry-After: 30", b"retry-after: 60"],
    [b"Connection: close"],
    [b"Connection: keep-alive, Close"],
    [b"Connection: keep-alive"],
    [b"Connection: closed"],
    [b"Transfer-Encoding: chunked"],
    [b"Content-Length: 5"],  # a second Content-Length
    [b"X-Folded: a", b" continued"],
    [b"Bad Name: x"],
    [b": no name"],
    [b"NoColon"],
    [b"X-Nul: a\x00b"],
    [b"X-Latin: caf\xe9"],
    [b"X-Ctl: a\x01b"],
    [b"X-Lf: a\nb"],
    [b"Content-Encoding: gzip"],
]

BODIES = [b"", b"{}", b'{"data": [{"id": "sim-model"}]}', b"x" * 70000]

LENGTHS = ["exact", "none", "short", "long", "bad", "leading-zero"]
TAILS = [b"", b"HTTP/1.1 200 OK\r\n"]  # nothing after, or bytes past the body


def _answer(status: bytes, headers: list[bytes], body: bytes, length: str, tail: bytes) -> bytes:
    lines = [status, *headers]
    if length == "exact":
        lines.append(b"Content-Length: %d" % len(body))
    elif length == "short":
        lines.append(b"Content-Length: %d" % (len(body) + 3))
    elif length == "long":
        lines.append(b"Content-Length: %d" % max(len(body) - 1, 0))
    elif length == "bad":
        lines.append(b"Content-Length: 1e3")
    elif length == "leading-zero":
        lines.append(b"Content-Length: 00%d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body + tail


def _h11_read(data: bytes, method: bytes) -> tuple[int, dict[str, str], bytes, bool] | str:
    """What the transport's h11 loop makes of ``data`` (no EOF after it)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target=b"/v1/models", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    status, headers, chunks = 0, {}, []
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return "needs more"
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = {n.decode("latin-1"): v.decode("latin-1") for n, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
    except h11.ProtocolError:
        return "refused"
    keep = conn.our_state is h11.DONE and conn.their_state is h11.DONE
    return status, headers, b"".join(chunks), keep


CASES = list(itertools.product(STATUS_LINES, HEADER_SETS, BODIES, LENGTHS, TAILS))


@pytest.mark.parametrize("method", [b"GET", b"POST"])
def test_the_quick_read_agrees_with_h11_or_declines(method: bytes) -> None:
    taken = 0
    for status, headers, body, length, tail in CASES:
        data = _answer(status, headers, body, length, tail)
        quick = _whole_response(data, method, CAP)
        if quick is None:
            continue
        taken += 1
        assert quick == _h11_read(data, method), data[:300]
    assert taken > 100  # the quick path is actually exercised


def test_partial_reads_are_left_to_h11() -> None:
    data = _answer(b"HTTP/1.1 200 OK", [], b'{"data": []}', "exact", b"")
    for cut in range(len(data)):
        assert _whole_response(data[:cut], b"GET", CAP) is None


def test_other_methods_and_bodies_over_the_cap_are_left_to_h11() -> None:
    data = _answer(b"HTTP/1.1 200 OK", [], b"0123456789", "exact", b"")
    assert _whole_response(data, b"GET", CAP) is not None
    assert _whole_response(data, b"HEAD", CAP) is None
    assert _whole_response(data, b"PUT", CAP) is None
    assert _whole_response(data, b"GET", 9) is None


def test_a_close_in_the_answer_means_the_socket_is_not_kept() -> None:
    data = _answer(b"HTTP/1.1 200 OK", [b"Connection: close"], b"{}", "exact", b"")
    assert _whole_response(data, b"GET", CAP) == (
        200,
        {"connection": "close", "content-length": "2"},
        b"{}",
        False,
    )


# -- a repeated request is prepared once, and never goes stale ----------------------------


async def _echo_server(nursery: trio.Nursery, seen: list[bytes]) -> int:
    """A keep-alive server answering every request with 200 and a small JSON body."""

    async def handle(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                seen.append(bytes(data))
                conn.receive_data(bytes(data))
            elif isinstance(event, h11.EndOfMessage):
                body = b"{}"
                out = conn.send(h11.Response(status_code=200, headers=[("Content-Length", "2")]))
                out += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
                await stream.send_all(out)
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return

    listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


async def test_a_changed_header_in_the_same_dict_is_sent_as_changed() -> None:
    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:
        port = await _echo_server(nursery, seen)
        connection = HttpConnection()
        headers = {"Authorization": "Bearer one-key"}
        request = ProbeRequest("GET", f"http://127.0.0.1:{port}/v1/models", headers=headers)
        first = await connection.fetch(request, max_body_bytes=CAP)
        headers["Authorization"] = "Bearer two-key"  # the adapter changed its own mapping
        second = await connection.fetch(request, max_body_bytes=CAP)
        await connection.aclose()
        nursery.cancel_scope.cancel()
    assert (first.status, first.body, second.status, second.body) == (200, b"{}", 200, b"{}")
    assert connection.connections_opened == 1  # kept alive between the two
    assert b"Bearer one-key" in seen[0] and b"Bearer two-key" in seen[1]


async def test_a_body_longer_than_its_given_length_fails_as_before_on_every_probe() -> None:
    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:
        port = await _echo_server(nursery, seen)
        connection = HttpConnection()
        request = ProbeRequest(
            "POST",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            headers={"Content-Length": "1"},
            json_body={"model": "m"},
        )
        for _ in range(2):
            with pytest.raises(TransportError, match="Content-Length"):
                await connection.fetch(request, max_body_bytes=CAP)
        await connection.aclose()
        nursery.cancel_scope.cancel()
    assert seen == []  # h11 refused before anything was sent


async def test_a_kept_request_shows_no_key_in_its_repr() -> None:
    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:
        port = await _echo_server(nursery, seen)
        connection = HttpConnection()
        request = ProbeRequest(
            "GET", f"http://127.0.0.1:{port}/v1/models",
            headers={"Authorization": "Bearer rhtestkey-kept-0123456789"},
        )
        await connection.fetch(request, max_body_bytes=CAP)
        kept = connection._prepared
        await connection.aclose()
        nursery.cancel_scope.cancel()
    assert kept is not None and b"rhtestkey-kept" in (kept.wire or b"")  # it is kept...
    for shown in (repr(kept), str(kept), repr(connection)):
        assert "rhtestkey" not in shown  # ...and never shown


# -- what a connection keeps per adapter ---------------------------------------

STATE_REQUESTS = [
    ProbeRequest("GET", "http://h.example/v1/models", headers={"Authorization": "Bearer k"}),
    ProbeRequest("POST", "http://h.example/v1/chat/completions", json_body={"model": "m"}),
    ProbeRequest("GET", "http://h.example/v1/models", headers={"Connection": "close"}),
    ProbeRequest("POST", "http://h.example/v1/x", json_body={"a": 1}, headers={"Expect": "100-continue"}),
    ProbeRequest("POST", "http://h.example/v1/x", content=b"abc", headers={"Transfer-Encoding": "chunked"}),
    ProbeRequest("GET", "http://h.example/v1/ws", headers={"Upgrade": "websocket", "Connection": "upgrade"}),
]
STATE_ANSWERS = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nuntil close",
    b"HTTP/1.1 204 No Content\r\n\r\n",
]


def _events(conn: h11.Connection, answer: bytes) -> list[object]:
    conn.receive_data(answer)
    conn.receive_data(b"")
    seen: list[object] = []
    for _ in range(10):
        try:
            event = conn.next_event()
        except h11.ProtocolError as exc:
            seen.append(type(exc))
            break
        seen.append(event)
        if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
            break
    return [*seen, conn.our_state, conn.their_state]


@pytest.mark.parametrize("request_", STATE_REQUESTS)
def test_the_kept_state_head_leaves_h11_where_the_real_head_does(request_: ProbeRequest) -> None:
    # The connection keeps a small head shared by adapters (not each one's own):
    # h11 must read every answer after it exactly as after the request itself.
    body = _body_of(request_)
    _, target, host = _split_url(request_.url, request_.params)
    real = _request_head(request_, target, host, body)
    state = _state_head(real)
    assert state is _state_head(_request_head(request_, target, host, body))  # shared
    for answer in STATE_ANSWERS:
        after_real, after_state = h11.Connection(h11.CLIENT), h11.Connection(h11.CLIENT)
        _send_request(after_real, real, body)
        _send_request(after_state, state, body)
        assert _events(after_state, answer) == _events(after_real, answer), answer


async def test_an_answer_in_several_reads_after_a_post_is_read_whole_and_kept_alive() -> None:
    # The slow path: h11 reads, told what was sent through the shared state head.
    seen: list[bytes] = []

    async def handle(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                seen.append(bytes(data))
                conn.receive_data(bytes(data))
            elif isinstance(event, h11.EndOfMessage):
                out = conn.send(h11.Response(status_code=200, headers=[("Transfer-Encoding", "chunked")]))
                await stream.send_all(out + conn.send(h11.Data(data=b'{"choices"')))
                await trio.sleep(0.01)
                await stream.send_all(conn.send(h11.Data(data=b": [1]}")) + conn.send(h11.EndOfMessage()))
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        port = int(listeners[0].socket.getsockname()[1])
        connection = HttpConnection()
        request = ProbeRequest(
            "POST", f"http://127.0.0.1:{port}/v1/chat/completions", json_body={"model": "m"}
        )
        answers = [await connection.fetch(request, max_body_bytes=CAP) for _ in range(2)]
        await connection.aclose()
        nursery.cancel_scope.cancel()
    assert [(a.status, a.body) for a in answers] == [(200, b'{"choices": [1]}')] * 2
    assert connection.connections_opened == 1  # h11 saw both sides done: kept alive
    assert all(b'{"model":"m"}' in data for data in seen)


def test_a_probe_request_shows_no_key_in_its_repr() -> None:
    request = ProbeRequest(
        "GET",
        "http://h.example/v1/models",
        headers={"Authorization": "Bearer rhtestkey-repr-0123456789"},
        params={"key": "rhtestkey-param-0123456789"},
    )
    assert "rhtestkey" not in repr(request) and "h.example" in repr(request)
    assert ProbeRequest("GET", "http://h.example/").params == {}  # the shared empty default


async def test_an_ip_address_is_connected_to_directly_and_a_refusal_says_so() -> None:
    # No resolver, no happy-eyeballs nursery for an address; the same errors as through them.
    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:
        port = await _echo_server(nursery, seen)
        connection = HttpConnection()
        answer = await connection.fetch(
            ProbeRequest("GET", f"http://127.0.0.1:{port}/v1/models"), max_body_bytes=CAP
        )
        await connection.aclose()
        closed = trio.socket.socket()
        await closed.bind(("127.0.0.1", 0))
        refused_port = closed.getsockname()[1]
        closed.close()  # bound, never listening: nothing will answer there
        with pytest.raises(TransportError, match=rf"127\.0\.0\.1:{refused_port}: Connection refused"):
            await HttpConnection().fetch(
                ProbeRequest("GET", f"http://127.0.0.1:{refused_port}/"), max_body_bytes=CAP
            )
        nursery.cancel_scope.cancel()
    assert (answer.status, answer.body) == (200, b"{}") and len(seen) == 1

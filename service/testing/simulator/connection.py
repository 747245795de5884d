"""One client connection: h11 framing, reading requests, writing replies, disconnect-aware waits.

Every wait reads the socket instead of sleeping, so it notices the client
hanging up (:class:`_ClientGone`); that is how tests prove a cancelled probe
stops its upstream request.
"""

from __future__ import annotations

import contextlib
import http
import json
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import h11
import trio

_RECV_SIZE: Final = 65536
#: A probe body is tiny; anything bigger is a broken or hostile client.
_MAX_REQUEST_BODY: Final = 1 << 20
#: Bytes a client may pipeline while its previous request is still being answered.
_MAX_PIPELINED: Final = 1 << 20


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass(slots=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    # Tokens the provider bills for this answer (its ``usage``); counted in
    # ProviderStats.billed_tokens only when the healthy answer is delivered.
    billed_tokens: int = 0


def _json_reply(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> _Reply:
    return _Reply(status, _json(obj), headers=headers or [])


class _ClientGone(Exception):
    """The client closed or reset its connection while we were answering."""


@dataclass(slots=True)
class _Request:
    method: str
    path: str  # percent-decoded
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


class _Conn:
    """One client connection: its stream, its h11 state, and disconnect-aware waits."""

    __slots__ = ("closed", "h11", "head", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER)
        self.closed = False  # the socket is already gone (mode "reset")
        self.head = False  # current request is HEAD: headers only

    async def send(self, *events: h11.Event) -> None:
        data = b"".join(self.h11.send(event) or b"" for event in events)
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _ClientGone from exc

    async def send_reply(self, reply: _Reply, *, close: bool = False) -> None:
        events: list[h11.Event] = [self.response_head(reply.status, reply, len(reply.body), close)]
        if reply.body and not self.head:
            events.append(h11.Data(data=reply.body))
        events.append(h11.EndOfMessage())
        await self.send(*events)

    @staticmethod
    def response_head(status: int, reply: _Reply, length: int, close: bool = False) -> h11.Response:
        headers = [
            ("content-type", reply.content_type),
            ("content-length", str(length)),
            ("server", "router-health-sim"),
            *reply.headers,
        ]
        if close:
            headers.append(("connection", "close"))
        try:
            reason = http.HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
        return h11.Response(status_code=status, headers=headers, reason=reason)

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` (``inf`` = forever) while watching the socket.

        Reading instead of sleeping is what makes waits disconnect-aware: an EOF
        or reset from the client ends the wait at once with :class:`_ClientGone`,
        so a probe cancelled on the checker's side stops here too. Bytes that
        arrive meanwhile (a pipelined next request) are kept for h11.
        """
        if seconds <= 0:
            await trio.lowlevel.checkpoint()
            return
        deadline = trio.current_time() + seconds
        while True:
            with trio.move_on_at(deadline):
                try:
                    data = await self.stream.receive_some(_RECV_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise _ClientGone from exc
                if not data:
                    raise _ClientGone
                self.h11.receive_data(data)
                if len(self.h11.trailing_data[0]) > _MAX_PIPELINED:
                    raise _ClientGone  # flooding us while we answer: drop it
                continue
            return


async def _read_request(conn: _Conn) -> _Request | None:
    """Read one full request (head and body); None when the client is done."""
    c = conn.h11
    conn.head = False
    request: h11.Request | None = None
    body = bytearray()
    while True:
        try:
            event = c.next_event()
        except h11.RemoteProtocolError as exc:
            await _reject(conn, exc.error_status_hint, f"bad request: {exc}")
            return None
        if event is h11.NEED_DATA:
            if c.they_are_waiting_for_100_continue:
                await conn.send(h11.InformationalResponse(status_code=100, headers=[]))
            try:
                data = await conn.stream.receive_some(_RECV_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            c.receive_data(data)
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > _MAX_REQUEST_BODY:
                await _reject(conn, 413, "request body too large")
                return None
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return _parse_request(request, bytes(body))
        else:  # ConnectionClosed (PAUSED cannot happen before EndOfMessage)
            return None


def _parse_request(request: h11.Request, body: bytes) -> _Request:
    target = urlsplit(request.target.decode("latin-1"))
    return _Request(
        method=request.method.decode("latin-1").upper(),
        path=unquote(target.path) or "/",
        query=dict(parse_qsl(target.query, keep_blank_values=True)),
        headers={k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers},
        body=body,
    )


async def _reject(conn: _Conn, status: int, message: str) -> None:
    """Answer a request we cannot parse, then close: never let it reach a handler."""
    if conn.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
        with contextlib.suppress(_ClientGone, h11.LocalProtocolError):
            await conn.send_reply(_json_reply(status, {"error": message}), close=True)
    conn.closed = True

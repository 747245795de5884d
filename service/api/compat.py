"""Where the app reaches into quart-trio, Quart and hypercorn internals, and why.

Everything here overrides private behaviour, checked against quart-trio 0.12,
Quart 0.22 and hypercorn 0.18 (pyproject.toml bounds all three). Re-check it
when raising a bound: the end-to-end tests exercise each override.
"""

from __future__ import annotations

import contextvars
import json
import math
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import quote_from_bytes

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, Event, Updated
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable
from quart import Request, Response
from quart.asgi import ASGIHTTPConnection
from quart.typing import ResponseTypes
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection

from ..engine.telemetry import Tracing
from .headers import POLICY

__all__ = [
    "CONNECTIONS_KEY",
    "ConnectionSlots",
    "RouterHealthApp",
    "StreamResponse",
    "limit_connections",
    "stream_ended",
]


# -- hypercorn: a client hanging up mid-body must not crash the server -------------

_hypercorn_protocol_send: Final = TCPServer.protocol_send


async def _protocol_send(self: TCPServer, event: Event) -> None:
    """hypercorn's ``TCPServer.protocol_send``, with a busy socket read as a closed one
    (and, on a capped server, each connection's idle/busy changes noted: see below).

    Why: when a client hangs up in the middle of a request body, hypercorn's
    reading task answers the broken request (a 400) while the app's task,
    done with its own answer, is closing the same socket (``send_eof``, which
    yields inside trio's one-sender guard). The 400's ``send_all`` then
    raises ``trio.BusyResourceError``, which hypercorn 0.18 does not catch:
    it escapes the connection's task group and ends the whole server, so one
    client could stop the service. The socket is being closed anyway, so the
    answer is the one hypercorn gives a broken socket: the connection is
    closed. Patched once, on import of this module (the app imports it).
    """
    if isinstance(event, Updated):  # idle: between requests; busy: a request is being served
        slots = _slots_of(self)
        if slots is not None:
            slots.mark(self, idle=event.idle)
    try:
        await _hypercorn_protocol_send(self, event)
    except trio.BusyResourceError:
        await self.protocol.handle(Closed())


if getattr(TCPServer.protocol_send, "__name__", "") != "_protocol_send":
    TCPServer.protocol_send = _protocol_send  # type: ignore[method-assign]


# -- hypercorn: a cap on the connections one server holds -----------------------------

#: Where :func:`limit_connections` puts a server's slots on its hypercorn config.
_SLOTS_ATTRIBUTE: Final = "router_health_connections"
#: Where ``serve()`` keeps the serving app's :class:`ConnectionSlots` (``app.extensions``).
CONNECTIONS_KEY: Final = "router_health.connections"
#: A refused connection is answered, then read until the client closes, within this.
_REFUSAL_SECONDS: Final = 1.0
#: Refused connections being read at once; past that, closed right after the answer.
_MAX_LINGERING: Final = 32
_LINGER_BYTES: Final = 65536


class ConnectionSlots:
    """At most ``limit`` client connections held at once by one hypercorn server.

    Why: hypercorn (0.18) takes every connection it can accept. Past the
    process's open-file limit, each ``accept`` fails and logs a traceback and
    nothing new gets in, ``/livez`` included. With slots, a connection that
    arrives when all are held takes the place of the connection that has been
    *idle* longest (one between requests, or one that has sent no request
    yet): it is closed, as its keep-alive timeout would have closed it later,
    and a client must expect that of any keep-alive connection. Only when every
    held connection is busy with a request does the newcomer get a minimal
    ``HTTP/1.1 503`` JSON answer (``too_many_connections``, ``Retry-After: 1``,
    ``Connection: close``) and is closed. Never a wait: a server at its cap
    answers at once.

    A server gets slots through its hypercorn config (:func:`limit_connections`),
    an attribute hypercorn ignores, so other hypercorn servers in the process
    are unaffected. Overrides ``TCPServer.run`` and extends the
    ``protocol_send`` patch above, which sees hypercorn's ``Updated(idle=...)``
    events: a connection is idle from its start until its first request's
    head has arrived, and again after each answer.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a connection cap needs at least 1 slot, got {limit}")
        self.limit = limit
        self.evicted = 0  # idle connections closed to make room, since creation
        self.refused = 0  # connections answered 503, since creation
        self._held: set[TCPServer] = set()
        self._idle: dict[TCPServer, None] = {}  # insertion order: longest idle first
        self._lingering = 0
        self._answer = _refusal(limit)

    def __repr__(self) -> str:
        return f"ConnectionSlots(limit={self.limit}, open={self.open}, idle={self.idle})"

    @property
    def open(self) -> int:
        return len(self._held)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def take(self, server: TCPServer) -> bool:
        """A slot for ``server`` (closing the longest-idle connection if need be), or False."""
        if len(self._held) >= self.limit:
            victim = next(iter(self._idle), None)
            if victim is None:
                self.refused += 1
                return False
            self.release(victim)
            self.evicted += 1
            _close_at_once(victim)
        self._held.add(server)
        self._idle[server] = None  # idle until its first request arrives
        return True

    def release(self, server: TCPServer) -> None:
        self._held.discard(server)
        self._idle.pop(server, None)

    def mark(self, server: TCPServer, *, idle: bool) -> None:
        if server in self._held:
            self._idle.pop(server, None)
            if idle:
                self._idle[server] = None  # the most recently idle: last in line

    async def refuse(self, stream: trio.abc.Stream) -> None:
        """Answer ``stream`` 503 and close it, reading the request first when possible.

        Closing a socket with the request unread would reset the connection,
        and a client may then lose the answer; so the answer is followed by
        an end of sending and what the client sends is read, until it closes
        (it does, after a ``Connection: close`` answer), for at most
        :data:`_REFUSAL_SECONDS` and for at most :data:`_MAX_LINGERING`
        connections at a time (descriptors are what is short).
        """
        linger = self._lingering < _MAX_LINGERING and isinstance(stream, trio.SocketStream)
        self._lingering += linger
        try:
            with trio.move_on_after(_REFUSAL_SECONDS):
                await stream.send_all(self._answer)
                if linger:
                    assert isinstance(stream, trio.SocketStream)
                    await stream.send_eof()
                    read = 0
                    while read < _LINGER_BYTES and (chunk := await stream.receive_some(16384)):
                        read += len(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client is gone: nothing left to tell it
        finally:
            self._lingering -= linger
            await trio.aclose_forcefully(stream)


def limit_connections(config: HypercornConfig, limit: int) -> ConnectionSlots:
    """Cap the connections a hypercorn server started with ``config`` holds at ``limit``."""
    slots = ConnectionSlots(limit)
    setattr(config, _SLOTS_ATTRIBUTE, slots)
    return slots


def _slots_of(server: TCPServer) -> ConnectionSlots | None:
    slots = getattr(server.config, _SLOTS_ATTRIBUTE, None)
    return slots if isinstance(slots, ConnectionSlots) else None


def _refusal(limit: int) -> bytes:
    """The whole answer to a connection past the cap: JSON, the app's usual headers."""
    body = json.dumps(
        {
            "error": "too_many_connections",
            "message": f"all {limit} connections this server takes ([server] max_connections) "
            "are busy; retry shortly",
        },
        separators=(",", ":"),
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Retry-After: 1",
        "Connection: close",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        "X-Frame-Options: DENY",
        "Referrer-Policy: no-referrer",
        f"Content-Security-Policy: {POLICY}",
    )
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


def _close_at_once(server: TCPServer) -> None:
    """Close an idle connection's socket now (its descriptor is free on return).

    Its reading task then sees the stream closed and ends; its keep-alive
    timer (hypercorn's ``idle_task``, whose handle is a cancel scope in
    hypercorn 0.18) is cancelled so that the task does not linger until the
    timeout, holding nothing.
    """
    stream: Any = server.stream
    socket = getattr(getattr(stream, "transport_stream", stream), "socket", None)
    if socket is not None:
        socket.close()  # trio wakes any task waiting on it with ClosedResourceError
    handle = getattr(server.idle_task, "_handle", None)
    if isinstance(handle, trio.CancelScope):
        handle.cancel()


_hypercorn_run: Final = TCPServer.run


async def _run(self: TCPServer) -> None:
    """hypercorn's ``TCPServer.run``, within the server's :class:`ConnectionSlots` if it has any
    (and with the :class:`_IdleTimer` below)."""
    slots = _slots_of(self)
    if slots is None:
        await _hypercorn_run(self)
    elif not slots.take(self):
        await slots.refuse(self.stream)
    else:
        self.idle_task = _IdleTimer(self)  # type: ignore[assignment]
        try:
            await _hypercorn_run(self)
        finally:
            slots.release(self)


if getattr(TCPServer.run, "__name__", "") != "_run":
    TCPServer.run = _run  # type: ignore[method-assign]


# -- hypercorn: the keep-alive timer without a task per request -----------------------


class _IdleTimer:
    """A connection's keep-alive timeout (hypercorn's ``TrioSingleTask``), one task for its life.

    Why: hypercorn 0.18 re-arms the timeout after every answer by cancelling
    the connection's timer task and starting a new one (under a lock, with
    ``nursery.start``), and stops it when the next request arrives: on this
    stack that is a quarter of what a small answer costs the server (about
    150 µs of 600; ``python -m benchmarks.serving``). Here one task waits
    for the whole connection and re-arming moves its deadline. What it does
    is hypercorn's ``_idle_timeout``: armed (between requests), the deadline
    passing or the server's shutdown (``context.terminated``) closes the
    connection; disarmed (a request is being served), neither does. The task
    ends when the connection's reading ends (the client closed it) or when
    ``_handle`` is cancelled (:class:`ConnectionSlots` closing it at once).

    Used by the servers ``serve()`` starts (those with :class:`ConnectionSlots`);
    other hypercorn servers in the process keep hypercorn's own.
    """

    def __init__(self, server: TCPServer) -> None:
        self._server = server
        self._armed = False
        self._deadline = math.inf
        self._wait: trio.CancelScope | None = None  # the wait in progress: its deadline moves
        self._rearmed = trio.Event()
        #: The watching task's scope (hypercorn's attribute name for its timer's scope).
        self._handle: trio.CancelScope | None = None

    async def restart(self, task_group: Any, action: Any) -> None:
        """Arm the timeout (hypercorn passes its ``_idle_timeout`` as ``action``: done here)."""
        self._deadline = trio.current_time() + self._server.config.keep_alive_timeout
        self._armed = True
        if self._handle is None:
            nursery = getattr(task_group, "_nursery", None)
            if nursery is None:
                return
            self._handle = trio.CancelScope()
            nursery.start_soon(self._watch, self._handle)
        elif self._wait is not None:
            self._wait.deadline = self._deadline
        else:
            self._rearmed.set()

    async def stop(self) -> None:
        """Disarm it: a request is being served."""
        self._armed = False
        if self._wait is not None:
            self._wait.deadline = math.inf

    def end(self) -> None:
        """The connection reads no more: the timer has nothing left to close."""
        if self._handle is not None:
            self._handle.cancel()

    async def _watch(self, handle: trio.CancelScope) -> None:
        with handle:
            while True:
                while not self._armed:
                    self._rearmed = trio.Event()
                    await self._rearmed.wait()
                with trio.CancelScope(deadline=self._deadline) as wait:
                    self._wait = wait
                    try:
                        await self._server.context.terminated.wait()
                    finally:
                        self._wait = None
                if self._armed:  # its deadline passed, or the server is shutting down
                    break
            with trio.CancelScope(shield=True):
                await self._server._initiate_server_close()


_hypercorn_read_data: Final = TCPServer._read_data


async def _read_then_end_timer(self: TCPServer) -> None:
    """hypercorn's ``TCPServer._read_data``, ending the :class:`_IdleTimer` when it returns."""
    try:
        await _hypercorn_read_data(self)
    finally:
        if isinstance(self.idle_task, _IdleTimer):
            self.idle_task.end()


if getattr(TCPServer._read_data, "__name__", "") != "_read_then_end_timer":
    TCPServer._read_data = _read_then_end_timer  # type: ignore[method-assign]


class _HTTPConnection(TrioASGIHTTPConnection):
    """Quart-Trio's per-request ASGI driver, minus one cancellation.

    Why: Quart-Trio cancels a request's nursery as soon as ``http.disconnect``
    arrives; that is what cancels the checks of a client that went away, and
    it stays. But hypercorn also sends ``http.disconnect`` at the *end* of
    every response, from inside the app's last ``send()``, and then closes or
    recycles the connection in that same call: cancelling there interrupts
    the close half-way. The connection stays open, hypercorn's keep-alive
    timer is never re-armed, and a graceful shutdown with a request in flight
    waits out the whole grace period for a connection nobody uses. So once
    the response is being sent, a disconnect no longer cancels anything (the
    send cannot block on a vanished client: hypercorn drops it).

    Except for event streams: their "response" is open-ended and waits for
    events, so it is exactly what a disconnect must cancel (that is how a
    closed dashboard unsubscribes at once instead of at its next event),
    until the stream ends by itself (shutdown): then its last send must
    finish like any other response's (:func:`stream_ended`).

    Overrides ``TrioASGIHTTPConnection.handle_messages`` (quart-trio 0.12) and
    ``ASGIHTTPConnection._send_response`` (Quart 0.22).
    """

    _responding = False

    async def handle_messages(  # type: ignore[override]
        self, nursery: trio.Nursery, request: Request, receive: ASGIReceiveCallable
    ) -> None:
        await ASGIHTTPConnection.handle_messages(self, request, receive)
        if not self._responding:
            nursery.cancel_scope.cancel()

    async def _send_response(self, send: ASGISendCallable, response: ResponseTypes) -> None:
        self._responding = not isinstance(response, StreamResponse)
        # The body is iterated in this task: the stream finds its connection here.
        _RESPONDING.set(self)
        await super()._send_response(send, response)

    def stream_ended(self) -> None:
        self._responding = True


class StreamResponse(Response):
    """An open-ended event stream (a GET of /v1/health/stream; HEAD is a plain response)."""


# The connection sending the current response, for a stream that ends by itself.
_RESPONDING: contextvars.ContextVar[_HTTPConnection] = contextvars.ContextVar("responding")


def stream_ended() -> None:
    """The current event stream is ending by itself: let its last send complete."""
    connection = _RESPONDING.get(None)
    if connection is not None:
        connection.stream_ended()


#: Bytes of a query string kept as they are; anything else is percent-encoded.
_QUERY_SAFE: Final = bytes(range(0x20, 0x7F)).decode("ascii")


def _ascii_query(scope: Any) -> Any:
    """The scope with non-ASCII query bytes percent-encoded (what a browser would send).

    Why: Quart (0.22) decodes the raw query string as UTF-8 while it builds
    the request, before any error handler exists, so invalid bytes there
    (which hypercorn 0.18 passes through) would end in a bare 500.
    Percent-encoded, they reach the parameter parser like any other bad
    value: a 400.
    """
    query = scope.get("query_string", b"")
    if query.isascii():
        return scope
    return {**scope, "query_string": quote_from_bytes(query, safe=_QUERY_SAFE).encode("ascii")}


#: An answer ready before Quart sees the request: status, headers, body (or None).
QuickAnswer = Callable[[Mapping[str, Any]], "tuple[int, list[tuple[bytes, bytes]], bytes] | None"]


class RouterHealthApp(QuartTrio):
    """QuartTrio with the two fixes above (its connection class, ASCII query strings), and
    answers sent straight from the ASGI entry point when ``quick_answer`` has one.

    ``quick_answer`` (set by ``create_app``) returns an answer already made
    for an identical request (:mod:`service.api.answers`), or None: then
    Quart handles the request as usual. Sent here, such an answer skips
    Quart's request and response objects, routing and hooks, which would
    each cost more than the answer itself.

    While ``tracing`` (the checker's, set by ``create_app``) is on, the trace
    context a request carries (``traceparent``) is current while it is
    handled: Quart-Trio's request task, and a shared run the request starts,
    copy it, so that run is a child of the caller's span.
    """

    # ``asgi_http_class`` is how quart-trio 0.12 picks the per-request driver.
    asgi_http_class = _HTTPConnection
    quick_answer: QuickAnswer | None = None
    tracing: Tracing | None = None

    async def __call__(
        self, scope: Any, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope.get("type") == "http":
            scope = _ascii_query(scope)
            if self.quick_answer is not None and (ready := self.quick_answer(scope)) is not None:
                status, headers, body = ready
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            if self.tracing is not None and self.tracing.on:
                with self.tracing.caller(scope.get("headers", ())):
                    await super().__call__(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

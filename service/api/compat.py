"""Where the app reaches into quart-trio, Quart and hypercorn internals, and why.

Everything here overrides private behaviour, checked against quart-trio 0.12,
Quart 0.22 and hypercorn 0.18 (pyproject.toml bounds all three). Re-check it
when raising a bound: the end-to-end tests exercise each override.
"""

from __future__ import annotations

import contextvars
from typing import Any, Final
from urllib.parse import quote_from_bytes

import trio
from hypercorn.events import Closed, Event
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable
from quart import Request, Response
from quart.asgi import ASGIHTTPConnection
from quart.typing import ResponseTypes
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection

__all__ = ["RouterHealthApp", "StreamResponse", "stream_ended"]


# -- hypercorn: a client hanging up mid-body must not crash the server -------------

_hypercorn_protocol_send: Final = TCPServer.protocol_send


async def _protocol_send(self: TCPServer, event: Event) -> None:
    """hypercorn's ``TCPServer.protocol_send``, with a busy socket read as a closed one.

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
    try:
        await _hypercorn_protocol_send(self, event)
    except trio.BusyResourceError:
        await self.protocol.handle(Closed())


if getattr(TCPServer.protocol_send, "__name__", "") != "_protocol_send":
    TCPServer.protocol_send = _protocol_send  # type: ignore[method-assign]


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


class RouterHealthApp(QuartTrio):
    """QuartTrio with the two fixes above: its connection class, and ASCII query strings."""

    # ``asgi_http_class`` is how quart-trio 0.12 picks the per-request driver.
    asgi_http_class = _HTTPConnection

    async def __call__(
        self, scope: Any, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope.get("type") == "http":
            scope = _ascii_query(scope)
        await super().__call__(scope, receive, send)

"""What each failure mode writes once a probe has passed validation and waited its latency.

Most modes are a canned reply (``body``: the one the behaviour spells out);
``slow_body``, ``reset`` and ``huge_body`` need byte-level control of the
connection and are written here chunk by chunk.
``hang`` never writes anything and is handled by the caller.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import Final

import h11
import trio

from .behavior import Behavior, ProviderStats
from .connection import _Conn, _Reply, _Request
from .kinds import wire_for
from .routes import _sent_key

_HUGE_TOTAL: Final = 10 * 1024 * 1024
_HUGE_CHUNK: Final = 64 * 1024
_HUGE_PREFIX: Final = b'{"data": "'
_HUGE_SUFFIX: Final = b'"}'
_HUGE_FILLER: Final = b"x" * _HUGE_CHUNK

_MALFORMED_JSON: Final = b'{"data": ['
_WRONG_SHAPE: Final = b'{"unexpected": true}'
_CAPTIVE_PORTAL: Final = (
    b"<!DOCTYPE html>\n<html><head><title>Guest Wi-Fi - Sign in</title></head>\n"
    b"<body><h1>Welcome to Guest Wi-Fi</h1>\n"
    b"<p>Please accept the terms of use to continue browsing.</p>\n"
    b'<form method="post" action="/login"><button>Accept</button></form>\n'
    b"</body></html>\n"
)
_SIMULATED_ERROR: Final = "simulated upstream error"


def _huge_chunks() -> Iterator[bytes]:
    """A 10 MiB JSON-ish document in 64 KiB chunks, without ever holding it whole."""
    sent = 0
    while sent < _HUGE_TOTAL:
        size = min(_HUGE_CHUNK, _HUGE_TOTAL - sent)
        first, last = sent == 0, sent + size == _HUGE_TOTAL
        if first or last:
            buf = bytearray(_HUGE_FILLER[:size])
            if first:
                buf[: len(_HUGE_PREFIX)] = _HUGE_PREFIX
            if last:
                buf[size - len(_HUGE_SUFFIX) :] = _HUGE_SUFFIX
            yield bytes(buf)
        else:
            yield _HUGE_FILLER if size == _HUGE_CHUNK else _HUGE_FILLER[:size]
        sent += size


async def _send_trickled(conn: _Conn, reply: _Reply, interval: float) -> None:
    """Headers now, then the body one byte per ``interval``, watching for hang-ups."""
    await conn.send(conn.response_head(reply.status, reply, len(reply.body)))
    for i in range(len(reply.body)):
        await conn.pause(interval)
        await conn.send(h11.Data(data=reply.body[i : i + 1]))
    await conn.send(h11.EndOfMessage())


async def _send_reset(conn: _Conn, reply: _Reply) -> None:
    """Half the body, then an abortive close: SO_LINGER {1, 0} makes close() send RST."""
    half = reply.body[: max(1, len(reply.body) // 2)]
    await conn.send(conn.response_head(reply.status, reply, len(reply.body)), h11.Data(data=half))
    conn.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.closed = True
    await trio.aclose_forcefully(conn.stream)


async def _send_huge(conn: _Conn) -> None:
    await conn.send(conn.response_head(200, _Reply(200, b""), _HUGE_TOTAL))
    for chunk in _huge_chunks():
        await conn.send(h11.Data(data=chunk))
    await conn.send(h11.EndOfMessage())


async def _send_mode_reply(
    conn: _Conn, kind: str, behavior: Behavior, reply: _Reply, req: _Request, stats: ProviderStats
) -> None:
    """Answer a validated probe as ``behavior.mode`` says (any mode but ``hang``).

    ``reply`` is the healthy answer; mode ``rate_limited`` counts its 429 in ``stats``,
    and the modes that deliver the healthy answer (cut short or not) count what it bills.
    """
    mode = behavior.mode
    wire = wire_for(kind)
    if mode in ("ok", "slow_body", "reset"):
        stats.billed_tokens += reply.billed_tokens
    if mode == "ok":
        await conn.send_reply(reply)
    elif mode == "slow_body":
        await _send_trickled(conn, reply, behavior.trickle_interval)
    elif mode == "status":
        await conn.send_reply(wire.error_reply(behavior.status, _SIMULATED_ERROR))
    elif mode == "rate_limited":
        stats.rate_limited += 1
        await conn.send_reply(wire.rate_limited(behavior.retry_after))
    elif mode in ("unauthorized", "echo_key"):
        sent = _sent_key(kind, req)
        await conn.send_reply(wire.forced_auth_error(sent, echo=mode == "echo_key"))
    elif mode == "malformed_json":
        await conn.send_reply(_Reply(200, _MALFORMED_JSON))
    elif mode == "html":
        await conn.send_reply(_Reply(200, _CAPTIVE_PORTAL, "text/html; charset=utf-8"))
    elif mode == "wrong_shape":
        await conn.send_reply(_Reply(200, _WRONG_SHAPE))
    elif mode == "reset":
        await _send_reset(conn, reply)
    elif mode == "huge_body":
        await _send_huge(conn)
    elif mode == "body":
        text = behavior.body.replace("{key}", _sent_key(kind, req) or "")
        await conn.send_reply(_Reply(behavior.status, text.encode(), behavior.content_type))
    else:  # pragma: no cover - Behavior validation keeps this unreachable
        raise AssertionError(f"unhandled mode {mode!r}")

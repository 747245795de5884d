"""A local HTTP receiver for what the service sends out (alerts, webhooks): trio + h11 on loopback.

It records every request (method, target, headers, body) and answers as its
``mode`` says: ``ok`` (``ok_status``: 200 with ``{}``, or a 204 with no body),
``fail`` (500), ``hang`` (never answers; counts the client hanging up),
``hold`` (answers once ``release`` is set). Waits are event-driven:
:meth:`HttpReceiver.wait_until` re-checks a condition on every request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
import trio

__all__ = ["HttpReceiver", "Received"]


@dataclass
class Received:
    at: float  # trio clock when the whole request was in
    method: str
    target: str  # path and query
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """Records every request; answers per ``mode``: ok, fail (500), hang, hold (to release)."""

    def __init__(self, *, ok_status: int = 200) -> None:
        self.mode = "ok"
        self.ok_status = ok_status  # 204: no body; anything else: ``{}``
        self.requests: list[Received] = []
        self.disconnects = 0  # clients that hung up on a request never answered
        self.release = trio.Event()
        self.port = 0
        self._changed = trio.Event()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, predicate: Callable[[], object]) -> None:
        while not predicate():
            await self._changed.wait()

    async def wait_requests(self, n: int) -> list[Received]:
        await self.wait_until(lambda: len(self.requests) >= n)
        return self.requests

    def to(self, target: str) -> list[Received]:
        """The requests whose path is ``target`` (the query left out)."""
        return [r for r in self.requests if r.target.split("?")[0] == target]

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request: h11.Request | None = None
                body = bytearray()
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await stream.receive_some(65536))
                        continue
                    if isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:  # ConnectionClosed
                        return
                assert request is not None
                self.requests.append(
                    Received(
                        at=trio.current_time(),
                        method=request.method.decode(),
                        target=request.target.decode(),
                        headers={k.decode().lower(): v.decode() for k, v in request.headers},
                        body=bytes(body),
                    )
                )
                self._notify()
                mode = self.mode
                if mode == "hang":
                    while await stream.receive_some(65536):
                        pass
                    self.disconnects += 1
                    self._notify()
                    return
                if mode == "hold":
                    await self.release.wait()
                await stream.send_all(self._answer(conn, mode))
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            self.disconnects += 1
            self._notify()
        finally:
            await trio.aclose_forcefully(stream)

    def _answer(self, conn: h11.Connection, mode: str) -> bytes:
        if mode != "fail" and self.ok_status == 204:
            return conn.send(h11.Response(status_code=204, headers=[("content-length", "0")])) + (
                conn.send(h11.EndOfMessage()) or b""
            )
        status, answer = (500, b'{"error": "boom"}') if mode == "fail" else (self.ok_status, b"{}")
        headers = [("content-type", "application/json"), ("content-length", str(len(answer)))]
        return (
            conn.send(h11.Response(status_code=status, headers=headers))
            + (conn.send(h11.Data(data=answer)) or b"")
            + (conn.send(h11.EndOfMessage()) or b"")
        )

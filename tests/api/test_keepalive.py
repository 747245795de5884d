"""The keep-alive timeout, kept with one timer per connection instead of a task per request.

hypercorn 0.18 re-arms a connection's keep-alive timeout after every answer
by starting a new task: a quarter of what a small answer cost the server
(``python -m benchmarks.serving``). ``service/api/compat.py`` keeps one timer
per connection and moves its deadline. What the timeout does must not
change: an idle connection closes ``keep_alive_timeout`` seconds after its
last answer, a request being served is never cut by it, a shutdown closes
idle connections at once, and a connection the client closed leaves nothing
behind. Over a raw loopback socket to hypercorn; the clock is Trio's
MockClock, moved by hand, so "5 s later" needs no waiting, and every check
waits for the server to settle (``wait_all_tasks_blocked``), never for time.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import h11
import trio
import trio.testing
from quart_trio import QuartTrio

from service.api.app import serve
from service.api.compat import CONNECTIONS_KEY, ConnectionSlots
from tests.support.app import make_app
from tests.support.fakes import Probe, adapter

KEEP_ALIVE = 5.0


class Client:
    """One HTTP/1.1 connection, request after request."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    async def send(self, target: str) -> None:
        data = self.h11.send(h11.Request(method="GET", target=target, headers=[("Host", "t")]))
        await self.stream.send_all((data or b"") + (self.h11.send(h11.EndOfMessage()) or b""))

    async def answer(self) -> int:
        status = 0
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                self.h11.start_next_cycle()
                return status

    async def get(self, target: str) -> int:
        """One request's status, once the server has settled after answering it."""
        await self.send(target)
        status = await self.answer()
        await trio.testing.wait_all_tasks_blocked()  # e.g. its keep-alive timer re-armed
        return status

    async def closed_by_server(self) -> bool:
        """Whether the server has closed the connection, once the server has settled."""
        await trio.testing.wait_all_tasks_blocked()
        with socket.socket(fileno=os.dup(self.stream.socket.fileno())) as raw:
            raw.setblocking(False)
            try:
                return raw.recv(1, socket.MSG_PEEK) == b""
            except BlockingIOError:
                return False  # open, nothing to read


@dataclass
class Served:
    app: QuartTrio
    probe: Probe
    port: int
    stop: trio.Event
    stopped: trio.Event

    async def connect(self) -> Client:
        return Client(await trio.open_tcp_stream("127.0.0.1", self.port))

    @property
    def slots(self) -> ConnectionSlots:
        slots = self.app.extensions[CONNECTIONS_KEY]
        assert isinstance(slots, ConnectionSlots)
        return slots


@asynccontextmanager
async def served() -> AsyncIterator[Served]:
    """gpt-4 behind a probe held on its gate, served with a 5 s keep-alive timeout."""
    probe = Probe(gate=trio.Event())
    app, _ = make_app(
        {"gpt-4": [adapter("openai", probe)]},
        checks={"timeout": 60, "model_timeout": 60, "adapter_timeout": 60},
        server={"keep_alive_timeout": KEEP_ALIVE},
    )
    stop, stopped = trio.Event(), trio.Event()

    async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await serve(app, host="127.0.0.1", port=0, shutdown_trigger=stop.wait,
                        task_status=task_status)
        finally:
            stopped.set()

    async with trio.open_nursery() as nursery:
        urls = await nursery.start(run)
        port = int(urls[0].rsplit(":", 1)[1])
        try:
            yield Served(app, probe, port, stop, stopped)
        finally:
            if probe.gate is not None:
                probe.gate.set()
            stop.set()


async def test_an_idle_connection_closes_keep_alive_seconds_after_its_last_answer(
    mock_clock: trio.testing.MockClock,
) -> None:
    async with served() as server:
        client = await server.connect()
        assert await client.get("/livez") == 200
        mock_clock.jump(KEEP_ALIVE - 0.1)
        assert not await client.closed_by_server()
        assert await client.get("/livez") == 200  # the timeout starts again from this answer
        mock_clock.jump(KEEP_ALIVE - 0.1)
        assert not await client.closed_by_server()
        mock_clock.jump(0.2)
        assert await client.closed_by_server()
        assert server.slots.open == 0


async def test_a_request_being_served_is_not_cut_by_the_keep_alive_timeout(
    mock_clock: trio.testing.MockClock,
) -> None:
    async with served() as server:
        client = await server.connect()
        await client.send("/v1/health/?timeout=60")
        await server.probe.entered.wait()
        mock_clock.jump(KEEP_ALIVE * 3)  # busy: the timer is off
        assert not await client.closed_by_server()
        assert server.probe.gate is not None
        server.probe.gate.set()
        assert await client.answer() == 200
        assert await client.get("/livez") == 200  # the same connection, still open


async def test_a_shutdown_closes_idle_connections_at_once(
    mock_clock: trio.testing.MockClock,
) -> None:
    async with served() as server:
        client = await server.connect()
        assert await client.get("/livez") == 200
        server.stop.set()
        # No time passes: an idle connection must not hold the shutdown for its timeout.
        assert await client.closed_by_server()
        await trio.testing.wait_all_tasks_blocked()
        assert server.stopped.is_set()


async def test_a_connection_the_client_closes_leaves_nothing_behind(
    mock_clock: trio.testing.MockClock,
) -> None:
    async with served() as server:
        clients = [await server.connect() for _ in range(3)]
        for client in clients:
            assert await client.get("/livez") == 200
        assert server.slots.open == 3
        for client in clients:
            await client.stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        # Gone at once (hypercorn's own timer held each until its keep-alive timeout).
        assert server.slots.open == 0

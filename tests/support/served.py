"""The app served for real: hypercorn on a free loopback port, the simulator upstream.

Nothing sleeps to wait for something to happen: tests wait on the
simulator's counters (``wait_until``/``wait_idle``) and on events, each under
a ``fail_after`` guard so a regression fails instead of hanging. With
``[storage]`` on (:func:`storage_on`), tests wait for the first round
(:func:`first_round`) or ask until an answer says what they expect
(:func:`answer_until`).
"""

from __future__ import annotations

import functools
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import httpx
import trio
from quart_trio import QuartTrio

from service import AdapterManager, parse_config
from service.api.app import EXTENSION_KEY, create_app, get_manager, serve
from service.api.state import ServiceState
from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support import eventually

#: model -> simulated providers serving it
MODELS: Mapping[str, tuple[str, ...]] = {
    "gpt-4": ("openai", "openai-backup"),
    "claude-3-haiku": ("anthropic",),
    "llama3:latest": ("ollama",),
}
PROVIDERS = ("openai", "openai-backup", "anthropic", "ollama")

#: Generous bound for anything that should take milliseconds.
GUARD = 5.0
#: What a busy machine (two cores shared with other work) may add past a
#: deadline kept over real sockets: scheduling, a GC pause, loopback I/O.
DEADLINE_SLACK = 1.0


def deadline_bound(deadline: float) -> float:
    """The longest something under a ``deadline`` (seconds) over real sockets may take.

    Deadlines checked this way are at least :data:`DEADLINE_SLACK`, so the
    bound stays below twice the deadline: a deadline applied twice or three
    times too late fails, whatever the machine's load. Exact timings belong
    to MockClock tests.
    """
    assert deadline >= DEADLINE_SLACK, "a shorter deadline would hide one applied 3x too late"
    return deadline + DEADLINE_SLACK


def free_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def simulated_fleet() -> list[SimProvider]:
    """The simulated providers behind :data:`MODELS`, answering at once."""
    fast = Behavior(latency=0.0)
    return [
        SimProvider("openai", "openai", "sk-sim-openai", ["gpt-4"], fast),
        SimProvider("openai-backup", "openai-compatible", None, ["gpt-4"], fast),
        SimProvider("anthropic", "anthropic", "sk-sim-anthropic", ["claude-3-haiku"], fast),
        SimProvider("ollama", "ollama", None, ["llama3:latest"], fast),
    ]


def config_for(
    sim: Simulator,
    checks: Mapping[str, Any],
    server: Mapping[str, Any],
    models_map: Mapping[str, Sequence[str]] = MODELS,
) -> dict[str, Any]:
    entries = {entry["name"]: entry for entry in sim.provider_entries()}
    models = [
        {"name": model, "providers": [{**entries[p], "model": model} for p in providers]}
        for model, providers in models_map.items()
    ]
    return {"checks": dict(checks), "server": dict(server), "models": models}


@dataclass
class Service:
    url: str
    sim: Simulator
    app: QuartTrio
    manager: AdapterManager
    client: httpx.AsyncClient
    stop: trio.Event  # set it to shut the server down
    stopped: trio.Event  # set once serve() has returned


@asynccontextmanager
async def running_service(
    *,
    checks: Mapping[str, Any] | None = None,
    server: Mapping[str, Any] | None = None,
    providers: Sequence[SimProvider] | None = None,
    models: Mapping[str, Sequence[str]] | None = None,
    sections: Mapping[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]] | None = None,
    guard: float = 30,
) -> AsyncIterator[Service]:
    """The simulator, the app served by ``serve`` on a free port, and a client.

    ``providers`` and ``models`` (model -> provider names) replace the
    default fleet; ``sections`` adds config tables (``{"storage": {...}}``) and
    arrays of tables (``{"alerts": [{...}, {...}]}``);
    ``guard`` bounds the whole block.
    """
    checks = {"timeout": 10, "model_timeout": 10, "adapter_timeout": 10, **(checks or {})}
    with trio.fail_after(guard):
        async with trio.open_nursery() as upstream:
            sim = Simulator(simulated_fleet() if providers is None else providers)
            await upstream.start(sim.serve)
            document = config_for(sim, checks, server or {}, MODELS if models is None else models)
            document.update({name: _copied(table) for name, table in (sections or {}).items()})
            config = parse_config(document, source="<e2e>", env={})
            app = create_app(config)
            stop, stopped = trio.Event(), trio.Event()

            async def run_server(*, task_status: trio.TaskStatus[list[str]]) -> None:
                try:
                    await serve(
                        app,
                        host="127.0.0.1",
                        port=0,
                        shutdown_trigger=stop.wait,
                        task_status=task_status,
                    )
                finally:
                    stopped.set()

            async with trio.open_nursery() as service_nursery:
                urls = await service_nursery.start(run_server)
                assert len(urls) == 1
                assert urls[0].startswith("http://127.0.0.1:")
                try:
                    async with httpx.AsyncClient(base_url=urls[0], timeout=GUARD * 2) as client:
                        yield Service(urls[0], sim, app, get_manager(app), client, stop, stopped)
                finally:
                    stop.set()
            upstream.cancel_scope.cancel()


def _copied(table: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Any:
    """A config table (or array of tables) the test's own mapping cannot change under the app."""
    if isinstance(table, Mapping):
        return dict(table)
    return [dict(entry) for entry in table]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[bytes, bytes]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def receive_message(
    conn: h11.Connection, stream: trio.SocketStream
) -> tuple[h11.Request | h11.Response | None, bytes]:
    """The head and body of the next message on ``stream``; None for a connection closed first."""
    head: h11.Request | h11.Response | None = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Request | h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return head, body


async def raw_get(service: Service, target: bytes) -> Answer:
    """One ``GET <target>`` on a fresh connection, the target sent byte for byte.

    No client library in between: nothing normalises ``..``, re-encodes ``%``
    or rejects odd bytes on the way.
    """
    host, port = service.url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(
            b"GET " + target + b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        client = h11.Connection(h11.CLIENT)
        client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))  # state only
        client.send(h11.EndOfMessage())
        response, body = await receive_message(client, stream)
    assert isinstance(response, h11.Response)
    return Answer(response.status_code, dict(response.headers), body)


@asynccontextmanager
async def served(
    app: QuartTrio, *, client_timeout: float = GUARD * 2
) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` (already built) served by hypercorn on a free loopback port, and a client for it."""
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            functools.partial(serve, app, host="127.0.0.1", port=0, shutdown_trigger=stop.wait)
        )
        try:
            async with httpx.AsyncClient(base_url=urls[0], timeout=client_timeout) as client:
                yield client
        finally:
            stop.set()


async def shut_down_while_waiting(
    service: Service,
    paths: Sequence[str],
    call: Callable[[str], Awaitable[None]],
    *,
    provider: str,
    in_flight: int,
    grace: float,
) -> float:
    """Start ``call(path)`` for each of ``paths``, and once ``provider`` has ``in_flight``
    probes under way, shut the server down; the seconds the shutdown took.

    Returns after every call has ended and the simulator is idle again.
    """
    sim = service.sim
    async with trio.open_nursery() as clients:
        for path in paths:
            clients.start_soon(call, path)
        with trio.fail_after(GUARD):
            await sim.wait_until(lambda: sim.stats(provider).in_flight >= in_flight)
        start = trio.current_time()
        service.stop.set()
        with trio.fail_after(grace + GUARD):  # only stops a hang
            await service.stopped.wait()
        elapsed = trio.current_time() - start
    with trio.fail_after(GUARD):
        await sim.wait_idle()  # the probes went with the runs
    return elapsed


# -- a service with [storage] on ---------------------------------------------------

def storage_on(folder: Path, flush_interval: float = 0.05) -> dict[str, dict[str, Any]]:
    """``sections`` for a service storing its history in ``folder``/health.db."""
    return {"storage": {"enabled": True, "path": str(folder / "health.db"),
                        "flush_interval": flush_interval}}


async def first_round(service: Service) -> ServiceState:
    """The service's state once every adapter has a result from the first round."""
    state: ServiceState = service.app.extensions[EXTENSION_KEY]
    health = state.health
    assert health is not None
    await eventually(
        lambda: all(health.get(m, p) for m, providers in MODELS.items() for p in providers),
        within=GUARD,
    )
    return state


async def answer_until(service: Service, target: str, condition: Callable[[Any], bool]) -> Any:
    """The JSON of a 200 to ``GET target``, asked again until ``condition`` holds for it."""
    with trio.fail_after(GUARD):
        while True:
            response = await service.client.get(target)
            assert response.status_code == 200, response.text
            body = response.json()
            if condition(body):
                return body
            await trio.sleep(0.02)

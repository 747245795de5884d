"""Structured concurrency, proven from the outside: nothing leaks, nothing outlives its owner.

* A bounded "mini-soak": 200 mixed requests against a real server, a seeded
  share of them disconnecting at random points, with failing and hanging
  upstreams. Afterwards the simulator has no request in flight, and the
  process's open file descriptors and Trio task tree are back to their
  baseline.
* A Trio instrument records every task spawned from the moment a service
  starts: once it stops, none is left.
* Graceful shutdown under load (requests in flight, a performance run in
  progress) ends within the grace period, in process and as a real
  ``router-health serve`` process stopped with SIGTERM (exit 0, no traceback).

"Back to baseline" is judged after a fixed settle procedure, not a sleep:
the client closes its connections, then the test lets the event loop run
until every task is blocked (``wait_all_tasks_blocked``: pending socket
events are delivered first) and re-checks, under a ``fail_after`` guard.
The HTTP clients' keep-alive connections to the upstream may legitimately
differ before and after (a cancelled probe closes its socket), so sockets to
or from the simulator's port, and the simulator's own tasks, are counted
apart and only bounded.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio
import trio.testing

from service.api.app import EXTENSION_KEY
from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support.cli import cli_process, read_stderr, served_url, sigterm_timed
from tests.support.configs import write_config
from tests.support.served import (
    GUARD,
    PROVIDERS,
    Service,
    deadline_bound,
    running_service,
    shut_down_while_waiting,
)

SEED = 20241130
SOAK_REQUESTS = 200
WAVE = 20  # requests in flight at once
SOAK_PATHS = [
    "/v1/health/",
    "/v1/health/?use_concurrent=false",
    "/v1/health/?details=false",
    "/v1/health/models",
    "/v1/health/models/gpt-4",
    "/v1/health/models/claude-3-haiku?use_concurrent=false",
    "/v1/health/performance?timeout=3",
    "/livez",
    "/readyz",
]


# -- observing the process -----------------------------------------------------------------


def live_tasks() -> list[trio.lowlevel.Task]:
    """Every task of this run, by walking the tree down from the root task."""
    found: list[trio.lowlevel.Task] = []
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        found.append(task)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return found


def in_simulator(task: trio.lowlevel.Task | None) -> bool:
    """Whether ``task`` belongs to the simulated upstream (its connection handlers)."""
    while task is not None:
        if task.name.endswith("Simulator.serve"):
            return True
        nursery = task.parent_nursery
        task = nursery.parent_task if nursery is not None else None
    return False


def service_tasks() -> list[trio.lowlevel.Task]:
    return [task for task in live_tasks() if not in_simulator(task)]


def server_connections() -> int:
    """Connections the service's HTTP server is still handling (one task each)."""
    return sum(task.name.endswith("_run_handler") for task in service_tasks())


class TaskLedger(trio.abc.Instrument):
    """Remembers every task spawned while installed, until it exits."""

    def __init__(self) -> None:
        self.alive: set[trio.lowlevel.Task] = set()
        self.spawned = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.alive.add(task)
        self.spawned += 1

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.alive.discard(task)

    def survivors(self) -> list[str]:
        return sorted(task.name for task in self.alive if not in_simulator(task))


def _inodes_on_port(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as lines:
                rows = lines.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            ports = {int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)}
            if port in ports:
                inodes.add(fields[9])
    return inodes


@dataclass(frozen=True)
class FdCensus:
    others: int  # everything but sockets to or from the upstream
    upstream: int  # both ends of keep-alive connections to the simulator, and its listener


def fd_census(upstream_port: int) -> FdCensus:
    upstream_inodes = _inodes_on_port(upstream_port)
    others = upstream = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the directory listing's own descriptor, already closed
        if target.startswith("socket:[") and target[8:-1] in upstream_inodes:
            upstream += 1
        else:
            others += 1
    return FdCensus(others, upstream)


def sim_port(service: Service) -> int:
    return int(service.sim.root_url.rsplit(":", 1)[1])


async def settle(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition()`` holds, re-checking whenever it goes idle."""
    with trio.fail_after(GUARD * 2):
        while not condition():
            await trio.testing.wait_all_tasks_blocked(cushion=0.01)


# -- the mini-soak ---------------------------------------------------------------------------


async def one_request(
    service: Service, client: httpx.AsyncClient, rng: random.Random, tally: dict[str, int]
) -> None:
    path = rng.choice(SOAK_PATHS)
    plan = rng.random()
    with trio.move_on_after(GUARD * 4) as guard:
        async with trio.open_nursery() as nursery:

            async def request() -> None:
                try:
                    response = await client.get(path)
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    # The keep-alive race: the pool reused a connection the
                    # server closed (keep_alive_timeout 0.5 s) at that very
                    # moment. Any HTTP client retries an idle GET once.
                    tally["retried"] = tally.get("retried", 0) + 1
                    response = await client.get(path)
                json.loads(response.content)  # always JSON, whatever happened
                tally[f"answered {response.status_code}"] = tally.get(f"answered {response.status_code}", 0) + 1
                nursery.cancel_scope.cancel()

            nursery.start_soon(request)
            if plan < 0.35:
                # Hang up after a random number of scheduler turns: anywhere
                # from before the request is written to deep inside the checks.
                for _ in range(rng.randrange(0, 400)):
                    await trio.lowlevel.checkpoint()
                tally["hung up early"] = tally.get("hung up early", 0) + 1
                nursery.cancel_scope.cancel()
            elif plan < 0.55:
                # Hang up once some probe is running upstream.
                await service.sim.wait_until(lambda: service.sim.total_stats().in_flight > 0)
                tally["hung up mid-probe"] = tally.get("hung up mid-probe", 0) + 1
                nursery.cancel_scope.cancel()
    assert not guard.cancelled_caught, f"{path} neither answered nor was hung up on"


async def test_mini_soak_with_disconnects_leaves_no_probe_task_or_descriptor_behind() -> None:
    ledger = TaskLedger()
    async with running_service(
        checks={"timeout": 3, "model_timeout": 3, "adapter_timeout": 0.1,
                "recheck_timeouts": False},
        # Hypercorn holds a hung-up client's socket until the keep-alive timeout.
        server={"keep_alive_timeout": 0.5},
        guard=90,
    ) as service:
        sim = service.sim
        sim.set_behavior("openai", mode="hang")  # ends at the adapter's deadline, or a hang-up
        sim.set_behavior("anthropic", mode="status", status=503, latency=0.01)
        sim.set_behavior("ollama", error_rate=0.3, latency=0.02, jitter=0.02)
        sim.set_behavior("openai-backup", latency=0.03, jitter=0.03)
        state = service.app.extensions[EXTENSION_KEY]
        port = sim_port(service)

        # Warm up every path once, then take the baseline after the settle procedure.
        async with httpx.AsyncClient(base_url=service.url, timeout=GUARD * 2) as client:
            for path in SOAK_PATHS:
                await client.get(path)
        await service.client.aclose()
        await sim.wait_idle()
        await settle(lambda: server_connections() == 0)
        baseline_tasks = len(service_tasks())
        baseline_fds = fd_census(port)
        trio.lowlevel.add_instrument(ledger)
        try:
            rng = random.Random(SEED)
            tally: dict[str, int] = {}
            async with httpx.AsyncClient(
                base_url=service.url,
                timeout=GUARD * 2,
                limits=httpx.Limits(max_connections=WAVE, max_keepalive_connections=WAVE),
            ) as client:
                for _ in range(SOAK_REQUESTS // WAVE):
                    async with trio.open_nursery() as wave:
                        for _ in range(WAVE):
                            wave.start_soon(one_request, service, client, rng, tally)
            # Every hang-up reached the upstream as a cancelled probe.
            with trio.fail_after(GUARD * 2):
                await sim.wait_idle()
                await state.wait_idle()
            assert sim.total_stats().in_flight == 0
            await settle(lambda: server_connections() == 0)
            await settle(lambda: len(service_tasks()) == baseline_tasks)
            await settle(lambda: fd_census(port).others == baseline_fds.others)
        finally:
            trio.lowlevel.remove_instrument(ledger)

        # Nothing spawned during the soak is still running (bar upstream handlers).
        assert ledger.survivors() == []
        assert ledger.spawned > SOAK_REQUESTS  # the ledger really watched the soak
        # Keep-alive connections to the upstream: bounded by the adapters' pools.
        assert fd_census(port).upstream <= baseline_fds.upstream + 4 * len(PROVIDERS)
        # The mix really happened: answers, and both kinds of hang-up (loose
        # bounds: a hang-up that loses the race to its answer counts as answered).
        assert sum(v for k, v in tally.items() if k.startswith("answered")) >= SOAK_REQUESTS // 8
        assert tally.get("hung up early", 0) >= SOAK_REQUESTS // 20
        assert tally.get("hung up mid-probe", 0) >= SOAK_REQUESTS // 20
        assert sim.total_stats().disconnected > 0
        # And the service still answers.
        async with httpx.AsyncClient(base_url=service.url, timeout=GUARD) as client:
            assert (await client.get("/livez")).json() == {"status": "ok"}


async def test_no_task_started_by_the_service_outlives_it() -> None:
    ledger = TaskLedger()
    trio.lowlevel.add_instrument(ledger)
    try:
        async with running_service(checks={"adapter_timeout": 60, "model_timeout": 60}) as service:
            sim = service.sim
            sim.set_behavior("openai", mode="hang")
            async with trio.open_nursery() as clients:
                for path in ["/v1/health/", "/v1/health/performance", "/v1/health/models/gpt-4"]:
                    clients.start_soon(service.client.get, path)
                with trio.fail_after(GUARD):
                    await sim.wait_until(lambda: sim.stats("openai").in_flight >= 3)
                assert len(ledger.alive) > 0
                clients.cancel_scope.cancel()  # every client hangs up
        # The service, its server, its shared runs and the upstream are gone, and so is
        # every task any of them started.
        assert [task.name for task in ledger.alive] == []
    finally:
        trio.lowlevel.remove_instrument(ledger)


async def test_graceful_shutdown_under_load_ends_within_the_grace_period() -> None:
    grace = 1.0
    ledger = TaskLedger()
    outcomes: list[str] = []
    async with running_service(
        checks={"adapter_timeout": 60, "model_timeout": 60, "timeout": 60},
        server={"shutdown_grace": grace},
    ) as service:
        sim = service.sim
        sim.set_behavior("openai", mode="hang")
        sim.set_behavior("anthropic", latency=0.05)
        trio.lowlevel.add_instrument(ledger)

        async def client(path: str) -> None:
            try:
                response = await service.client.get(path)
            except httpx.TransportError as exc:
                outcomes.append(type(exc).__name__)
            else:
                outcomes.append(str(response.status_code))

        try:
            paths = ["/v1/health/?timeout=60", "/v1/health/performance?timeout=60",
                     "/v1/health/models/gpt-4?timeout=60", "/v1/health/models?timeout=60"]
            elapsed = await shut_down_while_waiting(
                service, paths, client, provider="openai", in_flight=3, grace=grace
            )
        finally:
            trio.lowlevel.remove_instrument(ledger)
        # Within the grace period plus a busy machine's slack (callers still
        # waiting are answered shortly before it ends): a grace period applied
        # three times too long fails.
        assert elapsed < deadline_bound(grace), elapsed
        assert not service.manager.is_open
        assert sim.stats("openai").disconnected >= 3
        assert ledger.survivors() == []
    assert len(outcomes) == 4  # every client got an answer or a closed connection


def serve_config(path: Path, sim: Simulator, grace: float) -> Path:
    checks = {"timeout": 60, "model_timeout": 60, "adapter_timeout": 60}
    return write_config(path, sim, checks, server={"shutdown_grace": grace})


async def test_router_health_serve_exits_0_on_sigterm_under_load(tmp_path: Path) -> None:
    grace = 1.0
    async with trio.open_nursery() as nursery:
        sim = Simulator(
            [
                SimProvider("stuck", "openai", "rhtestkey-stuck-1234", ["m"], Behavior(mode="hang")),
                SimProvider("fine", "ollama", None, ["m"], Behavior(latency=0.01)),
            ]
        )
        await nursery.start(sim.serve)
        config = serve_config(tmp_path / "serve.toml", sim, grace)
        outcomes: list[str] = []
        try:
            async with cli_process("serve", "--config", str(config), "--port", "0") as process:
                base = await served_url(process)

                async with httpx.AsyncClient(base_url=base, timeout=30) as client:

                    async def call(path: str) -> None:
                        try:
                            response = await client.get(path)
                        except httpx.TransportError as exc:
                            outcomes.append(type(exc).__name__)
                        else:
                            outcomes.append(str(response.status_code))

                    async with trio.open_nursery() as clients:
                        for path in ["/v1/health/?timeout=60", "/v1/health/performance?timeout=60",
                                     "/v1/health/models/stuck-model?timeout=60"]:
                            clients.start_soon(call, path)
                        with trio.fail_after(GUARD * 2):
                            await sim.wait_until(lambda: sim.stats("stuck").in_flight >= 3)
                        code, elapsed = await sigterm_timed(process, within=grace + 20)
                text = await read_stderr(process)
                assert code == 0, text
                # The grace period (callers still waiting are answered shortly
                # before its end), then the process's own exit, within a busy
                # machine's slack: a grace period applied three times too long fails.
                assert elapsed < deadline_bound(grace), elapsed
                assert "Traceback" not in text
                assert "rhtestkey" not in text
                assert "SIGTERM" in text  # it said why it stopped
                with trio.fail_after(GUARD):
                    await sim.wait_idle()  # its probes went with it
        finally:
            nursery.cancel_scope.cancel()
    assert len(outcomes) == 3

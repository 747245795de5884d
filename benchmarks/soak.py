"""``python -m benchmarks.soak [--quick] [--duration S]``: a bounded soak of ``router-health serve``.

Two processes of their own, loopback only: the simulator (``python -m
service.testing.simulator --spec``, 40 providers of all seven kinds, 8 of them
failing: 503, hanging under a short per-provider timeout, or a 30 % error
rate) and the service (``router-health serve`` on a generated TOML config).
This process is the client: a steady, open-loop request rate (default 20/s)
over a seeded mix of paths, a quarter of the clients hanging up at a random
point, for ``--duration`` seconds (exactly ``rate x duration`` requests, each
under a guard, so the run stops by itself).

Every sample interval (10 s in a full run) it records the service's RSS, open
fds and threads (``/proc/<pid>``), its Trio task count, the simulator's
probes in flight (``/_sim/stats``) and the answers so far by status code,
plus client hang-ups. Afterwards: the simulator must have nothing in flight,
the task count must be back to its idle baseline, and SIGTERM (with three
requests in flight) must end the service with exit 0 and no traceback.

**The task count.** Trio's tasks cannot be seen from outside the process, so
the service is started through a shim, ``python -m benchmarks.soak
--serve-with-task-probe FILE -- <router-health args>``: it calls
``service.cli.main`` (what the ``router-health`` script runs) unchanged,
after wrapping ``trio.run`` so that the run's first step starts one daemon
thread. Every 0.5 s that thread runs the task-tree walk of
``tests/system/test_structured_concurrency.py`` *inside* the service's event loop
(``trio.from_thread.run_sync``) and writes the count, by task name, to FILE.
No product code changes; the cost is one thread (counted in the threads
column) and a tree walk of a few hundred tasks twice a second.
``--no-task-probe`` starts ``python -m service.cli serve`` itself instead.

A full run writes ``benchmarks/SOAK.md`` (``--output``) and prints the same
report; ``--quick`` (30 s unless ``--duration``) writes nothing. Either exits
1 when a pass criterion fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import select
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import trio

from service.config import dump_toml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "benchmarks" / "SOAK.md"

SEED = 20261130
RATE = 20.0  # requests per second
FULL_DURATION = 600.0
QUICK_DURATION = 30.0
SAMPLE_EVERY = 10.0  # seconds, in a full run; shorter runs scale it down
WINDOW = 60.0  # "the second minute" vs "the last minute", scaled down likewise
HANGUP_SHARE = 0.25  # clients that hang up, each at a uniform random point of its request's
# expected life (Kind.life: about its slowest answer on this fleet), so that most of them
# really leave mid-request; one that loses the race to its answer counts as answered
REQUEST_GUARD = 30.0  # a request neither answered nor hung up on by then is a failure
MAX_OUTSTANDING = 400  # the open-loop generator never holds more (a skip is a failure)
TASK_PROBE_EVERY = 0.5
#: Shorter runs have too few samples, still climbing to their steady state, to judge
#: "flat": their flatness lines are shown but not judged (SKIP).
MIN_FLAT_DURATION = 30.0

# -- the fleet: 40 providers, 8 failing ------------------------------------------------------

KINDS = ("openai", "azure", "anthropic", "volcengine", "gemini", "ollama", "openai-compatible")
N_PROVIDERS = 40
PER_MODEL = 3  # soak-00 .. soak-13; soak-13 has one provider, and it answers 503
HANG_TIMEOUT = 0.3  # the hanging providers' own adapter timeout (seconds)
FAILING: dict[int, dict[str, Any]] = {
    4: {"mode": "status", "status": 503},
    17: {"mode": "status", "status": 503},
    39: {"mode": "status", "status": 503},
    9: {"mode": "hang"},
    25: {"mode": "hang"},
    12: {"error_rate": 0.3},
    21: {"error_rate": 0.3},
    35: {"error_rate": 0.3},
}
CHECKS: dict[str, Any] = {"timeout": 10.0, "model_timeout": 5.0, "adapter_timeout": 2.0}
SERVER: dict[str, Any] = {"keep_alive_timeout": 1.0, "shutdown_grace": 5.0}


def provider_name(i: int) -> str:
    return f"p{i:02d}"


def model_name(i: int) -> str:
    return f"soak-{i // PER_MODEL:02d}"


MODELS = sorted({model_name(i) for i in range(N_PROVIDERS)})


def simulator_spec() -> list[dict[str, Any]]:
    spec = []
    for i in range(N_PROVIDERS):
        kind = KINDS[i % len(KINDS)]
        behavior: dict[str, Any] = {"latency": 0.02 + 0.01 * (i % 5), "jitter": 0.01}
        behavior.update(FAILING.get(i, {}))
        spec.append(
            {
                "name": provider_name(i),
                "kind": kind,
                "api_key": None if kind == "ollama" else f"sk-sim-soak-{i:02d}",
                "models": [model_name(i)],
                "behavior": behavior,
            }
        )
    return spec


def config_toml(entries: Sequence[dict[str, Any]]) -> str:
    """The service's config, from the simulator's ``/_sim/providers`` entries."""
    by_name = {entry["name"]: entry for entry in entries}
    models = []
    for model in MODELS:
        providers = []
        for i in range(N_PROVIDERS):
            if model_name(i) != model:
                continue
            entry = dict(by_name[provider_name(i)])
            if FAILING.get(i, {}).get("mode") == "hang":
                entry["timeout"] = HANG_TIMEOUT
            providers.append(entry)
        models.append({"name": model, "providers": providers})
    return dump_toml({"checks": CHECKS, "server": SERVER, "models": models})


# -- the request mix -------------------------------------------------------------------------

CHECK_STATUSES = frozenset({200, 503})
BAD_QUERIES = (
    "/v1/health/?timeout=abc",
    "/v1/health/?timeout=nan",
    "/v1/health/?timeout=-1",
    "/v1/health/?timeout=0",
    "/v1/health/?timeout=1e309",
    "/v1/health/?timeout=inf",
    "/v1/health/?timeout=999",  # over [server] max_timeout
    "/v1/health/?timeout=1&timeout=2",
    "/v1/health/?use_concurrent=maybe",
    "/v1/health/?details=",
    "/v1/health/models?details=%00",
    "/v1/health/models/soak-00?timeout=nan",
    "/v1/health/performance?timeout=-5",
)


@dataclass(frozen=True)
class Kind:
    name: str
    weight: float  # share of the requests, in percent
    expected: frozenset[int]
    path: Callable[[random.Random], str]
    life: float  # seconds: a hanging-up client of this kind leaves at uniform(0, life)


#: A full check: the concurrent pass ends at the hanging providers' 0.3 s timeout, then
#: both are re-checked one by one (0.3 s each).
FULL = 3 * HANG_TIMEOUT
MIX = (
    Kind("health", 25, CHECK_STATUSES, lambda r: "/v1/health/", FULL),
    Kind("health?details=false", 5, CHECK_STATUSES, lambda r: "/v1/health/?details=false", FULL),
    Kind("models", 12, CHECK_STATUSES, lambda r: "/v1/health/models", FULL),
    Kind("models/<name>", 25, CHECK_STATUSES,
         lambda r: f"/v1/health/models/{r.choice(MODELS)}", 0.2),
    Kind("health?use_concurrent=false", 2, CHECK_STATUSES,
         lambda r: "/v1/health/?use_concurrent=false", 2.0),
    Kind("livez", 12, frozenset({200}), lambda r: "/livez", 0.01),
    Kind("readyz", 10, frozenset({200}), lambda r: "/readyz", 0.01),
    Kind("performance", 1, frozenset({200}), lambda r: "/v1/health/performance", 3.0),
    Kind("bad query", 8, frozenset({400}), lambda r: r.choice(BAD_QUERIES), 0.01),
)
KINDS_BY_NAME = {kind.name: kind for kind in MIX}


@dataclass(frozen=True)
class Planned:
    kind: str
    path: str
    hangup_at: float | None  # seconds after the start, or None: waits for the answer


def plan(rng: random.Random, count: int) -> list[Planned]:
    """The whole run's requests, drawn up front: the same seed, the same requests."""
    weights = [kind.weight for kind in MIX]
    planned = []
    for _ in range(count):
        kind = rng.choices(MIX, weights)[0]
        path = kind.path(rng)
        hangup = rng.uniform(0, kind.life) if rng.random() < HANGUP_SHARE else None
        planned.append(Planned(kind.name, path, hangup))
    return planned


# -- the task probe (runs inside the service process) -----------------------------------------


def _task_census() -> Counter[str]:
    """The task-tree walk of tests/system/test_structured_concurrency.py, counted by name."""
    names: Counter[str] = Counter()
    root = trio.lowlevel.current_root_task()
    stack = [] if root is None else [root]
    while stack:
        task = stack.pop()
        names[task.name] += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return names


def _probe_loop(token: Any, path: str) -> None:
    seq = 0
    while True:
        time.sleep(TASK_PROBE_EVERY)
        try:
            names = trio.from_thread.run_sync(_task_census, trio_token=token)
        except BaseException:  # the run is over (RunFinishedError), or ending: stop quietly
            return
        seq += 1
        document = {"t": time.time(), "seq": seq, "tasks": sum(names.values()),
                    "names": dict(names)}
        try:
            with open(path + ".tmp", "w", encoding="utf-8") as handle:
                json.dump(document, handle)
            os.replace(path + ".tmp", path)
        except OSError:
            return


def serve_with_task_probe(probe_path: str, cli_args: list[str]) -> int:
    """``service.cli.main(cli_args)`` with the task probe started inside its ``trio.run``."""
    from service import cli

    original = trio.run

    def run(async_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async def with_probe() -> Any:
            token = trio.lowlevel.current_trio_token()
            threading.Thread(
                target=_probe_loop, args=(token, probe_path), name="soak-task-probe", daemon=True
            ).start()
            return await async_fn(*args)

        return original(with_probe, **kwargs)

    trio.run = run  # type: ignore[assignment]
    return cli.main(cli_args)


# -- observing the service from outside --------------------------------------------------------


def _inodes_on_port(pid: int, port: int) -> set[str]:
    """Socket inodes (of the process's network namespace) with ``port`` at either end."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}", encoding="ascii") as handle:
                rows = handle.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            ends = (fields[1], fields[2])
            if any(int(end.rsplit(":", 1)[1], 16) == port for end in ends):
                inodes.add(fields[9])
    return inodes


def upstream_fds(pid: int, port: int) -> int:
    """The process's open sockets to the simulator (its adapters' kept connections)."""
    inodes = _inodes_on_port(pid, port)
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


def proc_status(pid: int) -> dict[str, int]:
    """RSS (KiB), threads, open fds and CPU ticks of a live process."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                fields[key] = int(value.split()[0])
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        stat = handle.read().rsplit(")", 1)[1].split()
    fields["cpu_ticks"] = int(stat[11]) + int(stat[12])  # utime + stime
    fields["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return fields


def read_census(path: str, *, newer_than: float | None = None, wait: float = 3.0) -> dict[str, Any]:
    """The probe's latest census (one taken after ``newer_than``, if given); {} if none."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with open(path, encoding="utf-8") as handle:
                census: dict[str, Any] = json.load(handle)
        except (OSError, ValueError):
            census = {}
        if census and (newer_than is None or census["t"] > newer_than):
            return census
        if time.monotonic() > deadline:
            return {} if newer_than is not None else census
        time.sleep(0.05)


@dataclass
class Sample:
    t: float
    rss_kib: int
    fds: int
    upstream_fds: int  # of them, sockets to the simulator
    threads: int
    tasks: int | None
    sim_in_flight: int
    cpu_percent: float
    sent: int
    outcomes: dict[str, int]  # cumulative: "200", "503", "400", "hung up", other failures


@dataclass
class Run:
    duration: float
    rate: float
    quick: bool
    task_probe: bool
    log_level: str
    command: str = ""
    started: str = ""
    machine: str = ""
    load_average: list[float] = field(default_factory=list)
    calibration_ms: list[float] = field(default_factory=list)
    planned: int = 0
    sent: int = 0
    planned_hangups: int = 0  # of the requests sent
    skipped: int = 0
    samples: list[Sample] = field(default_factory=list)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    latency: dict[str, list[float]] = field(default_factory=dict)  # answered requests, seconds
    unexpected: Counter[str] = field(default_factory=Counter)
    warmup: dict[str, str] = field(default_factory=dict)
    idle_before: dict[str, Any] = field(default_factory=dict)
    idle_after: dict[str, Any] = field(default_factory=dict)
    sim_idle_after_s: float | None = None
    sim_totals: dict[str, int] = field(default_factory=dict)
    drain_outcomes: list[str] = field(default_factory=list)
    exit_code: int | None = None
    exit_seconds: float | None = None
    stderr_lines: Counter[str] = field(default_factory=Counter)
    stderr_traceback: bool = False
    stderr_tail: list[str] = field(default_factory=list)
    settle_seconds: float | None = None
    wall_seconds: float = 0.0


def progress(message: str) -> None:
    print(f"soak {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# -- processes ---------------------------------------------------------------------------------


def _read_banner(process: subprocess.Popen[str], marker: str, timeout: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise RuntimeError(f"no {marker!r} line within {timeout:.0f} s")
    line = process.stdout.readline().strip()
    if marker not in line:
        raise RuntimeError(f"expected {marker!r}, got {line!r}")
    return line


def service_command(config: Path, probe: Path | None, log_level: str) -> list[str]:
    cli_args = ["--log-level", log_level, "serve", "--config", str(config), "--port", "0"]
    if probe is None:
        return [sys.executable, "-m", "service.cli", *cli_args]
    return [sys.executable, "-m", "benchmarks.soak", "--serve-with-task-probe", str(probe),
            "--", *cli_args]


# -- the client side (Trio + httpx) ---------------------------------------------------------------


class Driver:
    def __init__(self, run: Run, base: str, sim: httpx.AsyncClient, pid: int,
                 probe: Path | None) -> None:
        self.run = run
        self.base = base
        self.sim = sim  # base_url: the simulator's root
        self.sim_port = int(str(sim.base_url).rstrip("/").rsplit(":", 1)[1])
        self.pid = pid
        self.probe = str(probe) if probe is not None else None
        self.outcomes: Counter[str] = Counter()
        self.outstanding = 0
        self.clock_ticks = os.sysconf("SC_CLK_TCK")

    # -- observations

    async def sim_stats(self) -> dict[str, Any]:
        response = await self.sim.get("/_sim/stats")
        response.raise_for_status()
        total: dict[str, Any] = response.json()["total"]
        return total

    async def wait_sim(self, done: Callable[[int], bool], *, every: float) -> None:
        """Poll the simulator's probes in flight until ``done(in_flight)``."""
        while True:
            if done((await self.sim_stats())["in_flight"]):
                return
            await trio.sleep(every)

    def tasks_now(self) -> int | None:
        if self.probe is None:
            return None
        census = read_census(self.probe)
        return census.get("tasks")

    async def fresh_census(self) -> dict[str, Any]:
        """A census the probe took after this call began ({} without a probe)."""
        probe = self.probe
        if probe is None:
            return {}
        since = time.time()
        return await trio.to_thread.run_sync(lambda: read_census(probe, newer_than=since))

    async def sample(self, t: float, last: tuple[float, int] | None) -> tuple[Sample, float, int]:
        status = proc_status(self.pid)
        now = time.monotonic()
        cpu = 0.0
        if last is not None and now > last[0]:
            cpu = 100 * (status["cpu_ticks"] - last[1]) / self.clock_ticks / (now - last[0])
        stats = await self.sim_stats()
        sample = Sample(
            t=round(t, 1),
            rss_kib=status["VmRSS"],
            fds=status["fds"],
            upstream_fds=upstream_fds(self.pid, self.sim_port),
            threads=status["Threads"],
            tasks=self.tasks_now(),
            sim_in_flight=stats["in_flight"],
            cpu_percent=round(cpu, 1),
            sent=self.run.sent,
            outcomes=dict(self.outcomes),
        )
        return sample, now, status["cpu_ticks"]

    async def idle_snapshot(self) -> dict[str, Any]:
        census = await self.fresh_census()
        status = proc_status(self.pid)
        return {"fds": status["fds"], "upstream_fds": upstream_fds(self.pid, self.sim_port),
                "threads": status["Threads"],
                "rss_kib": status["VmRSS"], "tasks": census.get("tasks"),
                "names": census.get("names", {})}

    # -- requests

    def record(self, kind: str, outcome: str) -> None:
        self.outcomes[outcome] += 1
        self.run.by_kind.setdefault(kind, Counter())[outcome] += 1
        expected = KINDS_BY_NAME[kind].expected
        if outcome != "hung up" and not (outcome.isdigit() and int(outcome) in expected):
            self.run.unexpected[f"{kind}: {outcome}"] += 1

    async def one(self, client: Any, item: Planned) -> None:
        self.outstanding += 1
        began = trio.current_time()
        try:
            with trio.move_on_after(REQUEST_GUARD) as guard:
                with trio.move_on_after(
                    math.inf if item.hangup_at is None else item.hangup_at
                ) as hangup:
                    try:
                        response = await client.get(item.path)
                        outcome = str(response.status_code)
                        self.run.latency.setdefault(item.kind, []).append(
                            trio.current_time() - began
                        )
                        try:
                            json.loads(response.content)
                        except ValueError:
                            outcome = f"{outcome} (not JSON)"
                    except httpx.HTTPError as exc:
                        outcome = f"transport error {type(exc).__name__}"
                if hangup.cancelled_caught:
                    outcome = "hung up"
            if guard.cancelled_caught:
                outcome = f"no answer in {REQUEST_GUARD:.0f} s"
            self.record(item.kind, outcome)
        finally:
            self.outstanding -= 1

    async def warm_up(self) -> None:
        """Every kind of path once, at once: lazy imports and first-use state happen here."""
        paths = ["/v1/health/", "/v1/health/?details=false", "/v1/health/models",
                 f"/v1/health/models/{MODELS[0]}", "/v1/health/?use_concurrent=false&timeout=1",
                 "/livez", "/readyz", "/v1/health/performance?timeout=1", BAD_QUERIES[0]]
        async with httpx.AsyncClient(base_url=self.base, timeout=REQUEST_GUARD) as client:

            async def get(path: str) -> None:
                try:
                    self.run.warmup[path] = str((await client.get(path)).status_code)
                except httpx.HTTPError as exc:
                    self.run.warmup[path] = type(exc).__name__

            async with trio.open_nursery() as nursery:
                for path in paths:
                    nursery.start_soon(get, path)

    async def settle(self, *, until_tasks: int | None, limit: float) -> tuple[float | None, float]:
        """Wait for the simulator to be idle, then past the server's keep-alive timeout.

        Hypercorn holds a hung-up client's socket (and its task) until
        ``keep_alive_timeout``; with ``until_tasks`` it then keeps waiting
        (up to ``limit`` in all) for the task count to come back to it.
        Returns the seconds until the simulator was idle (None: never) and in all.
        """
        start = time.monotonic()
        idle = None
        with trio.move_on_after(limit):
            await self.wait_sim(lambda in_flight: in_flight == 0, every=0.1)
            idle = time.monotonic() - start
            await trio.sleep(SERVER["keep_alive_timeout"] + 0.5)
            while until_tasks is not None:
                if (await self.fresh_census()).get("tasks") == until_tasks:
                    break
                await trio.sleep(0.25)
        return idle, time.monotonic() - start

    async def load(self) -> None:
        run = self.run
        total = round(run.rate * run.duration)
        run.planned = total
        items = plan(random.Random(SEED), total)
        window = min(WINDOW, run.duration / 5)
        every = min(SAMPLE_EVERY, window / 3)
        samples = math.floor(run.duration / every + 1e-9)
        limits = httpx.Limits(max_connections=MAX_OUTSTANDING, max_keepalive_connections=100,
                              keepalive_expiry=SERVER["keep_alive_timeout"] / 2)
        async with httpx.AsyncClient(base_url=self.base, timeout=REQUEST_GUARD,
                                     limits=limits) as client:
            start = trio.current_time()

            async def sampler() -> None:
                last: tuple[float, int] | None = None
                for k in range(samples + 1):
                    await trio.sleep_until(start + k * every)
                    sample, when, ticks = await self.sample(trio.current_time() - start, last)
                    last = (when, ticks)
                    run.samples.append(sample)

            async with trio.open_nursery() as requests:
                requests.start_soon(sampler)
                for i, item in enumerate(items):
                    await trio.sleep_until(start + i / run.rate)
                    if self.outstanding >= MAX_OUTSTANDING:
                        run.skipped += 1
                        continue
                    run.sent += 1
                    run.planned_hangups += item.hangup_at is not None
                    requests.start_soon(self.one, client, item)

    async def sigterm_with_requests_in_flight(self, process: subprocess.Popen[str]) -> None:
        """Three requests reach the upstream, SIGTERM: they are answered, then exit 0."""
        run = self.run
        paths = ["/v1/health/", "/v1/health/models", f"/v1/health/models/{MODELS[3]}"]
        async with httpx.AsyncClient(base_url=self.base, timeout=REQUEST_GUARD) as client:

            async def get(path: str) -> None:
                try:
                    run.drain_outcomes.append(str((await client.get(path)).status_code))
                except httpx.HTTPError as exc:
                    run.drain_outcomes.append(type(exc).__name__)

            async with trio.open_nursery() as nursery:
                for path in paths:
                    nursery.start_soon(get, path)
                with trio.move_on_after(5):
                    await self.wait_sim(lambda in_flight: in_flight > 0, every=0.01)
                process.send_signal(signal.SIGTERM)
                sent = time.monotonic()
                limit = SERVER["shutdown_grace"] + 10
                try:
                    run.exit_code = await trio.to_thread.run_sync(
                        lambda: process.wait(timeout=limit)
                    )
                except subprocess.TimeoutExpired:
                    run.exit_code = None
                run.exit_seconds = round(time.monotonic() - sent, 2)


async def drive(run: Run, base: str, sim_url: str, process: subprocess.Popen[str],
                probe: Path | None) -> None:
    # Every step is bounded on its own; this only turns a bug here into an error.
    with trio.fail_after(run.duration + 300):
        async with httpx.AsyncClient(base_url=sim_url, timeout=10) as sim:
            await _drive(Driver(run, base, sim, process.pid, probe), process)


async def _drive(driver: Driver, process: subprocess.Popen[str]) -> None:
    run = driver.run
    progress("warming up")
    await driver.warm_up()
    await driver.settle(until_tasks=None, limit=REQUEST_GUARD)
    run.idle_before = await driver.idle_snapshot()
    progress(f"load: {run.rate:g} requests/s for {run.duration:g} s")
    await driver.load()
    progress("load done; settling")
    idle, settled = await driver.settle(
        until_tasks=run.idle_before.get("tasks"), limit=REQUEST_GUARD
    )
    run.sim_idle_after_s = None if idle is None else round(idle, 2)
    run.settle_seconds = round(settled, 2)
    run.idle_after = await driver.idle_snapshot()
    stats = await driver.sim_stats()
    run.sim_totals = {k: stats[k] for k in ("requests", "in_flight", "completed", "disconnected")}
    progress("SIGTERM with requests in flight")
    await driver.sigterm_with_requests_in_flight(process)
    progress(f"service exited {run.exit_code}")


def soak(run: Run, stderr_path: Path, folder: Path) -> None:
    from .upstream import simulator

    with simulator(simulator_spec()) as upstream:
        entries = httpx.get(f"{upstream.url}/_sim/providers", timeout=10).json()["providers"]
        config = folder / "soak.toml"
        config.write_text(config_toml(entries), encoding="utf-8")
        probe = folder / "tasks.json" if run.task_probe else None
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("ROUTER_HEALTH_CONFIG", None)
        with open(stderr_path, "w", encoding="utf-8") as stderr:
            process = subprocess.Popen(
                service_command(config, probe, run.log_level),
                stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT, env=env,
            )
        try:
            try:
                banner = _read_banner(process, "serving on ", timeout=60)
            except RuntimeError as exc:
                process.kill()
                process.wait()
                tail = stderr_path.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise RuntimeError(f"router-health serve did not start: {exc}\n{tail}") from None
            progress(f"simulator {upstream.url}, service {banner.rsplit(' ', 1)[1]}")
            base = banner.rsplit(" ", 1)[1]
            trio.run(drive, run, base, upstream.url, process, probe)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


# -- judging and the report ------------------------------------------------------------------------


@dataclass
class Verdict:
    name: str
    ok: bool | None  # None: shown, not judged
    detail: str

    @property
    def mark(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.ok]


def _windows(run: Run) -> tuple[list[Sample], list[Sample], float]:
    w = min(WINDOW, run.duration / 5)
    eps = 1e-6
    early = [s for s in run.samples if w - eps <= s.t <= 2 * w + eps]
    late = [s for s in run.samples if run.duration - w - eps <= s.t <= run.duration + eps]
    return early, late, w


def _flat(name: str, early: list[float], late: list[float], slack: float, rel: float,
          unit: str, digits: int, judged: bool) -> Verdict:
    if not early or not late:
        return Verdict(name, False if judged else None, "no samples in a window")
    # The floor of each window: requests in flight only ever add fds, tasks and
    # memory for a moment, while a leak raises the floor.
    a, b = min(early), min(late)
    allowed = max(slack, rel * a)
    growth = b - a
    detail = (f"lowest sample {a:.{digits}f} → {b:.{digits}f} {unit} ({growth:+.{digits}f}; "
              f"allowed +{allowed:.{digits}f} = max({slack:g} {unit}, {rel:.0%}))")
    if not judged:
        detail += f"; not judged in a run shorter than {MIN_FLAT_DURATION:g} s"
    return Verdict(name, growth <= allowed if judged else None, detail)


def verdicts(run: Run) -> list[Verdict]:
    early, late, w = _windows(run)
    span = f"second {_span(w)} vs last {_span(w)}"
    judged = run.duration >= MIN_FLAT_DURATION
    out = [
        _flat(f"RSS flat ({span})", [s.rss_kib / 1024 for s in early],
              [s.rss_kib / 1024 for s in late], 5.0, 0.10, "MiB", 1, judged),
        _flat(f"open fds flat ({span})", [s.fds for s in early], [s.fds for s in late],
              5, 0.10, "fds", 0, judged),
        _flat(f"threads flat ({span})", [s.threads for s in early], [s.threads for s in late],
              2, 0.0, "threads", 0, judged),
    ]
    if run.task_probe:
        out.append(_flat(f"Trio tasks flat under load ({span})",
                         [s.tasks or 0 for s in early], [s.tasks or 0 for s in late],
                         20, 0.10, "tasks", 0, judged))
        before, after = run.idle_before.get("tasks"), run.idle_after.get("tasks")
        diff = Counter(run.idle_after.get("names", {}))
        diff.subtract(run.idle_before.get("names", {}))
        changed = ", ".join(f"{k} {v:+d}" for k, v in diff.items() if v) or "none"
        out.append(Verdict(
            "Trio tasks back to the idle baseline after the load",
            before is not None and before == after,
            f"{before} before the load, {after} after it settled "
            f"({run.settle_seconds} s); task names changed: {changed}",
        ))
    else:
        out.append(Verdict("Trio tasks", None, "not measured (--no-task-probe)"))
    before, after = run.idle_before, run.idle_after
    others_before = before.get("fds", 0) - before.get("upstream_fds", 0)
    others_after = after.get("fds", -1) - after.get("upstream_fds", 0)
    out.append(Verdict(
        "open fds back to the idle baseline after the load",
        others_after == others_before and after.get("upstream_fds", 0) <= N_PROVIDERS,
        f"{others_before} before the load, {others_after} after it settled, not counting "
        f"sockets to the simulator ({before.get('upstream_fds')} before, "
        f"{after.get('upstream_fds')} after; each adapter keeps at most one, so at most "
        f"{N_PROVIDERS})",
    ))
    out.append(Verdict(
        "simulator: no probe in flight at the end",
        run.sim_totals.get("in_flight") == 0,
        f"0 in flight {run.sim_idle_after_s} s after the last request ended; "
        f"{run.sim_totals.get('requests', 0)} probes served, "
        f"{run.sim_totals.get('disconnected', 0)} of them cancelled by the service mid-answer"
        if run.sim_totals.get("in_flight") == 0
        else f"{run.sim_totals.get('in_flight')} still in flight",
    ))
    answered = sum(v for k, v in _totals(run).items() if k != "hung up")
    out.append(Verdict(
        "only expected statuses (checks 200/503, livez/readyz/performance 200, bad queries 400)",
        not run.unexpected,
        f"{answered} answered, {_totals(run).get('hung up', 0)} hung up, none unexpected"
        if not run.unexpected
        else "; ".join(f"{k} x{v}" for k, v in run.unexpected.most_common()),
    ))
    hung_up = _totals(run).get("hung up", 0)
    out.append(Verdict(
        "the load ran as planned, clients hanging up mid-request included",
        run.sent == run.planned and run.skipped == 0 and run.sent > 0 and hung_up > 0,
        f"{run.sent}/{run.planned} requests sent at {run.rate:g}/s, {run.skipped} skipped "
        f"(over {MAX_OUTSTANDING} outstanding); {run.planned_hangups} clients set to hang up, "
        f"{hung_up} of them left before their answer (the rest got it first)",
    ))
    warm_bad = {p: s for p, s in run.warmup.items()
                if s not in ("200", "503", "400") or (s == "400") != (p in BAD_QUERIES)}
    out.append(Verdict("warm-up: every path answered as expected", not warm_bad,
                       "ok" if not warm_bad else str(warm_bad)))
    errors = run.stderr_lines.get("ERROR", 0) + run.stderr_lines.get("CRITICAL", 0)
    out.append(Verdict(
        "SIGTERM with 3 requests in flight: answered, exit 0, no traceback or ERROR line",
        run.exit_code == 0 and not run.stderr_traceback and errors == 0
        and len(run.drain_outcomes) == 3 and all(o in ("200", "503") for o in run.drain_outcomes),
        f"exit {run.exit_code} after {run.exit_seconds} s; in-flight requests answered "
        f"{', '.join(run.drain_outcomes) or 'nothing'}; stderr: "
        f"{'a traceback, ' if run.stderr_traceback else 'no traceback, '}"
        f"{errors} ERROR, {run.stderr_lines.get('WARNING', 0)} WARNING lines",
    ))
    return out


def _span(w: float) -> str:
    return "minute" if w == 60 else f"{w:g} s"


def _totals(run: Run) -> Counter[str]:
    total: Counter[str] = Counter()
    for counts in run.by_kind.values():
        total.update(counts)
    return total


def scan_stderr(run: Run, path: Path) -> None:
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()
    for line in lines:
        if "Traceback" in line:
            run.stderr_traceback = True
        parts = line.split(" | ")
        if len(parts) >= 3:
            run.stderr_lines[parts[1].strip()] += 1
    interesting = [line for line in lines if "WARNING" not in line]
    run.stderr_tail = interesting[-10:]


def _cell(outcomes: dict[str, int], before: dict[str, int], key: str) -> int:
    return outcomes.get(key, 0) - before.get(key, 0)


def series_table(run: Run, rows: list[Sample]) -> str:
    head = ("| t (s) | sent | 200 | 503 | 400 | hung up | other | RSS (MiB) "
            "| fds (upstream) | threads | Trio tasks | sim in flight | CPU % |")
    lines = [head, "|" + "---:|" * 13]
    previous: Sample | None = None
    for s in rows:
        before = previous.outcomes if previous else {}
        other = sum(v for k, v in s.outcomes.items() if k not in ("200", "503", "400", "hung up"))
        other -= sum(v for k, v in before.items() if k not in ("200", "503", "400", "hung up"))
        lines.append(
            f"| {s.t:g} | {s.sent - (previous.sent if previous else 0)} "
            f"| {_cell(s.outcomes, before, '200')} | {_cell(s.outcomes, before, '503')} "
            f"| {_cell(s.outcomes, before, '400')} | {_cell(s.outcomes, before, 'hung up')} "
            f"| {other} | {s.rss_kib / 1024:.1f} | {s.fds} ({s.upstream_fds}) | {s.threads} "
            f"| {'—' if s.tasks is None else s.tasks} | {s.sim_in_flight} | {s.cpu_percent:.0f} |"
        )
        previous = s
    return "\n".join(lines)


def kinds_table(run: Run) -> str:
    lines = ["| request | expected | sent | answers | hung up | answer time median / max |",
             "|---|---|---:|---|---:|---:|"]
    for kind in MIX:
        counts = run.by_kind.get(kind.name, Counter())
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k != "hung up")
        expected = "/".join(str(s) for s in sorted(kind.expected))
        times = run.latency.get(kind.name)
        shown = f"{statistics.median(times):.3f} / {max(times):.3f} s" if times else "—"
        lines.append(f"| `{kind.name}` | {expected} | {sum(counts.values())} | "
                     f"{answers or '—'} | {counts.get('hung up', 0)} | {shown} |")
    return "\n".join(lines)


def markdown(run: Run, results: list[Verdict]) -> str:
    w = _windows(run)[2]
    step = run.samples[1].t - run.samples[0].t if len(run.samples) > 1 else w
    every_row = max(1, round(w / step))
    rows = [s for k, s in enumerate(run.samples) if k % every_row == 0]
    if run.samples and rows[-1] is not run.samples[-1]:
        rows.append(run.samples[-1])
    passed = all(v.ok is not False for v in results)
    hangs = ", ".join(provider_name(i) for i, b in FAILING.items() if b.get("mode") == "hang")
    parts = [
        "# Soak: `router-health serve` under steady mixed load",
        "Written by the last full run of `python -m benchmarks.soak`; do not edit by hand."
        if not run.quick else "A `--quick` run: printed only, not written.",
        "\n".join([
            f"- Command: `{run.command}` (from the repository root)",
            f"- Started: {run.started}; wall time {run.wall_seconds:.0f} s",
            f"- Machine: {run.machine}",
            "- 1-minute load average "
            + " → ".join(f"{v:.2f}" for v in run.load_average)
            + "; CPU calibration " + " → ".join(f"{v:.1f}" for v in run.calibration_ms)
            + " ms (a fixed pure-Python loop, as in RESULTS.md; the 2 cores are shared)",
            f"- Result: **{'PASS' if passed else 'FAIL'}**",
        ]),
        "## What ran",
        "\n".join([
            f"- Load: {run.planned} requests, open loop at {run.rate:g}/s for {run.duration:g} s, "
            f"seed {SEED}; {HANGUP_SHARE:.0%} of the clients hang up at a uniform random point "
            "of their request's expected life (0 to about its slowest answer: 0.9 s for a "
            "full check, 0.2 s for one model, 2-3 s for sequential and performance, 10 ms "
            f"for the rest). Each request is guarded at {REQUEST_GUARD:g} s.",
            f"- Service: `router-health serve` in its own process, log level {run.log_level}, "
            + ("started through the task-probe shim (see below)." if run.task_probe
               else "started as `python -m service.cli serve`."),
            f"  Config: `[checks]` {', '.join(f'{k} = {v}' for k, v in CHECKS.items())}; "
            f"`[server]` {', '.join(f'{k} = {v}' for k, v in SERVER.items())}.",
            f"- Upstream: `python -m service.testing.simulator` in its own process, {N_PROVIDERS} "
            f"providers of all {len(KINDS)} kinds, 20-60 ms latency, serving {len(MODELS)} "
            f"models of up to {PER_MODEL} providers. {len(FAILING)} failing "
            f"({len(FAILING) / N_PROVIDERS:.0%}): 3 answer 503 (one is the only provider of "
            f"`{MODELS[-1]}`, so that model is unhealthy), 2 hang ({hangs}, provider "
            f"`timeout = {HANG_TIMEOUT}`), 3 have `error_rate = 0.3`.",
            f"- Samples every {run.samples[1].t - run.samples[0].t:g} s: RSS, fds, threads "
            "from `/proc/<pid>`; CPU from its utime+stime; the simulator's probes in flight "
            "from `/_sim/stats`; Trio tasks from the in-process task probe."
            if len(run.samples) > 1 else "- Samples: fewer than two.",
        ]),
        "## Pass criteria",
        "\n".join(f"- **{v.mark}** {v.name}: {v.detail}" for v in results),
        f"## Time series (one row per {_span(w)}; counts are per row)",
        series_table(run, rows),
        "## Requests by kind",
        kinds_table(run),
    ]
    if run.stderr_tail:
        parts += ["## The service's stderr (last lines that are not warnings)",
                  "```text\n" + "\n".join(run.stderr_tail) + "\n```"]
    parts += [
        "## Every sample",
        "<details><summary>every sample</summary>\n\n" + series_table(run, run.samples)
        + "\n\n</details>",
    ]
    if not run.quick:
        parts += [NOTES.strip()]
    return "\n\n".join(parts) + "\n"


NOTES = """
## How to read it

- **Flat** compares the lowest sample of the second minute (the first is
  warm-up: connection pools and the client's keep-alive connections fill)
  with the lowest sample of the last minute. The lowest, because requests in
  flight only ever add fds, tasks and memory for a moment, while a leak
  raises the floor. Between the two windows the service answers about 9,600
  requests, so the allowances below are far under one leaked object per
  request:
  - RSS may grow by max(5 MiB, 10 %): about 0.5 KiB per request, less than one
    leaked report (40 results), task or socket buffer per request would cost;
  - open fds by max(5, 10 %) and threads by 2 (Trio's idle worker threads
    come and go): one fd leaked per failed or cancelled request would add
    thousands;
  - Trio tasks under load by max(20, 10 %): a full check runs about 40 probe
    tasks, so a snapshot taken during one reads that much higher.
- **Back to the idle baseline** is exact: before the load (after a warm-up of
  every path) and after it, once the simulator has nothing in flight and the
  server's keep-alive timeout has passed, the task count and the open fds
  other than sockets to the simulator must be equal. Sockets to the
  simulator are bounded instead: each adapter keeps at most one idle
  connection, and a cancelled probe closes its own.
- **Task probe.** Trio's tasks cannot be seen from outside, so the service is
  started as `python -m benchmarks.soak --serve-with-task-probe FILE --
  <router-health args>`: it runs `service.cli.main` (the `router-health`
  script) unchanged, with `trio.run` wrapped to start one daemon thread that,
  every 0.5 s, runs the task-tree walk of `tests/system/test_structured_concurrency.py`
  inside the event loop (`trio.from_thread.run_sync`) and writes the count.
  That thread is one of the threads counted above. `--no-task-probe` runs
  `python -m service.cli serve` instead (no task column).
- **Hung up** counts the clients whose request was actually cancelled before
  its answer arrived; a planned hang-up that came after the answer counts as
  answered. The simulator's `disconnected` counter is the other end: probes
  the service cancelled mid-answer (mostly because their client left).
- **SIGTERM** is sent once three checks are running upstream: they must be
  answered (graceful drain), the process must exit 0 within the grace period
  plus 10 s, and its stderr (log level WARNING: one line per failed probe)
  must hold no traceback and no ERROR line.
"""


def _write(run: Run, results: list[Verdict], output: Path | None) -> str:
    text = markdown(run, results)
    if output is not None:
        output.write_text(text, encoding="utf-8")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["--serve-with-task-probe"]:
        probe, rest = args_list[1], args_list[2:]
        return serve_with_task_probe(probe, rest[1:] if rest[:1] == ["--"] else rest)

    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_DURATION:g} s at the same rate; writes nothing")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help=f"seconds of load (default {FULL_DURATION:g}, quick {QUICK_DURATION:g})")
    parser.add_argument("--rate", type=float, default=RATE, help="requests per second")
    parser.add_argument("--log-level", default="WARNING", choices=["INFO", "WARNING", "ERROR"],
                        help="the service's log level (default WARNING)")
    parser.add_argument("--no-task-probe", action="store_true",
                        help="run plain `python -m service.cli serve` (no Trio task count)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), metavar="FILE",
                        help="where a full run writes its report (default benchmarks/SOAK.md)")
    args = parser.parse_args(args_list)
    duration = args.duration or (QUICK_DURATION if args.quick else FULL_DURATION)
    if not (duration > 0 and math.isfinite(duration)) or not (args.rate > 0):
        parser.error("--duration and --rate must be positive")

    from . import report

    run = Run(duration=duration, rate=args.rate, quick=args.quick,
              task_probe=not args.no_task_probe, log_level=args.log_level)
    run.command = "python -m benchmarks.soak" + "".join(f" {shlex.quote(a)}" for a in args_list)
    run.started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    run.machine = report.machine()
    run.load_average.append(round(os.getloadavg()[0], 2))
    run.calibration_ms.append(round(report.calibration_ms(), 1))
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="router-health-soak-") as folder:
        stderr_path = Path(folder) / "service.stderr"
        try:
            soak(run, stderr_path, Path(folder))
        except (RuntimeError, OSError, httpx.HTTPError, trio.TooSlowError) as exc:
            print(f"soak: could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        finally:
            if stderr_path.exists():
                scan_stderr(run, stderr_path)
    run.wall_seconds = time.monotonic() - began
    run.load_average.append(round(os.getloadavg()[0], 2))
    run.calibration_ms.append(round(report.calibration_ms(), 1))
    results = verdicts(run)
    print(_write(run, results, None if args.quick else Path(args.output)))
    failed = [v for v in results if v.ok is False]
    for verdict in failed:
        print(f"FAIL: {verdict.name}: {verdict.detail}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

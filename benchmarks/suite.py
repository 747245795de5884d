"""The benchmark sections: which processes run, with which fleets, in which order.

Every measured configuration runs in a fresh process (``benchmarks.worker``
for this project, ``benchmarks.baselines.seed_asyncio`` for the seed's design,
``benchmarks.http_server`` for the HTTP rows) against a simulator running in
a process of its own, so each row's CPU, peak RSS and fds are that row's only.

The scale curve's healthy fleet (and the client-strategy and HTTP rows on it) is
answered by the lean upstream (``benchmarks.fast_upstream``), which is not the
limit; its failure-mode sentinels by the full simulator, judged strictly as before.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from . import acceptance, measure, workload
from .cluster import ClusterPlan
from .cluster import run as run_cluster
from .policies import PolicyPlan
from .policies import run as run_policies
from .upstream import Upstream, fast_upstream, simulator

#: The repository root: workers run as ``python -m benchmarks.worker`` from here.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The seed's published table: adapters -> (serial s, concurrent s, speedup).
SEED_TABLE = {5: (8.5, 2.1, 4.0), 10: (17.2, 3.8, 4.5), 15: (25.8, 5.2, 5.0)}
#: Its serial column / N: the per-adapter latency the seed measured.
SEED_LATENCY = round(sum(s / n for n, (s, _, _) in SEED_TABLE.items()) / len(SEED_TABLE), 2)

#: Our runs' budgets, far above the latency: a deadline must never be what ends a healthy probe.
OURS_TIMEOUT = 120.0
OURS_ADAPTER_TIMEOUT = 60.0
#: The seed's own defaults (run timeout, adapter timeout); its pool is httpx's default.
SEED_TIMEOUT = 30.0
SEED_ADAPTER_TIMEOUT = 8.0
SEED_POOL = httpx._config.DEFAULT_LIMITS.max_connections  # not re-exported since httpx 0.28
#: Warm-up runs before the measured ones, for ours and the seed design alike (concurrent rows).
WARMUP = 1
#: ``[checks] shard_threshold``'s default: fleets this large get worker processes.
DEFAULT_SHARD_THRESHOLD = 1000
#: LiteLLM's health check runs with its own per-deployment bound (HEALTH_CHECK_TIMEOUT_SECONDS).
LITELLM_ADAPTER_TIMEOUT = 60.0
#: Building LiteLLM's Router is start-up, not measured: about a minute at 10,000 deployments.
LITELLM_STARTUP_S = 240.0


@dataclass
class Plan:
    quick: bool
    seed_ns: list[int]
    seed_latency: float
    scale_latency: float
    scale_ns: list[int]
    sequential_latency: float
    sequential_ns: list[int]
    strategy_n: int
    strategy_big_n: int | None
    strategies: list[str]
    strategies_big: list[str]
    fd_limited: list[tuple[int, int, str]]  # (n, fd limit, variant)
    http_ns: list[int]
    performance_ns: list[int]
    baseline_cap_s: float
    repeats: int
    acceptance: bool = True
    policies: bool = True  # the cost-policy records (benchmarks/policies.py)
    only_policies: bool = False  # --policies-only: that section and nothing else
    cluster: bool = True  # instances with and without [cluster] (benchmarks/cluster.py)
    only_cluster: bool = False  # --cluster-only: that section and nothing else
    # Worker processes (issue 18): ours runs with ``[checks] workers`` = shard_workers at
    # every scale N, and again with workers = 1 at each of unsharded_ns, side by side.
    shard_workers: int | str = "auto"
    shard_threshold: int | None = None  # None: the config's default
    unsharded_ns: list[int] = field(default_factory=list)
    upstream_processes: int = 2  # the lean upstream's processes (SO_REUSEPORT)
    litellm_ns: list[int] = field(default_factory=list)  # scale Ns LiteLLM's check runs at

    @classmethod
    def full(cls) -> Plan:
        return cls(
            quick=False,
            seed_ns=list(SEED_TABLE),
            seed_latency=SEED_LATENCY,
            scale_latency=0.5,
            scale_ns=[1, 15, 100, 1000, 10000],
            sequential_latency=0.05,
            sequential_ns=[1, 15, 100],
            strategy_n=1000,
            strategy_big_n=10000,
            strategies=[
                "direct",
                "direct-no-keepalive",
                "httpcore-per-adapter",
                "httpx-per-adapter",
                "httpx-shared",
                "httpx-shared-keepalive",
            ],
            strategies_big=["direct", "direct-no-keepalive", "httpx-per-adapter"],
            fd_limited=[(10000, 1024, "budget"), (10000, 1024, "probe-limiter")],
            http_ns=[1, 15, 100, 1000, 10000],
            performance_ns=[5, 10, 15],
            baseline_cap_s=60.0,
            repeats=3,
            unsharded_ns=[1000, 10000],
            litellm_ns=[1, 15, 100, 1000, 10000],
        )

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            quick=True,
            seed_ns=[5, 15],
            seed_latency=0.1,
            scale_latency=0.2,
            scale_ns=[1, 15, 100],
            sequential_latency=0.02,
            sequential_ns=[],  # the seed table has sequential vs concurrent already
            strategy_n=100,
            strategy_big_n=None,
            strategies=[],
            strategies_big=[],
            fd_limited=[(100, 300, "budget")],
            http_ns=[15],
            performance_ns=[5],
            baseline_cap_s=20.0,
            repeats=2,
            # Two workers whatever the machine, from 50 adapters: N = 100 runs sharded
            # and unsharded, so a wrong sharded verdict fails CI.
            shard_workers=2,
            shard_threshold=50,
            unsharded_ns=[100],
            litellm_ns=[15],
        )

    def policy_plan(self) -> PolicyPlan:
        return PolicyPlan.quick() if self.quick else PolicyPlan.full()

    def cluster_plan(self) -> ClusterPlan:
        return ClusterPlan.quick() if self.quick else ClusterPlan.full()

    def only_sections(self) -> bool:
        return self.only_policies or self.only_cluster

    def steps(self) -> int:
        policy_steps = self.policy_plan().steps() if self.policies or self.only_policies else 0
        cluster_steps = self.cluster_plan().steps() if self.cluster or self.only_cluster else 0
        if self.only_sections():
            return (policy_steps if self.only_policies else 0) + (
                cluster_steps if self.only_cluster else 0
            )
        return (
            policy_steps
            + cluster_steps
            + (1 if self.acceptance else 0)
            + 4 * len(self.seed_ns)  # ours + baseline, concurrent + sequential
            + 2 * len(self.scale_ns)
            + len([n for n in self.unsharded_ns if n in self.scale_ns])
            + len([n for n in self.litellm_ns if n in self.scale_ns])
            + 4 * len(self.sequential_ns)
            + len(self.strategies)
            + len(self.strategies_big)
            + len(self.fd_limited)
            + len(self.http_ns)
            + len(self.performance_ns)
        )


@dataclass
class Results:
    plan: Plan
    acceptance: list[dict[str, Any]] = field(default_factory=list)
    seed_table: list[dict[str, Any]] = field(default_factory=list)
    scale: list[dict[str, Any]] = field(default_factory=list)
    sequential: list[dict[str, Any]] = field(default_factory=list)
    strategies: list[dict[str, Any]] = field(default_factory=list)
    http: list[dict[str, Any]] = field(default_factory=list)
    performance: list[dict[str, Any]] = field(default_factory=list)
    polling: list[dict[str, Any]] = field(default_factory=list)  # policies.run_polling
    limiter: list[dict[str, Any]] = field(default_factory=list)  # policies.run_limiter
    policies_at: str = ""  # when those were measured (UTC): the section may be spliced alone
    cluster: list[dict[str, Any]] = field(default_factory=list)  # cluster.run
    cluster_at: str = ""  # the same, for the cluster section
    errors: list[str] = field(default_factory=list)
    command: str = ""
    load_average: list[float] = field(default_factory=list)  # 1-min load at start and end
    calibration_ms: list[float] = field(
        default_factory=list
    )  # report.calibration_ms, start and end
    seconds: float = 0.0
    section_seconds: dict[str, float] = field(default_factory=dict)
    # Recorded when the run starts, rendered as recorded (never recomputed at render time).
    machine: str = ""  # report.machine()
    started_at: str = ""  # UTC
    cpu_count: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Results:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["plan"] = Plan(**data["plan"])
        return cls(**fields)

    def correctness_failures(self) -> list[str]:
        """Everything wrong in *this project's* results (the baseline's are findings)."""
        failures = list(self.errors)
        failures += [f"acceptance: {r['scenario']}" for r in self.acceptance if not r["correct"]]
        for section in ("seed_table", "scale", "sequential", "strategies", "http", "performance"):
            for row in getattr(self, section):
                for impl in ("trio", "trio_single", "http"):
                    result = row.get(impl)
                    if result is not None and not result.get("all_correct", False):
                        failures.append(
                            f"{section} N={row['n']} {impl}: {result.get('wrong') or result.get('error')}"
                        )
        for section in ("polling", "limiter"):
            for row in getattr(self, section):
                if not row.get("correct", False):
                    failures.append(f"{section} {row['policy']}: {row.get('error', 'wrong')}")
        for row in self.cluster:
            if not row.get("correct", False):
                where = (
                    f"{row['instances']} instance(s), cluster {'on' if row['cluster'] else 'off'}"
                )
                failures.append(f"cluster {where}: {row.get('error', 'wrong')}")
        return failures


Step = Callable[[str], None]


def _run_worker(module: str, job: dict[str, Any], timeout: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(job, handle)
        path = handle.name
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, path],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return {
            "error": f"{module} did not finish in {timeout:.0f} s",
            "timed_out": True,
            "all_correct": False,
        }
    finally:
        os.unlink(path)
    if done.returncode != 0 or not done.stdout.strip():
        tail = done.stderr.strip().splitlines()[-3:]
        return {
            "error": f"{module} exited {done.returncode}: {' | '.join(tail)}",
            "all_correct": False,
        }
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass(frozen=True, slots=True)
class Upstreams:
    """The scale curve's upstreams: the lean one for the fleet, the simulator for sentinels."""

    fleet: Upstream
    sentinels: Upstream

    @property
    def url(self) -> str:
        return workload.roots(self.fleet.url, self.sentinels.url)

    @property
    def pid(self) -> int:
        return self.fleet.pid


@contextmanager
def scale_upstreams(n: int, latency: float, *, processes: int = 1) -> Iterator[Upstreams]:
    """A lean upstream for ``n`` healthy providers and a simulator for the sentinels."""
    with (
        simulator(workload.simulator_spec(0, latency, sentinels=True)) as sentinels,
        fast_upstream(
            workload.simulator_spec(n, latency, sentinels=False), processes=processes
        ) as fleet,
    ):
        yield Upstreams(fleet, sentinels)


def _upstream_keys(up: Upstream | Upstreams) -> dict[str, Any]:
    if isinstance(up, Upstreams):
        return {
            "root_url": up.url,
            "sim_pid": up.fleet.pid,
            "upstream_pids": list(up.fleet.all_pids()),
            "sentinel_pid": up.sentinels.pid,
        }
    return {"root_url": up.url, "sim_pid": up.pid}


def sharding(plan: Plan, n: int, workers: int | str | None) -> dict[str, Any]:
    """The job keys for ``workers`` at ``n`` (+ sentinels), and whether it must shard."""
    workers = plan.shard_workers if workers is None else workers
    count = (os.cpu_count() or 1) if workers == "auto" else int(workers)
    threshold = plan.shard_threshold or DEFAULT_SHARD_THRESHOLD
    keys: dict[str, Any] = {"workers": workers}
    if plan.shard_threshold is not None:
        keys["shard_threshold"] = plan.shard_threshold
    keys["expect_sharded"] = count > 1 and n + len(workload.SENTINELS) >= threshold
    return keys


def _job(
    up: Upstream | Upstreams,
    n: int,
    latency: float,
    *,
    sentinels: bool,
    concurrent: bool,
    warmup: int,
    repeats: int,
    **extra: Any,
) -> dict[str, Any]:
    # Budgets far above the expected times: a deadline must never be what ends a healthy probe.
    return {
        **_upstream_keys(up),
        "n": n,
        "latency": latency,
        "sentinels": sentinels,
        "concurrent": concurrent,
        "warmup": warmup,
        "repeats": repeats,
        "timeout": OURS_TIMEOUT,
        "adapter_timeout": OURS_ADAPTER_TIMEOUT,
        **extra,
    }


def _runs(result: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """The result with the runs it was asked for: the report says what each row had."""
    return {**result, "warmup": job["warmup"], "repeats": job["repeats"]}


def _ours(job: dict[str, Any]) -> dict[str, Any]:
    return _runs(_run_worker("benchmarks.worker", job, timeout=300), job)


def _seed(job: dict[str, Any], cap: float) -> dict[str, Any]:
    job = {
        **job,
        "cap_s": cap,
        "timeout": SEED_TIMEOUT,
        "adapter_timeout": SEED_ADAPTER_TIMEOUT,
    }
    runs = job["warmup"] + job["repeats"]
    result = _run_worker("benchmarks.baselines.seed_asyncio", job, timeout=cap * runs + 30)
    if result.get("timed_out"):
        # Not even its own cap could stop it (cancelling thousands of tasks queued
        # in one pool takes that long): a finding about the design, not an error.
        result = {
            "finished": False,
            "cap_s": cap,
            "all_correct": False,
            "correct": 0,
            "expected": 0,
            "walls": [],
        }
    return _runs(result, job)


def _litellm(job: dict[str, Any], cap: float) -> dict[str, Any]:
    """LiteLLM's own proxy health check on the job's fleet (benchmarks/baselines/litellm_health.py)."""
    import importlib.util

    if importlib.util.find_spec("litellm") is None:
        return {"skipped": "litellm is not installed (pip install -e '.[dev]')"}
    job = {**job, "cap_s": cap, "adapter_timeout": LITELLM_ADAPTER_TIMEOUT}
    runs = job["warmup"] + job["repeats"]
    result = _run_worker(
        "benchmarks.baselines.litellm_health", job, timeout=cap * runs + LITELLM_STARTUP_S
    )
    if result.get("timed_out"):  # as the seed design's: a finding, not an error
        result = {
            "finished": False,
            "cap_s": cap,
            "all_correct": False,
            "correct": 0,
            "expected": 0,
            "walls": [],
        }
    return _runs(result, job)


def _error(results: Results, where: str, result: dict[str, Any]) -> None:
    if "error" in result:
        results.errors.append(f"{where}: {result['error']}")


# -- sections -----------------------------------------------------------------


def seed_table(plan: Plan, results: Results, step: Step) -> None:
    latency = plan.seed_latency
    with simulator(workload.simulator_spec(15, latency, sentinels=False)) as up:
        for n in plan.seed_ns:
            row: dict[str, Any] = {"n": n, "latency": latency}
            step(f"seed table N={n}: ours, concurrent")
            row["trio"] = _ours(
                _job(
                    up,
                    n,
                    latency,
                    sentinels=False,
                    concurrent=True,
                    warmup=WARMUP,
                    repeats=plan.repeats,
                )
            )
            step(f"seed table N={n}: ours, sequential")
            row["trio_sequential"] = _ours(
                _job(up, n, latency, sentinels=False, concurrent=False, warmup=0, repeats=1)
            )
            step(f"seed table N={n}: seed baseline, concurrent")
            row["seed"] = _seed(
                _job(
                    up,
                    n,
                    latency,
                    sentinels=False,
                    concurrent=True,
                    warmup=WARMUP,
                    repeats=plan.repeats,
                ),
                plan.baseline_cap_s,
            )
            step(f"seed table N={n}: seed baseline, sequential")
            row["seed_sequential"] = _seed(
                _job(up, n, latency, sentinels=False, concurrent=False, warmup=0, repeats=1),
                plan.baseline_cap_s * 2,
            )
            for key in ("trio", "trio_sequential", "seed", "seed_sequential"):
                _error(results, f"seed table N={n} {key}", row[key])
            if not row["trio_sequential"].get("all_correct", False):
                row["trio"]["all_correct"] = False
                row["trio"].setdefault("wrong", []).append("sequential run wrong")
            results.seed_table.append(row)


def scale(plan: Plan, results: Results, step: Step) -> None:
    latency = plan.scale_latency
    biggest = max(
        plan.scale_ns
        + [plan.strategy_n, plan.strategy_big_n or 0]
        + [n for n, _, _ in plan.fd_limited]
        + plan.http_ns
    )
    with scale_upstreams(biggest, latency, processes=plan.upstream_processes) as up:
        for n in plan.scale_ns:
            row: dict[str, Any] = {"n": n, "latency": latency}
            step(f"scale N={n}: ours")
            repeats = plan.repeats if n < 10000 else 2
            row["trio"] = _ours(
                _job(
                    up,
                    n,
                    latency,
                    sentinels=True,
                    concurrent=True,
                    warmup=WARMUP,
                    repeats=repeats,
                    **sharding(plan, n, None),
                )
            )
            if n in plan.unsharded_ns:
                step(f"scale N={n}: ours, one process (workers = 1)")
                row["trio_single"] = _ours(
                    _job(
                        up,
                        n,
                        latency,
                        sentinels=True,
                        concurrent=True,
                        warmup=WARMUP,
                        repeats=repeats,
                        workers=1,
                    )
                )
                _error(results, f"scale N={n} ours, workers = 1", row["trio_single"])
            step(f"scale N={n}: seed baseline")
            # The same warm-up as ours at every N (a warm-up the cap stops leaves the row
            # unfinished); from 1,000 on, one run of the seed design takes tens of seconds:
            # one measured run, under a cap.
            big = n >= 1000
            row["seed"] = _seed(
                _job(
                    up,
                    n,
                    latency,
                    sentinels=True,
                    concurrent=True,
                    warmup=WARMUP,
                    repeats=1 if big else plan.repeats,
                ),
                plan.baseline_cap_s if n < 10000 else plan.baseline_cap_s / 2,
            )
            if n in plan.litellm_ns:
                step(f"scale N={n}: LiteLLM's health check")
                row["litellm"] = _litellm(
                    _job(
                        up,
                        n,
                        latency,
                        sentinels=True,
                        concurrent=True,
                        warmup=WARMUP,
                        repeats=1 if big else plan.repeats,
                    ),
                    plan.baseline_cap_s if n < 10000 else plan.baseline_cap_s / 2,
                )
                _error(results, f"scale N={n} LiteLLM", row["litellm"])
            _error(results, f"scale N={n} ours", row["trio"])
            _error(results, f"scale N={n} seed", row["seed"])
            results.scale.append(row)
        if plan.strategies:
            n = plan.strategy_n
            for transport in plan.strategies:
                step(f"client strategy {transport}, N={n}")
                # Its pool is quadratic: one measured run says enough.
                repeats = 1 if transport == "httpx-shared-keepalive" else plan.repeats
                result = _ours(
                    _job(
                        up,
                        n,
                        latency,
                        sentinels=True,
                        concurrent=True,
                        warmup=WARMUP,
                        repeats=repeats,
                        transport=transport,
                        workers=1,  # a client strategy is swapped in this process only
                    )
                )
                _error(results, f"strategy {transport} N={n}", result)
                results.strategies.append(
                    {"n": n, "strategy": transport, "fd_limit": None, "trio": result}
                )
        if plan.strategy_big_n:
            n = plan.strategy_big_n
            for transport in plan.strategies_big:
                step(f"client strategy {transport}, N={n}")
                result = _ours(
                    _job(
                        up,
                        n,
                        latency,
                        sentinels=True,
                        concurrent=True,
                        warmup=WARMUP,
                        repeats=1,
                        transport=transport,
                        workers=1,
                    )
                )
                _error(results, f"strategy {transport} N={n}", result)
                results.strategies.append(
                    {"n": n, "strategy": transport, "fd_limit": None, "trio": result}
                )
        for n, limit, variant in plan.fd_limited:
            step(f"fd limit {limit}, N={n}, {variant}")
            extra: dict[str, Any] = {"fd_limit": limit, "workers": 1}  # one process's fds
            if variant == "probe-limiter":
                extra.update(transport="direct-no-keepalive", probe_limiter="auto")
            # No warm-up: with fewer sockets than adapters, none survives to the next run anyway.
            result = _ours(
                _job(up, n, latency, sentinels=True, concurrent=True, warmup=0, repeats=1, **extra)
            )
            _error(results, f"fd limit {limit} N={n}", result)
            name = (
                "direct + ConnectionBudget"
                if variant == "budget"
                else "no keep-alive + checker probe_limiter"
            )
            results.strategies.append({"n": n, "strategy": name, "fd_limit": limit, "trio": result})
        for n in plan.http_ns:
            step(f"HTTP GET /v1/health/ N={n}")
            row = {
                "n": n,
                "latency": latency,
                "http": _http_health(up, n, latency, repeats=plan.repeats if n < 10000 else 2),
            }
            _error(results, f"HTTP N={n}", row["http"])
            results.http.append(row)


def sequential(plan: Plan, results: Results, step: Step) -> None:
    latency = plan.sequential_latency
    if not plan.sequential_ns:
        return
    with simulator(
        workload.simulator_spec(max(plan.sequential_ns), latency, sentinels=False)
    ) as up:
        for n in plan.sequential_ns:
            row: dict[str, Any] = {"n": n, "latency": latency}
            step(f"sequential N={n}: ours")
            row["trio_sequential"] = _ours(
                _job(up, n, latency, sentinels=False, concurrent=False, warmup=WARMUP, repeats=1)
            )
            step(f"sequential N={n}: ours, concurrent")
            row["trio"] = _ours(
                _job(
                    up,
                    n,
                    latency,
                    sentinels=False,
                    concurrent=True,
                    warmup=WARMUP,
                    repeats=plan.repeats,
                )
            )
            step(f"sequential N={n}: seed baseline")
            row["seed_sequential"] = _seed(
                _job(up, n, latency, sentinels=False, concurrent=False, warmup=WARMUP, repeats=1),
                plan.baseline_cap_s,
            )
            step(f"sequential N={n}: seed baseline, concurrent")
            row["seed"] = _seed(
                _job(
                    up,
                    n,
                    latency,
                    sentinels=False,
                    concurrent=True,
                    warmup=WARMUP,
                    repeats=plan.repeats,
                ),
                plan.baseline_cap_s,
            )
            for key in ("trio", "trio_sequential", "seed", "seed_sequential"):
                _error(results, f"sequential N={n} {key}", row[key])
            if not row["trio_sequential"].get("all_correct", False):
                row["trio"]["all_correct"] = False
                row["trio"].setdefault("wrong", []).append("sequential run wrong")
            results.sequential.append(row)


# -- through HTTP -----------------------------------------------------------------


@contextmanager
def _server(document: dict[str, Any]) -> Iterator[tuple[str, int]]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(document, handle)
        path = handle.name
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.http_server", path],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("SERVING "):
            raise RuntimeError(f"server did not start: {line!r}")
        yield line.split(" ", 1)[1], process.pid
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        os.unlink(path)


def _http_verdicts(body: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {
        provider: (d.get("status", ""), d.get("failure") or "", d.get("error") or "")
        for providers in body.get("details", {}).values()
        for provider, d in providers.items()
    }


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (the server's shard workers), from /proc.

    Every process's parent is read (/proc/N/stat): a task's own ``children`` list
    misses those a thread started (Trio starts processes from a worker thread).
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


def _http_health(
    up: Upstream | Upstreams, n: int, latency: float, *, repeats: int
) -> dict[str, Any]:
    tabs = workload.targets(up.url, n, latency, sentinels=True)
    document = workload.config_document(
        tabs, timeout=OURS_TIMEOUT, adapter_timeout=OURS_ADAPTER_TIMEOUT
    )
    try:
        with _server(document) as (url, pid), httpx.Client(base_url=url, timeout=300) as client:
            for _ in range(WARMUP):  # connections open
                client.get("/v1/health/").raise_for_status()
            walls, checker, correct_runs, wrong = [], [], [], []
            # The server and its worker processes (if the fleet is sharded), summed.
            server: list[int | str] = [pid, *_children(pid)]
            fleet = up.fleet if isinstance(up, Upstreams) else up
            cpu0 = sum(measure.proc_cpu_seconds(int(p)) for p in server)
            sim0 = sum(fleet.cpu_seconds())
            with measure.FdSampler(*server) as sampler:  # the server's and its workers' fds
                for _ in range(repeats):
                    start = time.perf_counter()
                    response = client.get("/v1/health/")
                    walls.append(time.perf_counter() - start)
                    body = response.json()
                    checker.append(body["execution_time"])
                    correct, wrong_now = workload.judge(tabs, _http_verdicts(body), strict=True)
                    correct_runs.append(correct)
                    wrong = wrong or wrong_now
            cpu = sum(measure.proc_cpu_seconds(int(p)) for p in server) - cpu0
            sim = sum(fleet.cpu_seconds()) - sim0
            rss = sum(measure.proc_peak_rss_mb(int(p)) for p in server)
            size = len(response.content)
    except (OSError, RuntimeError, httpx.HTTPError, KeyError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "all_correct": False}
    probes = len(tabs) * repeats
    requests = (n if isinstance(up, Upstreams) else len(tabs)) * repeats
    return {
        "impl": "http",
        "workers": len(server) - 1,
        "n": n,
        "probes_per_run": len(tabs),
        "walls": walls,
        "wall_s": sorted(walls)[len(walls) // 2],
        "checker_s": sorted(checker)[len(checker) // 2],
        # What HTTP added, run by run (medians of walls and of checkers may be other runs').
        "overhead_s": statistics.median(w - c for w, c in zip(walls, checker, strict=True)),
        "cpu_ms_per_probe": cpu * 1000 / probes,
        "sim_cpu_ms_per_probe": sim * 1000 / requests,
        "peak_rss_mb": rss,
        "peak_fds": sampler.peak,
        "body_bytes": size,
        "correct": min(correct_runs),
        "expected": len(tabs),
        "all_correct": min(correct_runs) == len(tabs),
        "wrong": wrong[:5],
        "warmup": WARMUP,
        "repeats": repeats,
    }


def performance(plan: Plan, results: Results, step: Step) -> None:
    latency = plan.seed_latency
    with simulator(
        workload.simulator_spec(max(plan.performance_ns), latency, sentinels=False)
    ) as up:
        for n in plan.performance_ns:
            step(f"HTTP GET /v1/health/performance N={n}")
            tabs = workload.targets(up.url, n, latency, sentinels=False)
            document = workload.config_document(
                tabs, timeout=OURS_TIMEOUT, adapter_timeout=OURS_ADAPTER_TIMEOUT
            )
            row: dict[str, Any] = {"n": n, "latency": latency}
            try:
                with (
                    _server(document) as (url, _pid),
                    httpx.Client(base_url=url, timeout=300) as client,
                ):
                    client.get("/v1/health/").raise_for_status()  # warm-up
                    start = time.perf_counter()
                    body = client.get("/v1/health/performance", params={"timeout": 120}).json()
                    wall = time.perf_counter() - start
                metrics = body["performance_metrics"]
                agreed = body.get("agreement", {}).get("agreed", False)
                healthy = body.get("concurrent_status") == "healthy"
                row["http"] = {
                    "wall_s": wall,
                    "concurrent_s": metrics["concurrent_time"],
                    "sequential_s": metrics["sequential_time"],
                    "speedup": metrics["speedup"],
                    "improvement_percent": metrics["improvement_percent"],
                    "total_adapters": metrics["total_adapters"],
                    "all_correct": agreed and healthy and metrics["total_adapters"] == n,
                    "wrong": []
                    if agreed and healthy
                    else [f"agreement {agreed}, status {body.get('concurrent_status')}"],
                }
            except (OSError, RuntimeError, httpx.HTTPError, KeyError, ValueError) as exc:
                row["http"] = {"error": f"{type(exc).__name__}: {exc}", "all_correct": False}
                results.errors.append(f"performance N={n}: {row['http']['error']}")
            results.performance.append(row)


def run_acceptance(plan: Plan, results: Results, step: Step) -> None:
    step("acceptance scenarios (issues 2 and 3)")
    results.acceptance = acceptance.run(quick=plan.quick)


def cost_policies(plan: Plan, results: Results, step: Step) -> None:
    results.policies_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    records = run_policies(plan.policy_plan(), step)
    results.polling, results.limiter = records["polling"], records["limiter"]


def cluster_instances(plan: Plan, results: Results, step: Step) -> None:
    results.cluster_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results.cluster = run_cluster(plan.cluster_plan(), step)


def calibrate() -> float:
    from .report import calibration_ms

    return calibration_ms()


def run(plan: Plan, step: Step) -> Results:
    from .report import machine

    results = Results(plan)
    results.machine = machine()
    results.started_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results.cpu_count = os.cpu_count() or 0
    results.load_average.append(round(os.getloadavg()[0], 2))
    results.calibration_ms.append(round(calibrate(), 1))
    start = time.perf_counter()
    sections = [seed_table, scale, sequential, performance]
    if plan.acceptance:
        sections.insert(0, run_acceptance)
    if plan.policies:
        sections.append(cost_policies)
    if plan.cluster:
        sections.append(cluster_instances)
    if plan.only_sections():
        sections = [cost_policies] if plan.only_policies else []
        sections += [cluster_instances] if plan.only_cluster else []
    for section in sections:
        began = time.perf_counter()
        section(plan, results, step)
        results.section_seconds[section.__name__] = round(time.perf_counter() - began, 1)
    results.seconds = time.perf_counter() - start
    results.load_average.append(round(os.getloadavg()[0], 2))
    results.calibration_ms.append(round(calibrate(), 1))
    return results

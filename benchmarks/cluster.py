"""Several ``router-health serve`` instances, with and without the ``[cluster]`` Redis backend.

One simulator process serves ``providers x models`` adapters (openai-compatible,
no key, ``latency`` s); N = 1, 3, 5 ``router-health serve`` processes (each its
own port and ``instance_id``) run background checks on all of them
(``[checks] interval``, ``jitter``). Without a cluster each instance probes
every adapter every interval; with one (the same ``[cluster] redis_url``, a
redis-server this benchmark starts on a free port) each adapter is leased to
one instance per interval, and the others receive its result.

Each row starts fresh instances, waits until every instance has a result for
every adapter (``GET /v1/health/history``, which never probes), then measures
a window: the upstream requests the simulator itself counted (probes per
minute), each instance's probes sent (its ``/metrics``), and the CPU seconds
of every instance and of redis-server (``/proc/PID/stat``). After the window,
every instance must serve every adapter from its background state
(``GET /v1/health/?details=false``: ``"source": "background"``, all healthy).

Counts are the result (they barely depend on the machine); CPU is per minute.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from service.config import dump_toml, load_config

from .measure import proc_cpu_seconds
from .upstream import simulator

KIND = "openai-compatible"
#: Sum of these series over every (model, provider): probes this instance actually sent.
PROBES_SENT = "router_health_probe_latency_seconds_count{"
READY_LINE = "Ready to accept connections"
DASH = "\N{EN DASH}"

Step = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    """How big and how long; ``quick`` is a smoke run whose counts are checkable, not a record."""

    providers: int
    models: int
    latency: float
    interval: float
    jitter: float
    window: float
    instances: tuple[int, ...]
    warmup_timeout: float = 60.0

    @classmethod
    def full(cls) -> ClusterPlan:
        return cls(
            providers=30, models=10, latency=0.05, interval=10.0, jitter=0.2, window=60.0,
            instances=(1, 3, 5),
        )

    @classmethod
    def quick(cls) -> ClusterPlan:
        return cls(
            providers=6, models=10, latency=0.05, interval=3.0, jitter=0.2, window=12.0,
            instances=(1, 3),
        )

    @property
    def adapters(self) -> int:
        return self.providers * self.models

    def steps(self) -> int:
        return 2 * len(self.instances)

    def expected_per_minute(self, instances: int, *, cluster: bool) -> float:
        """One probe per adapter per interval, per instance (or once in all, with a cluster)."""
        return (1 if cluster else instances) * self.adapters * 60.0 / self.interval


# -- the fleet and the configs ------------------------------------------------------


def provider_names(plan: ClusterPlan) -> list[str]:
    return [f"sp{j:02d}" for j in range(plan.providers)]


def model_names(plan: ClusterPlan) -> list[str]:
    return [f"cm-{i}" for i in range(plan.models)]


def simulator_spec(plan: ClusterPlan) -> list[dict[str, Any]]:
    """``providers`` simulated providers, each serving every model, no key."""
    return [
        {"name": p, "kind": KIND, "models": model_names(plan), "behavior": {"latency": plan.latency}}
        for p in provider_names(plan)
    ]


def config_toml(
    plan: ClusterPlan, root_url: str, *, redis_url: str | None, instance: str, prefix: str
) -> str:
    """One instance's providers.toml: every adapter, background checks, maybe ``[cluster]``."""
    models = [
        {
            "name": m,
            "providers": [
                {"name": p, "type": KIND, "base_url": f"{root_url}/{p}/v1", "model": m}
                for p in provider_names(plan)
            ],
        }
        for m in model_names(plan)
    ]
    checks = {"interval": plan.interval, "jitter": plan.jitter}
    text = dump_toml({"checks": checks, "models": models})
    if redis_url is None:
        return text
    # dump_toml writes [checks], [server] and [[models]] only: the table is ours.
    cluster = {"redis_url": redis_url, "instance_id": instance, "key_prefix": prefix, "timeout": 1.0}
    lines = ["", "[cluster]"] + [f"{k} = {json.dumps(v)}" for k, v in cluster.items()]
    return text + "\n".join(lines) + "\n"


# -- processes ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proc:
    """A running process of ours: where it listens and its pid (to read its CPU)."""

    url: str
    pid: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen[Any], sig: signal.Signals = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextmanager
def redis_server(folder: Path, *, timeout: float = 15.0) -> Iterator[Proc]:
    """A throwaway redis-server on a free port (no persistence); yields its URL; stops it."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port, log = free_port(), folder / "redis.log"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--loglevel", "notice", "--logfile", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(process, log, timeout)
        yield Proc(f"redis://127.0.0.1:{port}/0", process.pid)
    finally:
        _stop(process)


def _wait_ready(process: subprocess.Popen[Any], log: Path, timeout: float) -> None:
    """Until redis-server's own "ready" line is in its log (not a sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and READY_LINE in log.read_text(encoding="utf-8", errors="replace"):
            return
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}: {_tail(log)}")
        time.sleep(0.05)
    raise RuntimeError(f"redis-server not ready within {timeout:g} s: {_tail(log)}")


def _tail(log: Path) -> str:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return " | ".join(text.strip().splitlines()[-3:])


@contextmanager
def serve_instances(configs: Sequence[Path]) -> Iterator[list[Proc]]:
    """``router-health serve --port 0`` once per config, started together; stopped on exit."""
    with ExitStack() as stack:
        processes = []
        for path in configs:
            process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "--log-level", "ERROR", "serve",
                 "--config", str(path), "--port", "0"],
                stdout=subprocess.PIPE,
                text=True,
            )
            stack.callback(_stop, process)
            processes.append(process)
        yield [_announced(process) for process in processes]


def _announced(process: subprocess.Popen[str]) -> Proc:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if "serving on " not in line:
        raise RuntimeError(f"router-health serve did not start: {line!r}")
    return Proc(line.rsplit(" ", 1)[1], process.pid)


# -- reading the instances ------------------------------------------------------------


def _known(client: httpx.Client, url: str) -> int:
    """Adapters this instance has a result for (history never probes)."""
    response = client.get(f"{url}/v1/health/history")
    response.raise_for_status()
    return sum(a["status"] is not None for a in response.json()["adapters"])


def wait_until_known(instances: Sequence[Proc], adapters: int, timeout: float) -> float:
    """Until every instance has a result for every adapter; returns the seconds it took."""
    start = time.perf_counter()
    pending = list(instances)
    with httpx.Client(timeout=30, trust_env=False) as client:
        while pending:
            pending = [p for p in pending if _known(client, p.url) < adapters]
            if pending and time.perf_counter() - start > timeout:
                counts = [_known(client, p.url) for p in pending]
                raise RuntimeError(f"warm-up: instances still missing results after {timeout:g} s: "
                                   f"{counts} of {adapters}")
            if pending:
                time.sleep(0.2)
    return time.perf_counter() - start


def probes_sent(client: httpx.Client, url: str) -> int:
    """Probes this instance sent so far: its probe-latency histogram's counts, summed."""
    response = client.get(f"{url}/metrics")
    response.raise_for_status()
    return round(
        sum(float(line.rsplit(" ", 1)[1]) for line in response.text.splitlines()
            if line.startswith(PROBES_SENT))
    )


def served(client: httpx.Client, url: str) -> dict[str, Any]:
    """What one instance serves now: source, adapters in its report, healthy ones, cluster."""
    response = client.get(f"{url}/v1/health/", params={"details": "false"})
    body = response.json()
    models = body.get("models", {}).values()
    ready = client.get(f"{url}/readyz").json()
    return {
        "http_status": response.status_code,
        "source": body.get("source"),
        "adapters": sum(m["total_providers"] for m in models),
        "healthy": sum(m["healthy_providers"] for m in models),
        "cluster": ready.get("cluster", {}).get("status"),
    }


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Counters at one moment: the simulator's requests, probes and CPU of each process."""

    at: float
    upstream: int
    probes: list[int]
    cpu: list[float]
    redis_cpu: float | None


def snapshot(client: httpx.Client, root_url: str, instances: Sequence[Proc],
             redis: Proc | None) -> Snapshot:
    # Scrape first, then read the clocks: the scrapes' own CPU stays outside the window.
    probes = [probes_sent(client, p.url) for p in instances]
    stats = client.get(f"{root_url}/_sim/stats")
    stats.raise_for_status()
    return Snapshot(
        at=time.perf_counter(),
        upstream=int(stats.json()["total"]["requests"]),
        probes=probes,
        cpu=[proc_cpu_seconds(p.pid) for p in instances],
        redis_cpu=None if redis is None else proc_cpu_seconds(redis.pid),
    )


# -- one row ----------------------------------------------------------------------------


def measure_row(plan: ClusterPlan, root_url: str, n: int, redis: Proc | None,
                folder: Path) -> dict[str, Any]:
    """N fresh instances (sharing ``redis`` if given): warm up, then one measured window."""
    prefix = f"bench-{n}-{uuid.uuid4().hex[:8]}"  # a fresh key space: no lease outlives its row
    configs = []
    for i in range(n):
        path = folder / f"instance-{n}-{i}-{'cluster' if redis else 'alone'}.toml"
        path.write_text(config_toml(plan, root_url, redis_url=redis.url if redis else None,
                                    instance=f"bench-{i}", prefix=prefix), encoding="utf-8")
        load_config(path)  # a config mistake is ours: say so here, not as a dead server
        configs.append(path)
    with serve_instances(configs) as instances, httpx.Client(timeout=60, trust_env=False) as client:
        warmup = wait_until_known(instances, plan.adapters, plan.warmup_timeout)
        # Every adapter's first tick falls in the first jitter x interval: a window opened
        # right after that round would count one round short at its end. Open it mid-round.
        time.sleep(plan.interval / 2)
        before = snapshot(client, root_url, instances, redis)
        time.sleep(plan.window)  # the background loops' own clock is what is measured
        after = snapshot(client, root_url, instances, redis)
        views = [served(client, p.url) for p in instances]
    return summarize(plan, n, redis is not None, before, after, views, warmup)


def summarize(plan: ClusterPlan, n: int, cluster: bool, before: Snapshot, after: Snapshot,
              views: list[dict[str, Any]], warmup: float) -> dict[str, Any]:
    minutes = (after.at - before.at) / 60.0
    upstream = after.upstream - before.upstream
    probes = [b - a for a, b in zip(before.probes, after.probes, strict=True)]
    cpu = [(b - a) / minutes for a, b in zip(before.cpu, after.cpu, strict=True)]
    redis_cpu = (
        None if after.redis_cpu is None or before.redis_cpu is None
        else (after.redis_cpu - before.redis_cpu) / minutes
    )
    every = all(v["adapters"] == plan.adapters and v["source"] == "background" for v in views)
    healthy = all(v["healthy"] == plan.adapters for v in views)
    connected = not cluster or all(v["cluster"] == "connected" for v in views)
    return {
        "instances": n,
        "cluster": cluster,
        "adapters": plan.adapters,
        "interval": plan.interval,
        "jitter": plan.jitter,
        "latency": plan.latency,
        "seconds": round(minutes * 60, 2),
        "warmup_s": round(warmup, 2),
        "upstream_requests": upstream,
        "probes_per_minute": upstream / minutes,
        "expected_per_minute": plan.expected_per_minute(n, cluster=cluster),
        "probes_per_instance": probes,
        "cpu_s_per_minute": cpu,
        "redis_cpu_s_per_minute": redis_cpu,
        "served": views,
        "every_adapter_everywhere": every,
        "all_healthy": healthy,
        "cluster_connected": connected,
        "correct": every and healthy and connected,
    }


def _error_row(n: int, cluster: bool, exc: BaseException | str) -> dict[str, Any]:
    error = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return {"instances": n, "cluster": cluster, "correct": False, "error": error}


# -- the section --------------------------------------------------------------------------


@contextmanager
def _redis_or_reason(folder: Path) -> Iterator[Proc | str]:
    """redis-server running, or why it could not start (the cluster rows then say so)."""
    with ExitStack() as stack:
        try:
            redis: Proc | str = stack.enter_context(redis_server(folder))
        except RuntimeError as exc:
            redis = str(exc)
        yield redis


def run(plan: ClusterPlan, step: Step) -> list[dict[str, Any]]:
    """Every row: N = plan.instances without the cluster, then with it."""
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as folder,
        simulator(simulator_spec(plan)) as up,
        _redis_or_reason(Path(folder)) as redis,
    ):
        for cluster in (False, True):
            for n in plan.instances:
                step(f"cluster: {n} instance(s), {'with' if cluster else 'without'} Redis")
                if cluster and isinstance(redis, str):
                    rows.append(_error_row(n, cluster, redis))
                    continue
                shared = redis if cluster and not isinstance(redis, str) else None
                try:
                    rows.append(measure_row(plan, up.url, n, shared, Path(folder)))
                except (OSError, RuntimeError, httpx.HTTPError, KeyError, ValueError) as exc:
                    rows.append(_error_row(n, cluster, exc))
    return rows


# -- rendering (report.py frames it) ---------------------------------------------------------


def _spread(values: Sequence[float], digits: int = 0) -> str:
    if not values:
        return "—"
    low, high = min(values), max(values)
    if len(values) == 1 or f"{low:.{digits}f}" == f"{high:.{digits}f}":
        return f"{low:,.{digits}f}"
    return f"{low:,.{digits}f}{DASH}{high:,.{digits}f}"


def _cells(row: dict[str, Any]) -> list[str]:
    head = [str(row["instances"]), "yes" if row["cluster"] else "no"]
    if "error" in row:
        return [*head, f"**error**: {row['error'][:100]}", *[""] * 8]
    n, cpu = row["instances"], row["cpu_s_per_minute"]
    redis = row["redis_cpu_s_per_minute"]
    ok = sum(v["adapters"] == row["adapters"] and v["source"] == "background" for v in row["served"])
    return [
        *head,
        f"{row['upstream_requests']:,}",
        f"**{row['probes_per_minute']:,.0f}**",
        f"{row['expected_per_minute']:,.0f}",
        f"{row['probes_per_minute'] / n:,.0f}",
        _spread([p / (row["seconds"] / 60) for p in row["probes_per_instance"]]),
        f"**{sum(cpu) / n:.2f}** ({_spread(cpu, 2)})",
        f"{sum(cpu):.2f}",
        "—" if redis is None else f"{redis:.2f}",
        f"{ok}/{n} x {row['adapters']}" + ("" if row["correct"] else " **wrong**"),
    ]


def table(rows: Sequence[dict[str, Any]]) -> str:
    headers = [
        "instances", "cluster", "upstream requests", "probes / min", "expected",
        "probes / min / instance", "sent by each instance / min", "CPU s / min / instance (range)",
        "CPU s / min, all instances", "redis-server CPU s / min", "every instance serves all",
    ]
    marks = ["---", "---"] + ["---:"] * (len(headers) - 3) + ["---"]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def _find(rows: Sequence[dict[str, Any]], n: int, cluster: bool) -> dict[str, Any] | None:
    for row in rows:
        if row["instances"] == n and row["cluster"] == cluster and "error" not in row:
            return row
    return None


def _per_instance_cpu(row: dict[str, Any]) -> float:
    return float(sum(row["cpu_s_per_minute"]) / row["instances"])


def reading(rows: Sequence[dict[str, Any]]) -> str:
    """One paragraph of ratios, computed from this run's rows (so it never goes stale)."""
    ns = sorted({r["instances"] for r in rows})
    low, high = ns[0], ns[-1]
    a1, an = _find(rows, low, False), _find(rows, high, False)
    c1, cn = _find(rows, low, True), _find(rows, high, True)
    if a1 is None or an is None or c1 is None or cn is None:
        return "Some rows failed (see the table): no ratios are read from this run."
    ppm = {key: row["probes_per_minute"] for key, row in
           {"a1": a1, "an": an, "c1": c1, "cn": cn}.items()}
    sent = cn["probes_per_instance"]
    share = (min(sent) / sum(sent), max(sent) / sum(sent)) if sum(sent) else (0.0, 0.0)
    cpu = {key: _per_instance_cpu(row) for key, row in
           {"a1": a1, "an": an, "c1": c1, "cn": cn}.items()}
    return (
        f"Without the cluster backend every instance probes everything: {high} instances sent "
        f"{ppm['an'] / ppm['a1']:.2f}x the probes of {low} ({ppm['an']:,.0f} vs "
        f"{ppm['a1']:,.0f} per minute), each using {cpu['an']:.2f} CPU s per minute "
        f"(one alone: {cpu['a1']:.2f}). With `[cluster]`, "
        f"{high} instances sent {ppm['cn'] / ppm['c1']:.2f}x "
        f"the probes of one ({ppm['cn']:,.0f} vs {ppm['c1']:,.0f}; "
        f"{ppm['an'] / ppm['cn']:.2f}x fewer than {high} instances without it, "
        f"{ppm['cn'] / cn['expected_per_minute']:.0%} of one probe per adapter per interval), "
        f"each instance sending {share[0]:.0%}{DASH}{share[1]:.0%} of them. CPU per instance "
        f"{'fell about' if cpu['cn'] / cpu['c1'] < 1.5 / high else 'did not fall'} as "
        f"1/{high}: {cpu['cn']:.2f} CPU s per minute with {high} clustered "
        f"instances against {cpu['c1']:.2f} for a lone clustered one "
        f"({cpu['cn'] / cpu['c1']:.2f}x; 1/{high} would be {1 / high:.2f}x), and a lone "
        f"clustered instance cost {cpu['c1'] / cpu['a1']:.2f}x a lone plain one: every probe "
        f"it sends costs two Redis calls (take the lease, share the result) on top of the "
        f"probe. What does not shrink with N is each instance recording every result the "
        f"others publish (its live state must know them all), and the lease calls of "
        f"followers once a holder's results are an interval old. redis-server used {cn['redis_cpu_s_per_minute']:.2f} CPU s per minute "
        f"for {high} instances; in all, {high} clustered instances and redis-server used "
        f"{sum(cn['cpu_s_per_minute']) + cn['redis_cpu_s_per_minute']:.2f} CPU s per minute "
        f"against {sum(an['cpu_s_per_minute']):.2f} for {high} plain ones."
    )

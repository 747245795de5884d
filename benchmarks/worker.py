"""One measured configuration of this project's checker, in a process of its own.

``python -m benchmarks.worker JOB.json`` prints one JSON result line. The
parent (``python -m benchmarks``) starts one worker per row, so peak RSS and
fds belong to that row alone and the simulator's CPU stays out of ours.

Job keys: ``root_url, sim_pid, n, latency, sentinels, concurrent, warmup,
repeats, timeout, adapter_timeout`` and optionally ``transport`` (the client
strategies compared in RESULTS.md), ``fd_limit`` (lower RLIMIT_NOFILE, soft
and hard, before starting: the EMFILE test), ``probe_limiter``, ``workers``
and ``shard_threshold`` (``[checks]``'s worker processes; ``expect_sharded``
makes a row that did not shard a wrong one), ``upstream_pids`` (the fleet's
upstream processes, whose CPU is summed: the lean upstream) and
``sentinel_pid`` (the simulator answering the sentinels).

With worker processes, CPU, peak RSS and fds are summed over this process and
``AdapterManager.shard_pids()`` (each worker's /proc figures), so a sharded row
is compared with an unsharded one on the whole cost. Peak RSS is the sum of each
process's own peak.
"""

from __future__ import annotations

import json
import logging
import resource
import statistics
import sys
import time
from typing import Any

import httpcore
import httpx
import trio

from adapters.base import (
    HttpAdapter,
    HttpConnection,
    HttpxTransport,
    ProbeRequest,
    RawResponse,
    TransportError,
)
from service import AdapterManager, CheckerSettings, HealthChecker, parse_config
from service.engine.manager import raise_open_file_limit, socket_budget

from . import measure, workload

TRANSPORTS = {
    "direct": "HttpConnection per adapter, keep-alive (production)",
    "direct-no-keepalive": "HttpConnection per adapter, a new connection per probe",
    "httpx-per-adapter": "httpx.AsyncClient per adapter (max 2 conns, 1 keep-alive): the previous production strategy",
    "httpx-shared": "one shared httpx.AsyncClient, unlimited connections, no keep-alive",
    "httpx-shared-keepalive": "one shared httpx.AsyncClient, unlimited connections, all kept alive",
    "httpcore-per-adapter": "httpcore.AsyncConnectionPool per adapter (no httpx layer), 1 keep-alive",
}


class _HttpcoreTransport:
    """httpcore without httpx: measured, not used in production."""

    def __init__(self, ssl_context: Any) -> None:
        self.pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, max_connections=2, max_keepalive_connections=1
        )

    async def fetch(self, request: ProbeRequest, *, max_body_bytes: int) -> RawResponse:
        url = httpx.URL(request.url, params=dict(request.params) or None)
        headers = [(b"Host", url.netloc), (b"Accept-Encoding", b"identity")]
        headers += [(k.encode(), v.encode()) for k, v in request.headers.items()]
        try:
            async with self.pool.stream(request.method, str(url), headers=headers) as response:
                chunks, size = [], 0
                found = {k.decode().lower(): v.decode() for k, v in response.headers}
                async for chunk in response.aiter_stream():
                    size += len(chunk)
                    if size > max_body_bytes:
                        return RawResponse(response.status, found, b"", True)
                    chunks.append(chunk)
                return RawResponse(response.status, found, b"".join(chunks), False)
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.TimeoutException) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        await self.pool.aclose()


def _install_transport(name: str) -> None:
    """Swap the manager's client strategy for this process (benchmark scaffolding)."""
    if name == "direct":
        return
    shared: list[Any] = []

    def new_client(self: AdapterManager, adapter: HttpAdapter) -> Any:
        if name == "direct-no-keepalive":
            client: Any = HttpConnection(
                ssl_context=self._ssl_context, budget=self.connection_budget, keep_alive=False
            )
        elif name == "httpx-per-adapter":
            client = HttpxTransport(
                httpx.AsyncClient(
                    verify=self._ssl_context,  # one TLS context for all, as production did
                    timeout=60,
                    limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
                )
            )
        elif name.startswith("httpx-shared"):
            if shared:
                return shared[0]
            keep = None if name.endswith("keepalive") else 0
            client = HttpxTransport(
                httpx.AsyncClient(
                    verify=self._ssl_context,
                    timeout=60,
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=keep),
                )
            )
            shared.append(client)
        elif name == "httpcore-per-adapter":
            client = _HttpcoreTransport(self._ssl_context)
        else:
            raise SystemExit(f"unknown transport {name!r}")
        self._clients.append(client)
        return client

    AdapterManager._new_client = new_client  # type: ignore[method-assign]


def _shard_pids(manager: AdapterManager) -> list[int]:
    """The manager's worker processes (none when the fleet is not sharded)."""
    pids = getattr(manager, "shard_pids", None)
    return list(pids()) if pids is not None else []


def _cpu(pids: list[int]) -> list[float]:
    return [measure.proc_cpu_seconds(pid) for pid in pids]


async def _measure(job: dict[str, Any]) -> dict[str, Any]:
    tabs = workload.targets(job["root_url"], job["n"], job["latency"], sentinels=job["sentinels"])
    config = parse_config(
        workload.config_document(
            tabs,
            timeout=job["timeout"],
            adapter_timeout=job["adapter_timeout"],
            workers=job.get("workers"),
            shard_threshold=job.get("shard_threshold"),
        ),
        env={},
    )
    checker = None
    if job.get("probe_limiter"):
        size = job["probe_limiter"]
        if size == "auto":
            size = socket_budget(len(tabs))
        checker = HealthChecker(
            CheckerSettings.from_config(config.checks), probe_limiter=trio.CapacityLimiter(size)
        )
    walls: list[float] = []
    exec_times: list[float] = []
    correct_runs: list[int] = []
    wrong: list[str] = []
    fallbacks = 0
    reasons: list[str] = []  # the first fallback's reason
    async with AdapterManager(config, checker=checker) as manager:
        for _ in range(job["warmup"]):  # connections open, caches fill
            await manager.health_checker.run(manager.model_adapters, concurrent=job["concurrent"])
        upstream = list(
            job.get("upstream_pids") or ([job["sim_pid"]] if job.get("sim_pid") else [])
        )
        sentinel = [job["sentinel_pid"]] if job.get("sentinel_pid") else []
        up0, sentinel0 = _cpu(upstream), _cpu(sentinel)
        shards = _shard_pids(manager)
        shard0 = _cpu(shards)
        with measure.FdSampler("self", *shards) as sampler:
            cpu0 = measure.process_cpu()
            for _ in range(job["repeats"]):
                start = time.perf_counter()
                report = await manager.health_checker.run(
                    manager.model_adapters, concurrent=job["concurrent"]
                )
                walls.append(time.perf_counter() - start)
                exec_times.append(report.execution_time)
                fallbacks += report.fallback
                if report.fallback and report.fallback_reason and not reasons:
                    reasons.append(report.fallback_reason)
                verdicts = {
                    r.provider: (
                        r.status.value,
                        r.failure.value if r.failure else "",
                        r.error or "",
                    )
                    for r in report.results()
                }
                correct, wrong_now = workload.judge(tabs, verdicts, strict=True)
                correct_runs.append(correct)
                wrong = wrong or wrong_now
            cpu = measure.process_cpu() - cpu0
        shard_cpu = [b - a for a, b in zip(shard0, _cpu(shards), strict=True)]
        shard_rss = [measure.proc_peak_rss_mb(pid) for pid in shards]
        shards_after = _shard_pids(manager)
        upstream_cpu = [b - a for a, b in zip(up0, _cpu(upstream), strict=True)]
        sentinel_cpu = [b - a for a, b in zip(sentinel0, _cpu(sentinel), strict=True)]
        budget = manager.connection_budget.statistics() if manager.connection_budget else None
    cpu -= sampler.cpu
    probes = len(tabs) * job["repeats"]
    # The fleet's requests: every probe when one upstream answers all, else the healthy ones.
    requests = (job["n"] if sentinel else len(tabs)) * job["repeats"]
    if job.get("expect_sharded") and not shards:
        wrong = ["not sharded: the row asked for worker processes and got none", *wrong]
        correct_runs.append(0)
    if job.get("expect_sharded") and fallbacks:
        # The verdicts may all be right, finished sequentially in the parent: then this row
        # measured the fallback, not the sharded pass.
        why = f": {reasons[0][:200]}" if reasons else ""
        wrong = [f"the sharded pass fell back in {fallbacks} of {job['repeats']} runs{why}",
                 *wrong]  # fmt: skip
        correct_runs.append(0)
    if shards_after != shards:
        wrong = [f"worker processes changed during the measured runs: {shards} -> {shards_after}",
                 *wrong]  # fmt: skip
        correct_runs.append(0)
    parent_rss = measure.peak_rss_mb()
    return {
        "impl": "trio",
        "transport": job.get("transport", "direct"),
        "n": job["n"],
        "probes_per_run": len(tabs),
        "walls": walls,
        "wall_s": statistics.median(walls),
        "checker_s": statistics.median(exec_times),
        # Summed over this process and its worker processes.
        "cpu_ms_per_probe": (cpu + sum(shard_cpu)) * 1000 / probes,
        "parent_cpu_ms_per_probe": cpu * 1000 / probes,
        "shard_cpu_ms_per_probe": [c * 1000 / probes for c in shard_cpu],
        "workers": len(shards),  # worker processes that ran (0: not sharded)
        "workers_config": job.get("workers", "default"),  # [checks] workers as asked
        # The fleet's upstream, summed over its processes, per request it answered.
        "sim_cpu_ms_per_probe": sum(upstream_cpu) * 1000 / requests if upstream else None,
        "upstream_cpu_s": [c / job["repeats"] for c in upstream_cpu],  # per run, per process
        "sentinel_cpu_s": sentinel_cpu[0] / job["repeats"] if sentinel else None,  # per run
        "peak_rss_mb": parent_rss + sum(shard_rss),
        "parent_peak_rss_mb": parent_rss,
        "shard_peak_rss_mb": shard_rss,
        "peak_fds": sampler.peak,
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "connection_budget": budget,
        "correct": min(correct_runs),
        "expected": len(tabs),
        "all_correct": min(correct_runs) == len(tabs),
        "wrong": wrong[:5],
        "fallback_runs": fallbacks,
        "finished": True,
    }


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        job = json.load(handle)
    logging.basicConfig(level=logging.CRITICAL)  # a log line per probe would be measured too
    if job.get("fd_limit"):
        limit = int(job["fd_limit"])
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    else:  # as the router-health command does for its fleet
        raise_open_file_limit(int(job["n"]))
    _install_transport(job.get("transport", "direct"))
    result = trio.run(_measure, job)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The seed's design, written plainly: asyncio + ``asyncio.gather`` + httpx.

What the seed's document describes, and nothing more:

* one shared ``httpx.AsyncClient`` and its connection pool (the seed's "资源复用",
  resource reuse: one shared HTTP client and pool), with httpx's default limits (100 connections, 20 kept alive)
  since the seed sets none, and the adapter timeout as its timeout;
* every model checked with ``asyncio.gather``, every model's adapters with
  ``asyncio.gather``, each adapter bounded by ``asyncio.wait_for(adapter_timeout)``;
* the whole run bounded by ``asyncio.wait_for(timeout)`` (default 30 s); on
  timeout it "falls back to sequential" and checks every adapter again, one by one;
* a verdict is healthy or unhealthy, nothing finer.

The health rule itself is this project's (HTTP 200, a JSON model list that
names the model), so the comparison is about scheduling and transport, not
about what counts as healthy.

``python -m benchmarks.baselines.seed_asyncio JOB.json`` takes the same job
as ``benchmarks.worker`` and prints the same result keys.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import statistics
import sys
import time
from typing import Any

import httpx

from .. import measure, workload

logger = logging.getLogger("seed_baseline")


class OpenAIAdapter:
    def __init__(
        self, provider: str, base_url: str, api_key: str, model: str, client: httpx.AsyncClient
    ) -> None:
        self.provider = provider
        self.base_url = base_url
        self.api_key = api_key
        self.model = model
        self.client = client

    async def health_check(self) -> bool:
        response = await self.client.get(
            f"{self.base_url}/models", headers={"Authorization": f"Bearer {self.api_key}"}
        )
        if response.status_code != 200:
            return False
        data = response.json()
        return any(item.get("id") == self.model for item in data.get("data", []))


class HealthChecker:
    def __init__(self, adapter_timeout: float = 8.0) -> None:
        self.adapter_timeout = adapter_timeout

    async def _check_adapter(self, adapter: OpenAIAdapter, timeout: float | None) -> bool:  # noqa: ASYNC109
        try:
            return await asyncio.wait_for(adapter.health_check(), timeout or self.adapter_timeout)
        except Exception as exc:
            logger.warning("%s health check failed: %s", adapter.provider, exc)
            return False

    async def check_model_health(
        self, model: str, adapters: list[tuple[OpenAIAdapter, float | None]]
    ) -> dict[str, Any]:
        results = await asyncio.gather(*(self._check_adapter(a, t) for a, t in adapters))
        providers = {
            a.provider: ("healthy" if ok else "unhealthy")
            for (a, _), ok in zip(adapters, results, strict=True)
        }
        healthy = sum(results)
        return {
            "status": "healthy"
            if healthy == len(results)
            else ("degraded" if healthy else "unhealthy"),
            "providers": providers,
            "healthy_providers": healthy,
            "total_providers": len(results),
        }

    async def _check_all_models_sequential(
        self, model_adapters: dict[str, list[tuple[OpenAIAdapter, float | None]]]
    ) -> dict[str, Any]:
        models = {}
        for model, adapters in model_adapters.items():
            providers = {}
            for adapter, timeout in adapters:
                ok = await self._check_adapter(adapter, timeout)
                providers[adapter.provider] = "healthy" if ok else "unhealthy"
            models[model] = {"providers": providers}
        return models

    async def check_all_models_with_timeout(
        self,
        model_adapters: dict[str, list[tuple[OpenAIAdapter, float | None]]],
        timeout: float = 30.0,  # noqa: ASYNC109 - the seed's API
    ) -> dict[str, Any]:
        start = time.time()
        concurrent = True
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(self.check_model_health(m, a) for m, a in model_adapters.items())),
                timeout,
            )
            models = dict(zip(model_adapters, results, strict=True))
        except TimeoutError:
            logger.warning("concurrent health check timed out, falling back to sequential")
            concurrent = False
            models = await self._check_all_models_sequential(model_adapters)
        return {"models": models, "execution_time": time.time() - start, "concurrent": concurrent}


async def _measure(job: dict[str, Any]) -> dict[str, Any]:
    tabs = workload.targets(job["root_url"], job["n"], job["latency"], sentinels=job["sentinels"])
    checker = HealthChecker(adapter_timeout=job["adapter_timeout"])
    walls: list[float] = []
    exec_times: list[float] = []
    correct_runs: list[int] = []
    wrong: list[str] = []
    fallbacks = 0
    finished = True
    async with httpx.AsyncClient(timeout=job["adapter_timeout"]) as client:
        plan: dict[str, list[tuple[OpenAIAdapter, float | None]]] = {}
        for t in tabs:
            adapter = OpenAIAdapter(
                t.provider, t.base_url, workload.API_KEY, workload.MODEL, client
            )
            plan.setdefault(t.model, []).append((adapter, t.timeout))

        async def run_once() -> dict[str, Any]:
            if job["concurrent"]:
                return await checker.check_all_models_with_timeout(plan, timeout=job["timeout"])
            start = time.time()
            models = await checker._check_all_models_sequential(plan)
            return {"models": models, "execution_time": time.time() - start, "concurrent": False}

        cap = job.get("cap_s")
        try:
            for _ in range(job["warmup"]):
                await asyncio.wait_for(run_once(), cap)
        except TimeoutError:
            finished = False
        sim_cpu0 = measure.proc_cpu_seconds(job["sim_pid"]) if job.get("sim_pid") else None
        with measure.FdSampler() as sampler:
            cpu0 = measure.process_cpu()
            for _ in range(job["repeats"] if finished else 0):
                start = time.perf_counter()
                try:
                    report = await asyncio.wait_for(run_once(), cap)
                except TimeoutError:
                    finished = False
                    walls.append(time.perf_counter() - start)
                    break
                walls.append(time.perf_counter() - start)
                exec_times.append(report["execution_time"])
                fallbacks += not report["concurrent"] and job["concurrent"]
                verdicts = {
                    p: (s, "", "")
                    for m in report["models"].values()
                    for p, s in m["providers"].items()
                }
                correct, wrong_now = workload.judge(tabs, verdicts, strict=False)
                correct_runs.append(correct)
                wrong = wrong or wrong_now
            cpu = measure.process_cpu() - cpu0
        sim_cpu = (
            measure.proc_cpu_seconds(job["sim_pid"]) - sim_cpu0 if sim_cpu0 is not None else None
        )
    cpu -= sampler.cpu
    probes = len(tabs) * max(len(walls), 1)
    return {
        "impl": "seed",
        "transport": "httpx-shared (seed)",
        "n": job["n"],
        "probes_per_run": len(tabs),
        "walls": walls,
        "wall_s": statistics.median(walls) if walls else None,
        "checker_s": statistics.median(exec_times) if exec_times else None,
        "cpu_ms_per_probe": cpu * 1000 / probes if walls else None,
        "sim_cpu_ms_per_probe": sim_cpu * 1000 / probes if sim_cpu is not None and walls else None,
        "peak_rss_mb": measure.peak_rss_mb(),
        "peak_fds": sampler.peak,
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "connection_budget": None,
        "correct": min(correct_runs) if correct_runs else 0,
        "expected": len(tabs),
        "all_correct": bool(correct_runs) and min(correct_runs) == len(tabs),
        "wrong": wrong[:5],
        "fallback_runs": fallbacks,
        "finished": finished,
        "cap_s": cap,
    }


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        job = json.load(handle)
    logging.basicConfig(level=logging.CRITICAL)
    result = asyncio.run(_measure(job))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

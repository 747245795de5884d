"""Two cost policies, measured end to end against the simulator in its own process.

(a) **Polling dashboards.** A dashboard polls ``GET /v1/health/`` every second
on a real ``router-health serve`` process (15 adapters: 3 models x 5
providers). Without a cache every poll probes every adapter; ``[checks]
min_interval`` serves a verdict younger than that instead; background checks
(``[checks] interval``) probe on their own schedule and polls read the state.
The record is how many requests the upstream received per minute, counted by
the simulator itself, and what the dashboard waited.

(b) **Concurrency limits against a provider that rate-limits.** One provider
answers 429 to any request beyond ``concurrency_limit`` in flight (the
simulator's ``Behavior.concurrency_limit``); many models share its name, so
they share one per-provider limiter. A full check runs several times in a row
with a fixed ``max_concurrent`` (too high, too low, exactly right) and with
``[checks] adaptive_concurrency``. The record is how many 429s the provider
sent, the wall time, and how many verdicts came back healthy (every adapter is).

Counts are the main result: they barely depend on the machine. Every
configuration runs in a fresh process (a server for (a), a worker for (b):
``python -m benchmarks.policies JOB.json``), so no cache, limiter or
connection outlives its row.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from service.config import dump_toml

from .acceptance import _serve_process
from .upstream import set_behavior, simulator

API_KEY = "sk-sim-policies-0123456789"
POLL_PERIOD = 1.0  # seconds between a dashboard's polls
LATENCY = 0.1  # every simulated answer's latency

#: (a): the configurations, as their ``[checks]`` tables.
CACHE_POLICIES: dict[str, dict[str, Any]] = {
    "no cache (the seed)": {},
    "min_interval = 10": {"min_interval": 10.0},
    "background, interval = 30": {"interval": 30.0},
}

#: (b): the provider's real concurrency limit, and the configurations tried against it.
PROVIDER_LIMIT = 8
LIMITER_POLICIES: dict[str, dict[str, Any]] = {
    "fixed max_concurrent = 32 (aggressive)": {"max_concurrent": 32},
    "fixed max_concurrent = 2 (conservative)": {"max_concurrent": 2},
    f"fixed max_concurrent = {PROVIDER_LIMIT} (oracle)": {"max_concurrent": PROVIDER_LIMIT},
    "adaptive, ceiling 32": {"max_concurrent": 32, "adaptive": True},
}


@dataclass(frozen=True, slots=True)
class PolicyPlan:
    """How big and how long; ``quick`` is a smoke run whose numbers are only sane, not a record."""

    poll_seconds: float
    poll_clients: tuple[int, ...]
    limiter_models: int
    limiter_runs: int
    # The provider's Retry-After on its 429s, one group of rows each: 1 s outlasts
    # a run (later runs serve the held verdict), 0.1 s lets every run probe again.
    retry_afters: tuple[float, ...]

    @classmethod
    def full(cls) -> PolicyPlan:
        return cls(
            poll_seconds=60.0,
            poll_clients=(1, 5),
            limiter_models=60,
            limiter_runs=10,
            retry_afters=(1.0, 0.1),
        )

    @classmethod
    def quick(cls) -> PolicyPlan:
        # Seconds, not a record: enough polls and runs for the counts to be checkable.
        return cls(
            poll_seconds=3.0,
            poll_clients=(1, 5),
            limiter_models=24,
            limiter_runs=3,
            retry_afters=(0.1,),
        )

    def steps(self) -> int:
        polling = len(CACHE_POLICIES) * len(self.poll_clients)
        return polling + len(LIMITER_POLICIES) * len(self.retry_afters)


Step = Callable[[str], None]


# -- the simulator ---------------------------------------------------------------


def _stats(root_url: str) -> dict[str, Any]:
    response = httpx.get(f"{root_url}/_sim/stats", timeout=10)
    response.raise_for_status()
    total: dict[str, Any] = response.json()["total"]
    return total


def _reset(root_url: str) -> None:
    httpx.post(f"{root_url}/_sim/reset_stats", timeout=10).raise_for_status()


def _entry(root_url: str, provider: str, model: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": provider,
        "type": "openai",
        "base_url": f"{root_url}/{provider}/v1",
        "api_key": API_KEY,
        "model": model,
        **extra,
    }


# -- (a) polling dashboards ---------------------------------------------------------

DASH_MODELS = [f"model-{i}" for i in range(3)]
DASH_PROVIDERS = [f"p{j}" for j in range(5)]


def dashboard_spec() -> list[dict[str, Any]]:
    """5 providers, each serving the 3 models: 15 adapters of LATENCY."""
    return [
        {
            "name": p,
            "kind": "openai",
            "api_key": API_KEY,
            "models": DASH_MODELS,
            "behavior": {"latency": LATENCY},
        }
        for p in DASH_PROVIDERS
    ]


def dashboard_document(root_url: str, checks: dict[str, Any]) -> dict[str, Any]:
    models = [
        {"name": m, "providers": [_entry(root_url, p, m) for p in DASH_PROVIDERS]}
        for m in DASH_MODELS
    ]
    # Each policy is exactly its [checks]: the server's own answer cache for
    # anonymous callers ([server] anonymous_min_interval, 5 s by default) is off,
    # or every row would measure it instead (the seed had none).
    return {"checks": checks, "server": {"anonymous_min_interval": 0}, "models": models}


@dataclass(slots=True)
class _Poll:
    seconds: float  # what the dashboard waited
    ok: bool  # 200, every model healthy


async def _dashboard(base: str, offset: float, polls: int, start: float, out: list[_Poll]) -> None:
    """One dashboard: a poll every POLL_PERIOD from ``start + offset`` (start to start)."""
    async with httpx.AsyncClient(base_url=base, timeout=60, trust_env=False) as client:
        for k in range(polls):
            await trio.sleep_until(start + offset + k * POLL_PERIOD)
            began = trio.current_time()
            response = await client.get("/v1/health/", params={"details": "false"})
            waited = trio.current_time() - began
            body = response.json()
            ok = response.status_code == 200 and body.get("healthy_models") == len(DASH_MODELS)
            out.append(_Poll(waited, ok))


async def _dashboards(base: str, clients: int, seconds: float) -> list[_Poll]:
    # Dashboards opened at different moments: their phases spread over the period,
    # so identical requests in flight (which share one run) are not what is measured.
    polls = int(seconds / POLL_PERIOD)
    out: list[_Poll] = []
    start = trio.current_time() + 0.05
    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(_dashboard, base, i * POLL_PERIOD / clients, polls, start, out)
    return out


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def polling_row(root_url: str, policy: str, clients: int, seconds: float) -> dict[str, Any]:
    """One configuration: a fresh server, a warm-up poll, then ``clients`` dashboards."""
    document = dashboard_document(root_url, CACHE_POLICIES[policy])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "providers.toml"
        path.write_text(dump_toml(document), encoding="utf-8")
        with _serve_process(path) as base:
            # Warm-up: connections open, and every policy starts with a verdict per
            # adapter (a cache or state filled by the first poll, as in real life).
            httpx.get(f"{base}/v1/health/", timeout=60).raise_for_status()
            _reset(root_url)
            began = time.perf_counter()
            polls = trio.run(_dashboards, base, clients, seconds)
            # Background probes run on their own clock: count a window of the same length.
            time.sleep(max(0.0, seconds - (time.perf_counter() - began)))
            elapsed = time.perf_counter() - began
            upstream = _stats(root_url)["requests"]
    waits = [p.seconds for p in polls]
    right = sum(p.ok for p in polls)
    return {
        "policy": policy,
        "checks": CACHE_POLICIES[policy],
        "clients": clients,
        "adapters": len(DASH_MODELS) * len(DASH_PROVIDERS),
        "seconds": round(elapsed, 2),
        "polls": len(polls),
        "upstream_requests": upstream,
        "probes_per_minute": upstream * 60 / elapsed,
        "probes_per_poll": upstream / len(polls) if polls else None,
        "p50_ms": _percentile(waits, 0.5) * 1000 if waits else None,
        "p95_ms": _percentile(waits, 0.95) * 1000 if waits else None,
        "polls_right": right,
        "correct": bool(polls) and right == len(polls),
    }


def run_polling(plan: PolicyPlan, step: Step) -> list[dict[str, Any]]:
    rows = []
    with simulator(dashboard_spec()) as up:
        for clients in plan.poll_clients:
            for policy in CACHE_POLICIES:
                step(f"dashboard polling: {policy}, {clients} client(s)")
                try:
                    rows.append(polling_row(up.url, policy, clients, plan.poll_seconds))
                except (OSError, RuntimeError, httpx.HTTPError, KeyError, ValueError) as exc:
                    rows.append(
                        {
                            "policy": policy,
                            "clients": clients,
                            "correct": False,
                            "error": f"{type(exc).__name__}: {exc}",
                        }
                    )
    return rows


# -- (b) concurrency limits against a rate-limiting provider -------------------------

LIMITED = "limited"


def limiter_spec(models: int) -> list[dict[str, Any]]:
    return [
        {
            "name": LIMITED,
            "kind": "openai",
            "api_key": API_KEY,
            "models": [f"m-{i}" for i in range(models)],
            "behavior": {"latency": LATENCY, "concurrency_limit": PROVIDER_LIMIT},
        }
    ]


def limiter_document(root_url: str, models: int, policy: dict[str, Any]) -> dict[str, Any]:
    """``models`` models, each served by the one provider name (one shared limiter)."""
    checks: dict[str, Any] = {"adaptive_concurrency": True} if policy.get("adaptive") else {}
    # One cap per provider name, written on every entry (the config insists they agree).
    extra = {"max_concurrent": policy["max_concurrent"]}
    return {
        "checks": checks,
        "models": [
            {"name": f"m-{i}", "providers": [_entry(root_url, LIMITED, f"m-{i}", **extra)]}
            for i in range(models)
        ],
    }


def _limit_now(checker: Any, provider: str) -> int | None:
    """The provider's current limit, if the checker exposes its limiters."""
    slots = getattr(checker, "slots", None)
    stats = slots.statistics() if slots is not None and hasattr(slots, "statistics") else {}
    entry = stats.get(provider) if isinstance(stats, dict) else None
    limit = entry.get("limit") if isinstance(entry, dict) else None
    return int(limit) if isinstance(limit, int | float) else None


async def _limiter_worker(document: dict[str, Any], runs: int) -> dict[str, Any]:
    """In the worker process: ``runs`` full checks in a row; each run's wall, verdicts, limit."""
    from service import AdapterManager, parse_config

    walls: list[float] = []
    healthy: list[int] = []
    refused_seen: list[int] = []  # results that were a 429 (sent now, or its Retry-After held)
    held: list[int] = []  # results served because a Retry-After still held (nothing sent)
    limits: list[int | None] = []
    async with AdapterManager(parse_config(document, env={})) as manager:
        checker = manager.health_checker
        for _ in range(runs):
            start = time.perf_counter()
            report = await checker.run(manager.model_adapters)
            walls.append(time.perf_counter() - start)
            results = report.results()
            healthy.append(sum(r.healthy for r in results))
            refused_seen.append(
                sum(r.failure is not None and r.failure.value == "rate_limited" for r in results)
            )
            held.append(sum(getattr(r, "source", None) == "retry_after" for r in results))
            limits.append(_limit_now(checker, LIMITED))
    return {
        "walls": walls,
        "healthy": healthy,
        "rate_limited_results": refused_seen,
        "held_results": held,
        "limits": limits,
        "adapters": len(document["models"]),
    }


def limiter_row(root_url: str, policy: str, retry_after: float, plan: PolicyPlan) -> dict[str, Any]:
    from .suite import _run_worker  # here: suite imports this module

    document = limiter_document(root_url, plan.limiter_models, LIMITER_POLICIES[policy])
    _reset(root_url)
    job = {"kind": "limiter", "document": document, "runs": plan.limiter_runs}
    result = _run_worker("benchmarks.policies", job, timeout=600)
    upstream = _stats(root_url)
    row: dict[str, Any] = {"policy": policy, "retry_after": retry_after, **LIMITER_POLICIES[policy]}
    if "error" in result:
        return {**row, "correct": False, "error": result["error"]}
    walls, healthy = result["walls"], result["healthy"]
    adapters = result["adapters"]
    return {
        **row,
        "adapters": adapters,
        "runs": len(walls),
        "upstream_requests": upstream["requests"],
        "upstream_429s": upstream["rate_limited"],
        "wall_median_s": statistics.median(walls),
        "wall_last_s": walls[-1],
        "walls": walls,
        "healthy_per_run": healthy,
        "healthy_total": sum(healthy),
        "verdicts_total": adapters * len(walls),
        "rate_limited_results": result["rate_limited_results"],
        "held_results": result["held_results"],
        "limits": result["limits"],
        "final_limit": result["limits"][-1] if result["limits"] else None,
        # The oracle cap must never be refused nor judged wrong; the other rows'
        # 429s and unhealthy verdicts are the finding, not an error.
        "correct": not policy.startswith(f"fixed max_concurrent = {PROVIDER_LIMIT} ")
        or (upstream["rate_limited"] == 0 and sum(healthy) == adapters * len(walls)),
    }


def adaptive_rejected() -> str | None:
    """Why this checkout's config parser rejects ``adaptive_concurrency`` (None: it accepts it).

    A rejection is a wrong result of the adaptive rows, never a skip: the
    feature is part of the service, so a config that refuses it is a regression.
    """
    from service import parse_config
    from service.config import ConfigError

    try:
        parse_config({"checks": {"adaptive_concurrency": True}, "models": []}, env={})
    except ConfigError as exc:
        if "adaptive_concurrency" in str(exc):
            return str(exc)
    return None


def run_limiter(plan: PolicyPlan, step: Step) -> list[dict[str, Any]]:
    rows = []
    rejected = adaptive_rejected()
    with simulator(limiter_spec(plan.limiter_models)) as up:
        for retry_after in plan.retry_afters:
            set_behavior(up.url, LIMITED, retry_after=retry_after)
            for policy, settings in LIMITER_POLICIES.items():
                step(f"rate-limited provider: {policy}, Retry-After {retry_after:g} s")
                row: dict[str, Any] = {"policy": policy, "retry_after": retry_after}
                if settings.get("adaptive") and rejected is not None:
                    error = f"the config rejects adaptive_concurrency: {rejected}"
                    rows.append({**row, "correct": False, "error": error})
                    continue
                try:
                    rows.append(limiter_row(up.url, policy, retry_after, plan))
                except (OSError, RuntimeError, httpx.HTTPError, KeyError, ValueError) as exc:
                    rows.append({**row, "correct": False, "error": f"{type(exc).__name__}: {exc}"})
    return rows


def run(plan: PolicyPlan, step: Step) -> dict[str, list[dict[str, Any]]]:
    return {"polling": run_polling(plan, step), "limiter": run_limiter(plan, step)}


def _worker_main(path: str) -> int:
    logging.basicConfig(level=logging.CRITICAL)  # per-probe log lines would be measured too
    job = json.loads(Path(path).read_text(encoding="utf-8"))
    if job.get("kind") != "limiter":
        print(f"unknown job kind {job.get('kind')!r}", file=sys.stderr)
        return 2
    result = trio.run(_limiter_worker, job["document"], job["runs"])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1]))

"""The core checker's acceptance scenarios (issue 2), over loopback.

Each row has ``ok`` (its timing target met and its verdicts right) and
``correct`` (its verdicts right): ``--quick`` fails only on the latter.

15 adapters of 300 ms, one answering 500: concurrent and sequential, same
statuses. Then one more adapter that never answers, adapter_timeout 1.0:
with the timeout re-check off, and on with a 1.5 s run budget.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import trio

from service import AdapterManager, HealthReport, parse_config

from .upstream import entries, upstream_process


def _spec(n: int, latency: float) -> list[dict[str, Any]]:
    spec: list[dict[str, Any]] = [
        {
            "name": f"p{i}",
            "kind": "openai",
            "api_key": "sk-sim-bench-0123456789",
            "models": ["sim-model"],
            "behavior": {"latency": latency},
        }
        for i in range(n)
    ]
    spec[-1]["behavior"]["mode"] = "status"
    spec[-1]["behavior"]["status"] = 500
    spec.append(
        {
            "name": "stuck",
            "kind": "openai",
            "api_key": "sk-sim-bench-0123456789",
            "models": ["sim-model"],
            "behavior": {"mode": "hang"},
        }
    )
    return spec


def _config(tables: list[dict[str, Any]], **checks: Any) -> Any:
    """5 models x 3 providers, like the seed's 15-adapter row (the 16th joins model-5)."""
    models: dict[str, list[dict[str, Any]]] = {}
    for i, table in enumerate(tables):
        models.setdefault(f"model-{i // 3}", []).append(table)
    return parse_config(
        {"checks": checks, "models": [{"name": n, "providers": p} for n, p in models.items()]},
        env={},
    )


async def _timed(
    manager: AdapterManager, *, repeats: int, **kwargs: Any
) -> tuple[list[float], HealthReport]:
    times = []
    report = None
    for _ in range(repeats):
        start = time.perf_counter()
        report = await manager.health_checker.run(manager.model_adapters, **kwargs)
        times.append(time.perf_counter() - start)
    assert report is not None
    return times, report


def _statuses(report: HealthReport) -> dict[tuple[str, str], str]:
    return {(r.model, r.provider): r.status.value for r in report.results()}


async def _scenarios(
    root_url: str, spec: list[dict[str, Any]], repeats: int
) -> list[dict[str, Any]]:
    tables = entries(root_url, spec)
    fifteen, stuck = tables[:15], tables[15:]
    rows: list[dict[str, Any]] = []

    async with AdapterManager(_config(fifteen)) as manager:
        await _timed(manager, repeats=1)  # warm-up: connections open
        conc, conc_report = await _timed(manager, repeats=repeats)
        seq, seq_report = await _timed(manager, repeats=max(1, repeats // 5), concurrent=False)
    healthy = sum(r.healthy for r in conc_report.results())
    rows.append(
        {
            "scenario": "15 x 300 ms, 1 returns 500: concurrent",
            "median_s": statistics.median(conc),
            "max_s": max(conc),
            "target": "< 0.40 s",
            "ok": max(conc) < 0.40 and healthy == 14,
            "correct": healthy == 14,
            "note": f"{healthy} healthy / {len(conc_report.results()) - healthy} unhealthy",
        }
    )
    rows.append(
        {
            "scenario": "same, sequential",
            "median_s": statistics.median(seq),
            "max_s": max(seq),
            "target": "same statuses",
            "ok": _statuses(seq_report) == _statuses(conc_report),
            "correct": _statuses(seq_report) == _statuses(conc_report),
            "note": f"speedup {statistics.median(seq) / statistics.median(conc):.1f}x",
        }
    )
    for recheck, timeout, low, high in ((False, 30.0, 1.00, 1.05), (True, 1.5, 1.5, 1.55)):
        config = _config(fifteen + stuck, adapter_timeout=1.0, recheck_timeouts=recheck)
        async with AdapterManager(config) as manager:
            await _timed(manager, repeats=1, timeout=timeout)
            times, report = await _timed(manager, repeats=max(1, repeats // 5), timeout=timeout)
        results = {r.provider: r for r in report.results()}
        unchanged = _statuses(report) == {
            **_statuses(conc_report),
            (results["stuck"].model, "stuck"): "timeout",
        }
        rows.append(
            {
                "scenario": f"+1 hanging, adapter_timeout 1.0, recheck {'on, timeout 1.5' if recheck else 'off'}",
                "median_s": statistics.median(times),
                "max_s": max(times),
                "target": f"{low:.2f}-{high:.2f} s",
                "ok": low <= min(times) and max(times) <= high and unchanged,
                "correct": unchanged,
                "note": "others unchanged" if unchanged else "OTHER RESULTS CHANGED",
            }
        )
    return rows


def run(*, quick: bool) -> list[dict[str, Any]]:
    spec = _spec(15, 0.3)
    with upstream_process(spec) as root_url:
        return trio.run(_scenarios, root_url, spec, 3 if quick else 20)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | median | max | target | met | note |",
        "|---|---:|---:|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['scenario']} | {row['median_s']:.3f} s | {row['max_s']:.3f} s | "
            f"{row['target']} | {'yes' if row['ok'] else '**no**'} | {row['note']} |"
        )
    return "\n".join(lines)

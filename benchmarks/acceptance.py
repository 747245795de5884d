"""The acceptance scenarios of the core checker (issue 2) and the service (issue 3).

Each row has ``ok`` (its timing target met and its verdicts right) and
``correct`` (its verdicts right): ``--quick`` fails only on the latter.

15 adapters of 300 ms, one answering 500: concurrent and sequential, same
statuses. Then one more adapter that never answers, adapter_timeout 1.0:
with the timeout re-check off, and on with a 1.5 s run budget. Last, a real
``router-health serve`` process answering GET /v1/health/ for the same 15.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from service import AdapterManager, HealthReport, parse_config
from service.config import dump_toml

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


@contextmanager
def _serve_process(config_path: Path) -> Iterator[str]:
    """``router-health serve --port 0`` in its own process; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "--log-level", "ERROR", "serve",
         "--config", str(config_path), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if "serving on " not in line:
            raise RuntimeError(f"router-health serve did not start: {line!r}")
        yield line.rsplit(" ", 1)[1]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _http_rows(tables: list[dict[str, Any]], repeats: int) -> list[dict[str, Any]]:
    """Issue 3: `router-health serve`, 15 x 300 ms, GET /v1/health/ end to end."""
    models: dict[str, list[dict[str, Any]]] = {}
    for i, table in enumerate(tables):
        models.setdefault(f"model-{i // 3}", []).append(table)
    document = {
        "checks": {},
        # Every request measured end to end is a check, not the answer kept for anonymous callers.
        "server": {"anonymous_min_interval": 0},
        "models": [{"name": n, "providers": p} for n, p in models.items()],
    }
    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "providers.toml"
        config_path.write_text(dump_toml(document), encoding="utf-8")
        with _serve_process(config_path) as base, httpx.Client(base_url=base, timeout=30) as client:
            client.get("/v1/health/")  # warm-up: the server's upstream connections open
            times, bodies = [], []
            for _ in range(repeats):
                start = time.perf_counter()
                response = client.get("/v1/health/")
                times.append(time.perf_counter() - start)
                bodies.append(response.json())
            sequential = client.get("/v1/health/", params={"use_concurrent": "false"}).json()
    seed_keys = ["status", "timestamp", "models", "healthy_models", "total_models",
                 "execution_time", "concurrent", "timeout"]
    shaped = all(list(body)[: len(seed_keys)] == seed_keys for body in bodies)
    same = all(body["models"] == sequential["models"] for body in bodies)
    healthy = sum(m["healthy_providers"] for m in bodies[-1]["models"].values())
    return [
        {
            "scenario": "router-health serve, 15 x 300 ms: GET /v1/health/ end to end",
            "median_s": statistics.median(times),
            "max_s": max(times),
            "target": "< 0.45 s, seed shape",
            "ok": max(times) < 0.45 and shaped and healthy == 14,
            "correct": shaped and healthy == 14,
            "note": f"{healthy}/15 healthy, seed keys {'in order' if shaped else 'WRONG'}",
        },
        {
            "scenario": "same, ?use_concurrent=false",
            "median_s": sequential["execution_time"],
            "max_s": sequential["execution_time"],
            "target": "same statuses",
            "ok": same,
            "correct": same,
            "note": "statuses equal" if same else "STATUSES DIFFER",
        },
    ]


def run(*, quick: bool) -> list[dict[str, Any]]:
    spec = _spec(15, 0.3)
    repeats = 3 if quick else 20
    with upstream_process(spec) as root_url:
        rows = trio.run(_scenarios, root_url, spec, repeats)
        rows += _http_rows(entries(root_url, spec)[:15], repeats)
    return rows


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

"""The LiteLLM baseline (benchmarks/baselines/litellm_health.py) on a small fleet and the real simulator.

LiteLLM's own proxy health check runs in a process of its own, the way the
suite runs every baseline; its JSON must carry every key the seed baseline's
does and judge healthy and unhealthy right: the fleet healthy, every
failure-mode sentinel not, a provider broken through the simulator's control
API not, and a run past its cap reported unfinished. No timing is asserted;
the only waits are for the processes to finish, each bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from benchmarks import workload
from benchmarks.baselines import litellm_health
from benchmarks.upstream import set_behavior, simulator
from tests.support.litellm import require_litellm

ROOT = Path(__file__).resolve().parents[2]
TESTS = "the LiteLLM benchmark baseline's tests"
N = 6
LATENCY = 0.2
#: Bound on one baseline process (import, a warm-up run, a measured run, with
#: LiteLLM's retries on the failing sentinels): normally ten seconds.
PROCESS_BOUND = 180.0


def _require_proxy_modules() -> None:
    missing = litellm_health.missing_proxy_modules()
    if not missing:
        return
    reason = f"LiteLLM's proxy health check needs {', '.join(missing)} (litellm[proxy])"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} — CI must run {TESTS}")
    pytest.skip(f"{reason} — {TESTS} not run")


def _run(module: str, job: dict[str, Any]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(job, handle)
        path = handle.name
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, path],
            capture_output=True,
            text=True,
            timeout=PROCESS_BOUND,
            cwd=ROOT,
        )
    finally:
        os.unlink(path)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _job(url: str, pid: int, **changes: Any) -> dict[str, Any]:
    return {
        "root_url": url,
        "sim_pid": pid,
        "n": N,
        "latency": LATENCY,
        "sentinels": True,
        "concurrent": True,
        "warmup": 1,
        "repeats": 1,
        "timeout": 30.0,
        "adapter_timeout": 8.0,
        "cap_s": 120.0,
        **changes,
    }


@pytest.fixture(scope="module")
def runs() -> dict[str, dict[str, Any]]:
    """The seed and LiteLLM baselines on one fleet, then LiteLLM with fleet-2 broken, then capped."""
    require_litellm(TESTS)
    _require_proxy_modules()
    out: dict[str, dict[str, Any]] = {}
    with simulator(workload.simulator_spec(N, LATENCY, sentinels=True)) as up:
        out["seed"] = _run("benchmarks.baselines.seed_asyncio", _job(up.url, up.pid))
        out["litellm"] = _run("benchmarks.baselines.litellm_health", _job(up.url, up.pid))
        out["capped"] = _run(
            "benchmarks.baselines.litellm_health",
            _job(up.url, up.pid, warmup=0, cap_s=LATENCY / 4),
        )
        set_behavior(up.url, workload.fleet_name(2), mode="status", status=503)
        out["broken"] = _run("benchmarks.baselines.litellm_health", _job(up.url, up.pid))
    return out


def test_it_reports_every_key_the_seed_baseline_does(runs: dict[str, dict[str, Any]]) -> None:
    assert set(runs["seed"]) <= set(runs["litellm"])
    assert runs["litellm"]["impl"] == "litellm"
    assert runs["litellm"]["n"] == N


def test_it_judges_the_fleet_healthy_and_every_sentinel_not(
    runs: dict[str, dict[str, Any]],
) -> None:
    result = runs["litellm"]
    assert result["finished"]
    assert result["expected"] == N + len(workload.SENTINELS)
    assert result["probes_per_run"] == result["expected"]
    assert result["correct"] == result["expected"], result["wrong"]
    assert result["all_correct"]
    assert result["wrong"] == []
    assert len(result["walls"]) == 1
    assert result["wall_s"] > 0
    assert result["cpu_ms_per_probe"] > 0
    assert result["sim_cpu_ms_per_probe"] is not None
    assert result["peak_fds"] > 0
    assert result["peak_rss_mb"] > 0
    assert result["max_concurrency"] is None  # LiteLLM's default: no bound


def test_a_provider_broken_upstream_is_judged_unhealthy(runs: dict[str, dict[str, Any]]) -> None:
    result = runs["broken"]
    assert result["finished"]
    assert result["correct"] == result["expected"] - 1
    assert not result["all_correct"]
    [line] = result["wrong"]
    assert line.startswith("fleet-2: expected healthy, got unhealthy/ (")
    assert "503" in line or "ServiceUnavailable" in line, line


def test_a_run_past_its_cap_is_abandoned_and_reported_unfinished(
    runs: dict[str, dict[str, Any]],
) -> None:
    result = runs["capped"]
    assert result["finished"] is False
    assert result["cap_s"] == LATENCY / 4
    assert len(result["walls"]) == 1
    assert result["correct"] == 0
    assert not result["all_correct"]


def test_the_model_list_and_the_verdicts_map_deployments_to_providers() -> None:
    tabs = workload.targets("http://sim", 2, LATENCY, sentinels=True)
    deployments = litellm_health.model_list(tabs, adapter_timeout=8.0)
    hang = next(d for d in deployments if d["model_info"]["id"] == "sentinel-hang")
    assert hang["model_name"] == "sentinels"
    assert hang["litellm_params"] == {
        "model": "openai/sim-model",
        "api_base": "http://sim/sentinel-hang/v1",
        "api_key": workload.API_KEY,
        "timeout": round(0.8 * LATENCY, 3),
    }
    assert hang["model_info"]["health_check_timeout"] == round(0.8 * LATENCY, 3)
    assert deployments[0]["litellm_params"]["timeout"] == 8.0
    verdicts = litellm_health.verdicts(
        [{"model_id": "fleet-0"}], [{"model_id": "fleet-1", "error": "boom"}]
    )
    assert verdicts == {"fleet-0": ("healthy", "", ""), "fleet-1": ("unhealthy", "", "boom")}

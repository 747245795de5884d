"""The benchmark suite's correctness path on a tiny fleet (no timing is asserted here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ is run from the repo root, not installed

from benchmarks import report, suite, workload  # noqa: E402
from benchmarks.upstream import simulator  # noqa: E402

LATENCY = 0.05


@pytest.fixture(scope="module")
def tiny_results() -> suite.Results:
    """Both implementations, concurrent, on 3 healthy providers + every failure-mode sentinel."""
    results = suite.Results(suite.Plan.quick_plan())
    with simulator(workload.simulator_spec(3, LATENCY, sentinels=True)) as up:
        job = suite._job(up, 3, LATENCY, sentinels=True, concurrent=True, warmup=1, repeats=1)
        results.scale.append(
            {"n": 3, "latency": LATENCY, "trio": suite._ours(job), "seed": suite._seed(job, cap=20)}
        )
    return results


def test_every_sentinel_gets_its_own_status_from_our_checker(tiny_results: suite.Results) -> None:
    ours = tiny_results.scale[0]["trio"]
    assert "error" not in ours, ours.get("error")
    assert ours["expected"] == 3 + len(workload.SENTINELS)
    assert ours["all_correct"], ours["wrong"]
    assert tiny_results.correctness_failures() == []


def test_the_seed_baseline_runs_and_reports_the_same_keys(tiny_results: suite.Results) -> None:
    seed = tiny_results.scale[0]["seed"]
    assert "error" not in seed, seed.get("error")
    assert seed["finished"]
    assert set(tiny_results.scale[0]["trio"]) <= set(seed) | {"connection_budget"}


def test_the_report_shows_the_rows(tiny_results: suite.Results) -> None:
    text = report.scale_table(tiny_results)
    assert "3 + 11" in text
    assert "yes 14/14" in text


def test_a_healthy_sentinel_counts_as_wrong() -> None:
    tabs = workload.targets("http://sim", 1, LATENCY, sentinels=True)
    verdicts = {t.provider: (t.expected[0], t.expected[1], "***") for t in tabs}
    assert workload.judge(tabs, verdicts, strict=True) == (len(tabs), [])
    verdicts[workload.sentinel_name("hang")] = ("healthy", "", "")
    correct, wrong = workload.judge(tabs, verdicts, strict=True)
    assert correct == len(tabs) - 1
    assert wrong == ["sentinel-hang: expected timeout/timeout, got healthy/"]


def test_a_leaked_key_counts_as_wrong() -> None:
    tabs = workload.targets("http://sim", 0, LATENCY, sentinels=True)
    verdicts = {t.provider: (t.expected[0], t.expected[1], "***") for t in tabs}
    verdicts[workload.sentinel_name("echo_key")] = (
        "unhealthy",
        "auth",
        f"bad key {workload.API_KEY}",
    )
    assert workload.judge(tabs, verdicts, strict=True)[0] == len(tabs) - 1


def test_a_failed_worker_is_a_correctness_failure() -> None:
    results = suite.Results(suite.Plan.quick_plan())
    results.scale.append(
        {"n": 1, "latency": LATENCY, "trio": {"error": "boom", "all_correct": False}, "seed": {}}
    )
    assert results.correctness_failures()

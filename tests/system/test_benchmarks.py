"""The benchmark suite's correctness path on a tiny fleet (no timing is asserted here)."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import cluster, policies, report, suite, workload
from benchmarks.upstream import simulator
from tests.support.redis import needs_redis

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


def test_the_baseline_runs_and_reports_the_same_keys(tiny_results: suite.Results) -> None:
    baseline = tiny_results.scale[0]["seed"]
    assert "error" not in baseline, baseline.get("error")
    assert baseline["finished"]
    # Worker processes and the split upstream CPU are ours only (the seed design has neither).
    ours_only = {"connection_budget", "workers", "parent_cpu_ms_per_probe",
                 "shard_cpu_ms_per_probe", "parent_peak_rss_mb", "shard_peak_rss_mb",
                 "upstream_cpu_s", "sentinel_cpu_s", "workers_config"}  # fmt: skip
    assert set(tiny_results.scale[0]["trio"]) <= set(baseline) | ours_only


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


def test_the_benchmark_key_is_hidden_only_by_exact_value_redaction() -> None:
    # A key the pattern fallback recognised (sk-...) would hide a broken
    # exact-value redaction from the echo_key sentinel.
    from adapters.base import redact

    message = f"Incorrect API key provided: {workload.API_KEY}"
    assert redact(message) == message
    assert workload.API_KEY not in redact(message, [workload.API_KEY])


def test_a_failed_worker_is_a_correctness_failure() -> None:
    results = suite.Results(suite.Plan.quick_plan())
    results.scale.append(
        {"n": 1, "latency": LATENCY, "trio": {"error": "boom", "all_correct": False}, "seed": {}}
    )
    assert results.correctness_failures()


def test_a_config_that_rejects_adaptive_limits_is_a_wrong_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not a skip with correct: True: the adaptive rows are part of the record.
    monkeypatch.setattr(policies, "adaptive_rejected", lambda: "checks.adaptive_concurrency: unknown key")
    monkeypatch.setattr(
        policies, "limiter_row",
        lambda url, policy, retry_after, plan: {"policy": policy, "retry_after": retry_after,
                                                "correct": True},
    )
    plan = policies.PolicyPlan.quick()
    rows = policies.run_limiter(plan, lambda _description: None)
    adaptive = [r for r in rows if policies.LIMITER_POLICIES[r["policy"]].get("adaptive")]
    assert adaptive and all(r["correct"] is False for r in adaptive), adaptive
    assert all("rejects adaptive_concurrency" in r["error"] for r in adaptive)
    assert all(r["correct"] for r in rows if r not in adaptive)
    results = suite.Results(suite.Plan.quick_plan())
    results.limiter = rows
    assert results.correctness_failures()
    results.limiter = adaptive  # the report shows why
    assert "rejects adaptive_concurrency" in report.limiter_table(results)


def test_this_checkouts_config_accepts_adaptive_limits() -> None:
    assert policies.adaptive_rejected() is None


# -- the cost-policy records (benchmarks/policies.py), --quick variant: counts only --------


@pytest.fixture(scope="module")
def policy_results() -> suite.Results:
    """``python -m benchmarks --quick --policies-only``, through the suite's own hooks."""
    plan = suite.Plan.quick_plan()
    plan.only_policies = True
    return suite.run(plan, lambda _description: None)


def _polling(results: suite.Results, policy: str, clients: int) -> dict[str, Any]:
    (row,) = [r for r in results.polling if r["policy"] == policy and r["clients"] == clients]
    assert "error" not in row, row["error"]
    return row


def _limiter(results: suite.Results, prefix: str) -> dict[str, Any]:
    (row,) = [r for r in results.limiter if r["policy"].startswith(prefix)]
    assert "error" not in row, row.get("error")
    return row


def test_policy_records_are_all_correct(policy_results: suite.Results) -> None:
    plan = policies.PolicyPlan.quick()
    assert len(policy_results.polling) == len(policies.CACHE_POLICIES) * len(plan.poll_clients)
    assert len(policy_results.limiter) == len(policies.LIMITER_POLICIES) * len(plan.retry_afters)
    assert policy_results.correctness_failures() == []
    assert all(r["polls_right"] == r["polls"] > 0 for r in policy_results.polling)


def test_without_a_cache_every_poll_probes_every_adapter(policy_results: suite.Results) -> None:
    one = _polling(policy_results, "no cache (the seed)", 1)
    assert one["upstream_requests"] == one["adapters"] * one["polls"]
    many = _polling(policy_results, "no cache (the seed)", 5)
    # Polls that happen to overlap share one run: fewer runs, never partial ones.
    assert many["upstream_requests"] % many["adapters"] == 0
    assert one["upstream_requests"] < many["upstream_requests"] <= many["adapters"] * many["polls"]


@pytest.mark.parametrize("clients", [1, 5])
def test_caching_policies_probe_far_less(policy_results: suite.Results, clients: int) -> None:
    uncached = _polling(policy_results, "no cache (the seed)", clients)
    cached = _polling(policy_results, "min_interval = 10", clients)
    background = _polling(policy_results, "background, interval = 30", clients)
    window = uncached["seconds"]
    # min_interval 10: at most one refresh per adapter per 10 s, whatever the clients.
    assert cached["upstream_requests"] <= cached["adapters"] * (1 + int(window // 10))
    # Background: each adapter's first scheduled probe at most (the next is ~30 s later).
    assert background["upstream_requests"] <= background["adapters"]
    for row in (cached, background):
        assert row["upstream_requests"] < uncached["upstream_requests"]


def test_a_limit_at_or_below_the_providers_is_never_refused(
    policy_results: suite.Results,
) -> None:
    for prefix in (
        "fixed max_concurrent = 2 ",
        f"fixed max_concurrent = {policies.PROVIDER_LIMIT} ",
    ):
        row = _limiter(policy_results, prefix)
        assert row["upstream_429s"] == 0
        assert row["healthy_total"] == row["verdicts_total"] == row["adapters"] * row["runs"]
        assert row["upstream_requests"] == row["verdicts_total"]


def test_an_aggressive_limit_is_refused_and_adaptive_recovers(
    policy_results: suite.Results,
) -> None:
    aggressive = _limiter(policy_results, "fixed max_concurrent = 32")
    # All probes go at once: the provider admits exactly its limit, refuses the rest.
    assert aggressive["healthy_per_run"][0] == policies.PROVIDER_LIMIT
    assert aggressive["upstream_429s"] >= aggressive["adapters"] - policies.PROVIDER_LIMIT
    adaptive = _limiter(policy_results, "adaptive")
    assert "error" not in adaptive and "skipped" not in adaptive, adaptive
    assert adaptive["healthy_total"] > aggressive["healthy_total"]
    assert 1 <= adaptive["final_limit"] <= 32


def test_the_policy_section_renders_and_splices(policy_results: suite.Results) -> None:
    text = report.markdown(policy_results)
    assert "probes / minute" in text and "429s sent" in text
    assert "## The seed's table" not in text  # --policies-only renders that section alone
    section = report.policies_md(policy_results)
    old = "# Results\n\n## Targets missed\n\nw\n\n## Through HTTP\n\nx\n\n## Targets\n\ny\n"
    once = report.splice_policies(old, section)
    # Where a full run puts it: after "Through HTTP", before the Targets table.
    http, begin = once.index("## Through HTTP"), once.index(report.POLICIES_BEGIN)
    assert http < begin < once.index("\n## Targets\n")
    again = report.splice_policies(once, section.replace("probes / minute", "PPM"))
    assert again.count(report.POLICIES_BEGIN) == 1
    assert "PPM" in again and "probes / minute" not in again


# -- several instances with and without [cluster] (benchmarks/cluster.py), --quick: counts only --


@needs_redis
def test_the_cluster_record_counts_one_probe_per_adapter_per_interval_in_all() -> None:
    """``python -m benchmarks --quick --cluster-only``, through the suite's own hooks."""
    plan = suite.Plan.quick_plan()
    plan.only_cluster = True
    results = suite.run(plan, lambda _description: None)
    quick = cluster.ClusterPlan.quick()
    assert results.correctness_failures() == []
    rows = {(r["instances"], r["cluster"]): r for r in results.cluster}
    assert set(rows) == {(n, c) for n in quick.instances for c in (False, True)}
    for (n, shared), row in rows.items():
        assert row["every_adapter_everywhere"] and row["all_healthy"], row["served"]
        # Probes in the window: one per adapter per interval, per instance or once in all;
        # wide bounds for the jitter at the window's edges.
        ideal = (1 if shared else n) * quick.adapters * row["seconds"] / quick.interval
        assert 0.6 * ideal <= row["upstream_requests"] <= 1.5 * ideal, (n, shared, row)
        # What the instances say they sent is what the simulator received.
        sent = sum(row["probes_per_instance"])
        assert 0.8 * row["upstream_requests"] <= sent <= 1.2 * row["upstream_requests"], row
        if shared:
            assert row["redis_cpu_s_per_minute"] is not None
            assert all(p > 0 for p in row["probes_per_instance"])  # spread, not one leader
    most = max(quick.instances)
    assert rows[(most, True)]["upstream_requests"] < 0.6 * rows[(most, False)]["upstream_requests"]
    section = report.cluster_md(results)
    assert "probes / min" in section and "## The seed's table" not in report.markdown(results)
    once = report.splice_cluster("# R\n\n## Targets\n\nt\n", section)
    assert once.index(report.CLUSTER_BEGIN) < once.index("\n## Targets\n")
    again = report.splice_cluster(once, section.replace("probes / min", "PPM"))
    assert again.count(report.CLUSTER_BEGIN) == 1 and "PPM" in again


def test_a_full_run_keeps_the_serving_section_another_command_wrote() -> None:
    old = "# old\n\n<!-- serving:begin (x) -->\nserving rows\n<!-- serving:end -->\n\nafter\n"
    kept = report.carry_section(old, "# new results\n", "serving")
    assert kept.startswith("# new results\n")
    assert "<!-- serving:begin (x) -->\nserving rows\n<!-- serving:end -->" in kept
    assert report.carry_section("# no section\n", "# new\n", "serving") == "# new\n"

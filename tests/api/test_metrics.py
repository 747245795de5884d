"""Prometheus metrics (service.api.metrics) from real checks, read back through the parsers.

Every assertion reads the exposition through ``prometheus_client``'s own
parsers (text format and OpenMetrics), never by matching the text. The
checks are real: in-memory ``CallableAdapter`` fleets through a real
``HealthChecker`` (waiting on events, not sleeps), and the real simulator over
loopback for a 429, a hanging upstream and a key echoed back.
"""

from __future__ import annotations

from collections.abc import Iterable

import prometheus_client
import pytest
import trio
import trio.testing
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from adapters import CallableAdapter, FailureKind, ProbeOutcome
from adapters.base import Secret
from service import (
    AdapterManager,
    HealthChecker,
    PassivePolicy,
    ProbeResult,
    ProbeStatus,
)
from service.api.metrics import Metrics
from service.config import CheckSchedule
from service.live.state import HealthState
from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support.configs import sim_config
from tests.support.fakes import Probe, adapter, hang, ok, settings
from tests.support.served import running_service

# The CI greps every test output for "rhtestkey": these must never show up.
KEY = "rhtestkey-metrics-5d1c0a77"
SIM_KEY = "rhtestkey-metrics-sim-9e7f31"

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
STATUSES = ("healthy", "degraded", "unhealthy", "timeout")
OUR_NAMES = (
    "router_health_probe_results_total",
    "router_health_probe_latency_seconds_count",
    "router_health_runs_total",
    "router_health_adapter_up",
    "router_health_probes_in_flight",
)

# -- helpers -------------------------------------------------------------------------------


def attached(checker: HealthChecker, health: HealthState | None = None) -> Metrics:
    metrics = Metrics(checker, health)
    metrics.attach()
    return metrics


def scrape(metrics: Metrics) -> list[Metric]:
    body, content_type = metrics.render(None)
    assert content_type.startswith("text/plain")
    return list(text_string_to_metric_families(body.decode()))


def get(source: Metrics | list[Metric], name: str, **labels: str) -> float | None:
    """The value of sample ``name`` with exactly ``labels``; None when absent."""
    families = scrape(source) if isinstance(source, Metrics) else source
    for family in families:
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def samples_named(families: Iterable[Metric], name: str) -> list[dict[str, str]]:
    return [s.labels for f in families for s in f.samples if s.name == name]


def status_row(metrics: Metrics, model: str, provider: str) -> dict[str, float | None]:
    families = scrape(metrics)
    return {
        status: get(families, "router_health_adapter_status",
                    model=model, provider=provider, status=status)
        for status in STATUSES
    }


def one_hot(current: str) -> dict[str, float | None]:
    return {status: 1.0 if status == current else 0.0 for status in STATUSES}


def results(metrics: Metrics, model: str, provider: str, status: str, failure: str) -> float | None:
    return get(metrics, "router_health_probe_results_total",
               model=model, provider=provider, status=status, failure=failure)


def timed(metrics: Metrics, model: str, provider: str) -> float | None:
    return get(metrics, "router_health_probe_latency_seconds_count", model=model, provider=provider)


# -- counters and histograms from in-memory fleets ------------------------------------------


async def test_counters_and_latency_histogram_after_n_runs() -> None:
    checker = HealthChecker(settings())
    metrics = attached(checker)
    fleet = {"gpt-4": [ok("openai"), adapter("azure", Probe([False]))], "claude": [ok("anthropic")]}
    for _ in range(3):
        await checker.check_all_models_with_timeout(list(fleet), fleet)

    families = scrape(metrics)
    assert get(families, "router_health_probe_results_total",
               model="gpt-4", provider="openai", status="healthy", failure="none") == 3
    assert get(families, "router_health_probe_results_total",
               model="gpt-4", provider="azure", status="unhealthy", failure="exception") == 3
    assert get(families, "router_health_probe_results_total",
               model="claude", provider="anthropic", status="healthy", failure="none") == 3
    for model, provider in [("gpt-4", "openai"), ("gpt-4", "azure"), ("claude", "anthropic")]:
        assert get(families, "router_health_probe_latency_seconds_count",
                   model=model, provider=provider) == 3
        assert get(families, "router_health_probe_latency_seconds_bucket",
                   model=model, provider=provider, le="+Inf") == 3
    assert samples_named(families, "router_health_probes_skipped_total") == []
    assert get(families, "router_health_runs_total", strategy="concurrent", status="degraded") == 3
    assert get(families, "router_health_run_duration_seconds_count", strategy="concurrent") == 3
    assert samples_named(families, "router_health_fallbacks_total") == []
    # The gauges: azure is down, the others up; one-hot status rows.
    assert get(families, "router_health_adapter_up", model="gpt-4", provider="openai") == 1
    assert get(families, "router_health_adapter_up", model="gpt-4", provider="azure") == 0
    assert status_row(metrics, "gpt-4", "azure") == one_hot("unhealthy")
    assert status_row(metrics, "claude", "anthropic") == one_hot("healthy")
    assert get(families, "router_health_probes_in_flight") == 0
    # No caps configured: no slot series at all.
    assert samples_named(families, "router_health_probe_limit") == []


async def test_probe_one_counts_like_a_run_probe() -> None:
    checker = HealthChecker(settings())
    metrics = attached(checker)
    await checker.probe_one("m", ok("p"))
    assert results(metrics, "m", "p", "healthy", "none") == 1
    assert timed(metrics, "m", "p") == 1
    assert samples_named(scrape(metrics), "router_health_runs_total") == []  # not a run


async def test_cached_and_passive_results_are_skipped_not_timed() -> None:
    checker = HealthChecker(settings(min_interval=600))
    metrics = attached(checker)
    probe = Probe([True])
    watched = adapter("traffic", Probe([True]))
    checker.passive.watch("m", watched, PassivePolicy(600.0, 0.5))
    checker.observe("m", "traffic", ok=True, latency_ms=40.0)  # the router's own traffic
    fleet = {"m": [adapter("p", probe), watched]}
    for _ in range(3):
        await checker.check_all_models_with_timeout(["m"], fleet)

    assert probe.calls == 1  # min_interval: one probe sent, two runs served it
    assert results(metrics, "m", "p", "healthy", "none") == 3
    assert get(metrics, "router_health_probes_skipped_total",
               model="m", provider="p", reason="cached") == 2
    assert timed(metrics, "m", "p") == 1
    # Passive verdicts: nothing sent, so nothing timed.
    assert results(metrics, "m", "traffic", "healthy", "none") == 3
    assert get(metrics, "router_health_probes_skipped_total",
               model="m", provider="traffic", reason="passive") == 3
    assert timed(metrics, "m", "traffic") is None
    # A measurement bypasses the cache: that probe is sent and timed.
    await checker.check_all_models_with_timeout(["m"], fleet, use_cache=False)
    assert (probe.calls, timed(metrics, "m", "p")) == (2, 2)


async def test_run_duration_by_strategy_and_fallbacks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    checker = HealthChecker(settings(recheck_timeouts=True))
    metrics = attached(checker)

    async def one_second() -> bool:
        await trio.sleep(1)
        return True

    slow = {"m": [adapter("a", one_second), adapter("b", one_second)]}
    await checker.check_all_models_with_timeout(["m"], slow)  # concurrent: 1 s
    await checker.check_all_models_sequential(["m"], slow)  # one by one: 2 s
    await checker.check_all_models_sequential(["m"], slow)

    families = scrape(metrics)
    assert get(families, "router_health_run_duration_seconds_count", strategy="concurrent") == 1
    assert get(families, "router_health_run_duration_seconds_sum",
               strategy="concurrent") == pytest.approx(1.0)
    assert get(families, "router_health_run_duration_seconds_count", strategy="sequential") == 2
    assert get(families, "router_health_run_duration_seconds_sum",
               strategy="sequential") == pytest.approx(4.0)
    assert get(families, "router_health_run_duration_seconds_bucket",
               strategy="sequential", le="1.0") == 0
    assert get(families, "router_health_run_duration_seconds_bucket",
               strategy="sequential", le="2.5") == 2
    assert get(families, "router_health_runs_total", strategy="sequential", status="healthy") == 2
    assert samples_named(families, "router_health_fallbacks_total") == []

    # An adapter that times out concurrently is re-checked one by one: a fallback.
    stuck = {"m": [CallableAdapter("stuck", hang, adapter_name="StuckAdapter", timeout=1.0)]}
    report = await checker.check_all_models_with_timeout(["m"], stuck)
    assert report.fallback
    assert get(metrics, "router_health_fallbacks_total", strategy="concurrent") == 1
    assert get(metrics, "router_health_runs_total", strategy="concurrent", status="unhealthy") == 1
    # Both verdicts (the first and the re-check's) were probes that were sent.
    assert results(metrics, "m", "stuck", "timeout", "timeout") == 2
    assert timed(metrics, "m", "stuck") == 2
    assert get(metrics, "router_health_probe_latency_seconds_sum",
               model="m", provider="stuck") == pytest.approx(2.0)


# -- the up / status gauges -----------------------------------------------------------------


async def test_up_and_status_follow_the_reported_state_with_hysteresis() -> None:
    checker = HealthChecker(settings())
    state = HealthState(lambda model, provider: CheckSchedule(unhealthy_threshold=3))
    checker.result_listeners.append(state.record)
    with_state = attached(checker, state)
    without = attached(checker)  # a second Metrics on the same checker: last result only
    fleet = {"m": [adapter("p", Probe([True, False, False, False]))]}

    await checker.check_all_models_with_timeout(["m"], fleet)
    assert get(with_state, "router_health_adapter_up", model="m", provider="p") == 1
    assert get(without, "router_health_adapter_up", model="m", provider="p") == 1

    for _ in range(2):  # two failures: below the threshold, still reported healthy
        await checker.check_all_models_with_timeout(["m"], fleet)
        assert get(with_state, "router_health_adapter_up", model="m", provider="p") == 1
        assert status_row(with_state, "m", "p") == one_hot("healthy")
        assert get(without, "router_health_adapter_up", model="m", provider="p") == 0
        assert status_row(without, "m", "p") == one_hot("unhealthy")

    await checker.check_all_models_with_timeout(["m"], fleet)  # the third: it flips
    assert state.get("m", "p") is not None
    assert get(with_state, "router_health_adapter_up", model="m", provider="p") == 0
    assert status_row(with_state, "m", "p") == one_hot("unhealthy")
    # Both count the same four results.
    for metrics in (with_state, without):
        assert results(metrics, "m", "p", "unhealthy", "exception") == 3


async def test_degraded_is_up_and_coloured_in_the_status_row() -> None:
    checker = HealthChecker(settings(transient=frozenset({"rate_limited"})))
    state = HealthState(lambda model, provider: CheckSchedule())
    checker.result_listeners.append(state.record)
    metrics = attached(checker, state)

    async def busy() -> ProbeOutcome:
        return ProbeOutcome.fail(FailureKind.RATE_LIMITED, "HTTP 429", http_status=429)

    await checker.check_all_models_with_timeout(["m"], {"m": [adapter("p", busy)]})
    assert results(metrics, "m", "p", "degraded", "rate_limited") == 1
    assert get(metrics, "router_health_adapter_up", model="m", provider="p") == 1
    assert status_row(metrics, "m", "p") == one_hot("degraded")


async def test_budget_outcomes_do_not_flip_the_up_gauge() -> None:
    # A result about our own budget (not_started, deadline) says nothing about
    # the provider: the gauge keeps the provider's last real verdict.
    checker = HealthChecker(settings())
    metrics = attached(checker)
    gate = trio.Event()
    fleet = {"m": [adapter("p", Probe([True]))]}
    await checker.check_all_models_with_timeout(["m"], fleet)
    await checker.check_all_models_with_timeout(
        ["m"], {"m": [adapter("p", Probe([True], gate=gate))]}, timeout=0.05
    )
    assert results(metrics, "m", "p", "timeout", "deadline") == 1
    assert get(metrics, "router_health_adapter_up", model="m", provider="p") == 1


# -- live gauges: in flight, slots ----------------------------------------------------------


async def test_in_flight_is_one_while_a_probe_hangs_and_zero_after() -> None:
    checker = HealthChecker(settings())
    metrics = attached(checker)
    gate = trio.Event()
    probe = Probe([True], gate=gate)
    fleet = {"m": [adapter("p", probe), ok("q")]}
    done = trio.Event()

    async def run() -> None:
        await checker.check_all_models_with_timeout(["m"], fleet)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await probe.entered.wait()
        await trio.testing.wait_all_tasks_blocked()  # q has answered; p waits on its gate
        assert get(metrics, "router_health_probes_in_flight") == 1
        assert results(metrics, "m", "q", "healthy", "none") == 1
        gate.set()
        await done.wait()
    assert get(metrics, "router_health_probes_in_flight") == 0
    assert results(metrics, "m", "p", "healthy", "none") == 1


async def test_slot_limits_in_use_and_queues_from_probe_slots() -> None:
    checker = HealthChecker(settings(max_concurrent_probes=1, provider_max_concurrent={"a": 1}))
    metrics = attached(checker)
    gate = trio.Event()
    probes = [Probe([True], gate=gate) for _ in range(3)]
    # Provider "a" under two models shares one cap; "b" only queues globally.
    fleet = {
        "m1": [adapter("a", probes[0])],
        "m2": [adapter("a", probes[1])],
        "m3": [adapter("b", probes[2])],
    }
    done = trio.Event()

    async def run() -> None:
        await checker.check_all_models_with_timeout(list(fleet), fleet)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        assert sum(p.calls for p in probes) == 1  # one holds both slots, two queue
        families = scrape(metrics)
        assert get(families, "router_health_probe_limit", provider="*") == 1
        assert get(families, "router_health_probe_slots_in_use", provider="*") == 1
        assert get(families, "router_health_probe_queue", provider="*") == 1
        assert get(families, "router_health_probe_limit", provider="a") == 1
        assert get(families, "router_health_probe_slots_in_use", provider="a") == 1
        assert get(families, "router_health_probe_queue", provider="a") == 1
        assert get(families, "router_health_probes_in_flight") == 3  # queued ones included
        assert samples_named(families, "router_health_probe_limit_ceiling") == []  # not adaptive
        gate.set()
        await done.wait()

    families = scrape(metrics)
    for provider in ("*", "a", "b"):
        assert get(families, "router_health_probe_slots_in_use", provider=provider) in (0, None)
        assert get(families, "router_health_probe_queue", provider=provider) in (0, None)
    assert get(families, "router_health_probe_limit", provider="*") == 1


async def test_adaptive_limits_export_their_ceiling() -> None:
    checker = HealthChecker(settings(adaptive_concurrency=True, adaptive_ceiling=4))
    metrics = attached(checker)
    await checker.check_all_models_with_timeout(["m"], {"m": [ok("p")]})
    families = scrape(metrics)
    assert get(families, "router_health_probe_limit", provider="p") == 4
    assert get(families, "router_health_probe_limit_ceiling", provider="p") == 4
    assert get(families, "router_health_probe_slots_in_use", provider="p") == 0
    assert get(families, "router_health_probe_limit", provider="*") is None  # no global cap


def test_refusal_counters_are_read_at_scrape_time_and_only_when_reported() -> None:
    counts = {"streams_refused": 3, "cluster_rejected": 7}
    metrics = Metrics(HealthChecker(settings()), refusals=lambda: counts)
    families = scrape(metrics)
    assert get(families, "router_health_streams_refused_total") == 3
    assert get(families, "router_health_cluster_messages_rejected_total") == 7
    # Parts that do not exist (no connection cap outside a server) show nothing.
    assert get(families, "router_health_connections_refused_total") is None
    counts["cluster_rejected"] = 9  # a later scrape sees the new count
    assert get(metrics, "router_health_cluster_messages_rejected_total") == 9


# -- wiring ----------------------------------------------------------------------------------


async def test_two_metrics_in_one_process_do_not_collide() -> None:
    first_checker, second_checker = HealthChecker(settings()), HealthChecker(settings())
    first, second = attached(first_checker), attached(second_checker)
    # Same names, same labels, separate registries: no "Duplicated timeseries".
    await first_checker.check_all_models_with_timeout(["m"], {"m": [ok("p")]})
    for _ in range(2):
        await second_checker.check_all_models_with_timeout(["m"], {"m": [ok("p")]})
    assert results(first, "m", "p", "healthy", "none") == 1
    assert results(second, "m", "p", "healthy", "none") == 2
    assert first.registry is not second.registry
    # Nothing lands in the process-wide default registry.
    default = list(prometheus_client.REGISTRY.collect())
    for name in OUR_NAMES:
        assert samples_named(default, name) == []


async def test_detach_stops_counting_and_is_idempotent() -> None:
    checker = HealthChecker(settings())
    metrics = Metrics(checker)
    metrics.attach()
    metrics.attach()  # once is enough: no double counting
    assert (len(checker.result_listeners), len(checker.run_listeners)) == (1, 1)
    fleet = {"m": [ok("p")]}
    await checker.check_all_models_with_timeout(["m"], fleet)
    assert results(metrics, "m", "p", "healthy", "none") == 1
    metrics.detach()
    metrics.detach()
    assert (checker.result_listeners, checker.run_listeners) == ([], [])
    assert not metrics.attached
    await checker.check_all_models_with_timeout(["m"], fleet)
    assert results(metrics, "m", "p", "healthy", "none") == 1
    assert get(metrics, "router_health_runs_total", strategy="concurrent", status="healthy") == 1


async def test_render_negotiates_openmetrics_and_the_text_format() -> None:
    checker = HealthChecker(settings())
    metrics = attached(checker)
    await checker.check_all_models_with_timeout(["m"], {"m": [ok("p")]})

    body, content_type = metrics.render(OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text")
    # The OpenMetrics parser insists on "# EOF" and typed families. (It is untyped.)
    parsed: list[Metric] = list(openmetrics_families(body.decode()))  # type: ignore[no-untyped-call]
    families = {f.name: f for f in parsed}
    assert families["router_health_probe_results"].type == "counter"
    assert families["router_health_probe_latency_seconds"].type == "histogram"
    assert families["router_health_adapter_up"].type == "gauge"
    assert get(list(families.values()), "router_health_adapter_up", model="m", provider="p") == 1

    for accept in (None, "", "text/plain", "*/*"):
        body, content_type = metrics.render(accept)
        assert content_type.startswith("text/plain")
        parsed = list(text_string_to_metric_families(body.decode()))
        assert get(parsed, "router_health_runs_total", strategy="concurrent", status="healthy") == 1


# -- against the real simulator over loopback -------------------------------------------------


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    return [
        SimProvider("busy", "openai", "sk-sim-busy-0123456789", ["sim-model"],
                    Behavior(latency=0.01, mode="rate_limited", retry_after=30)),
        SimProvider("stuck", "openai", "sk-sim-stuck-0123456789", ["sim-model"],
                    Behavior(latency=0.01, mode="hang")),
        SimProvider("calm", "openai", "sk-sim-calm-0123456789", ["sim-model"],
                    Behavior(latency=0.01)),
        SimProvider("leaky", "openai", SIM_KEY, ["sim-model"],
                    Behavior(latency=0.01, mode="echo_key")),
    ]


async def test_a_429_and_a_hanging_upstream_over_loopback(sim: Simulator) -> None:
    config = sim_config(sim, "busy", "stuck", "calm", adapter_timeout=0.5,
                        adaptive_concurrency=True, adaptive_ceiling=4)
    async with AdapterManager.from_config(config) as manager:
        checker = manager.health_checker
        metrics = attached(checker)
        answered: list[ProbeResult] = []
        two_answered = trio.Event()

        def seen(result: ProbeResult) -> None:
            answered.append(result)
            if len(answered) == 2:
                two_answered.set()

        checker.result_listeners.append(seen)
        done = trio.Event()

        async def run() -> None:
            await checker.check_all_models_with_timeout(["m"], manager.model_adapters)
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            with trio.fail_after(5):
                await two_answered.wait()  # busy and calm have their verdicts
                await sim.wait_until(lambda: sim.stats("stuck").in_flight == 1)
            assert sorted(r.provider for r in answered) == ["busy", "calm"]
            assert get(metrics, "router_health_probes_in_flight") == 1  # only the hanging one
            with trio.fail_after(5):
                await done.wait()
        checker.result_listeners.remove(seen)

        families = scrape(metrics)
        assert get(families, "router_health_probes_in_flight") == 0
        assert get(families, "router_health_probe_results_total", model="m", provider="busy",
                   status="unhealthy", failure="rate_limited") == 1
        assert get(families, "router_health_probe_results_total", model="m", provider="stuck",
                   status="timeout", failure="timeout") == 1
        assert get(families, "router_health_probe_results_total", model="m", provider="calm",
                   status="healthy", failure="none") == 1
        stuck_seconds = get(families, "router_health_probe_latency_seconds_sum",
                            model="m", provider="stuck")
        assert stuck_seconds is not None and 0.5 <= stuck_seconds < 2.0
        assert {p: get(families, "router_health_adapter_up", model="m", provider=p)
                for p in ("busy", "stuck", "calm")} == {"busy": 0, "stuck": 0, "calm": 1}
        assert status_row(metrics, "m", "stuck") == one_hot("timeout")
        # The 429 halved busy's adaptive limit; calm's stays at its ceiling.
        assert get(families, "router_health_probe_limit", provider="busy") == 2
        assert get(families, "router_health_probe_limit", provider="calm") == 4
        assert get(families, "router_health_probe_limit_ceiling", provider="busy") == 4

        # The Retry-After holds busy: served, not sent, not timed.
        sim.set_behavior("stuck", mode="ok")
        await checker.check_all_models_with_timeout(["m"], manager.model_adapters)
        families = scrape(metrics)
        assert sim.stats("busy").requests == 1
        assert get(families, "router_health_probe_results_total", model="m", provider="busy",
                   status="unhealthy", failure="rate_limited") == 2
        assert get(families, "router_health_probes_skipped_total",
                   model="m", provider="busy", reason="retry_after") == 1
        assert get(families, "router_health_probe_latency_seconds_count",
                   model="m", provider="busy") == 1
        assert get(families, "router_health_adapter_up", model="m", provider="stuck") == 1
        assert get(families, "router_health_runs_total", strategy="concurrent",
                   status="degraded") == 2

        body, _ = metrics.render(None)
        assert sim.root_url.encode() not in body  # no URL, not even the host
        assert b"127.0.0.1" not in body


async def test_keys_quoted_in_errors_never_reach_the_exposition(sim: Simulator) -> None:
    async def raises() -> bool:
        raise RuntimeError(f"upstream rejected {KEY} and {SIM_KEY}")

    async def quotes() -> ProbeOutcome:
        return ProbeOutcome.fail(FailureKind.AUTH, f"key {KEY} revoked", http_status=401)

    # ``leaky`` echoes its own (config) key back in its 401 body; the callable
    # adapters quote it and another known key in their messages.
    async with AdapterManager.from_config(sim_config(sim, "leaky")) as manager:
        checker = manager.health_checker
        checker.add_secrets([Secret(KEY)])
        manager.register_adapter("m", adapter("raiser", raises))
        manager.register_adapter("m", adapter("quoter", quotes))
        metrics = attached(checker)
        report = await checker.check_all_models_with_timeout(["m"], manager.model_adapters)

    # Redaction happens in the checker: every error is already scrubbed...
    for result in report.results():
        assert result.status is ProbeStatus.UNHEALTHY
        error = result.error or ""
        assert KEY not in error and SIM_KEY not in error
        assert "***" in error
    # ...and the exposition carries names and enums only, in both formats.
    for accept in (None, OPENMETRICS):
        body, _ = metrics.render(accept)
        text = body.decode()
        assert KEY not in text and SIM_KEY not in text and "rhtestkey" not in text
    assert results(metrics, "m", "leaky", "unhealthy", "auth") == 1
    assert results(metrics, "m", "raiser", "unhealthy", "exception") == 1
    assert results(metrics, "m", "quoter", "unhealthy", "auth") == 1


async def test_the_app_serves_metrics_that_follow_its_checks() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    async with running_service() as service:
        service.sim.set_behavior("anthropic", mode="status", status=500)
        await service.client.get("/v1/health/")
        response = await service.client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(response.text)}
        up = {
            (s.labels["model"], s.labels["provider"]): s.value
            for s in families["router_health_adapter_up"].samples
        }
        assert up[("claude-3-haiku", "anthropic")] == 0.0
        assert up[("gpt-4", "openai")] == 1.0
        runs = [s for s in families["router_health_runs"].samples
                if s.name == "router_health_runs_total"]
        assert [(s.labels["strategy"], s.labels["status"], s.value) for s in runs] == [
            ("concurrent", "degraded", 1.0)
        ]

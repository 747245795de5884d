"""Cost and abuse: recent results and caps on probes in flight.

Every probe may be a billed call, so the service bounds how many a burst of
requests can cause: a young enough result is served instead of a new probe
(``min_interval``), and probes queue for a global and a per-provider slot.
(Identical concurrent requests sharing one run: tests/api/test_singleflight.py.)
Checker-level tests run on Trio's MockClock (exact, deterministic); the
over-the-wire one uses the simulator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from adapters import Adapter, CallableAdapter, FailureKind
from service import CheckerSettings, ConfigError, HealthChecker, parse_config
from service.engine.limits import ProbeSlots
from tests.support.fakes import adapter, settings
from tests.support.served import PROVIDERS, running_service

# -- helpers -------------------------------------------------------------------------------


class Meter:
    """Counts calls and how many run at once, per provider name."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.running: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.peak_total = 0

    def adapter(self, provider: str, seconds: float = 1.0, healthy: bool = True) -> CallableAdapter:
        async def check() -> bool:
            self.calls[provider] = self.calls.get(provider, 0) + 1
            self.running[provider] = self.running.get(provider, 0) + 1
            self.peak[provider] = max(self.peak.get(provider, 0), self.running[provider])
            self.peak_total = max(self.peak_total, sum(self.running.values()))
            try:
                await trio.sleep(seconds)
            finally:
                self.running[provider] -= 1
            return healthy

        return adapter(provider, check)


# -- min_interval ---------------------------------------------------------------------------------


async def test_a_result_younger_than_min_interval_is_served_marked_cached_with_its_age(
    autojump_clock: trio.testing.MockClock,
) -> None:
    meter = Meter()
    checker = HealthChecker(settings(min_interval=10.0))
    plan: dict[str, list[Adapter]] = {"gpt-4": [meter.adapter("openai", 1.0, healthy=False)]}
    first = await checker.run(plan)
    await trio.sleep(4)
    second = await checker.run(plan)
    await trio.sleep(6)  # 11 s after the first probe finished: too old
    third = await checker.run(plan)

    assert meter.calls == {"openai": 2}
    fresh, cached, refreshed = (r.models["gpt-4"].results["openai"] for r in (first, second, third))
    assert not fresh.cached and not refreshed.cached
    assert cached.cached and cached.cached_age == pytest.approx(4.0)
    assert cached.status == fresh.status and cached.error == fresh.error  # an unhealthy verdict too
    details = cached.to_dict()
    assert details["cached"] is True and details["age_s"] == pytest.approx(4.0)
    assert "cached" not in fresh.to_dict()
    assert second.execution_time == pytest.approx(0.0)  # nothing went upstream


async def test_per_provider_min_interval_overrides_the_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    meter = Meter()
    checker = HealthChecker(
        settings(min_interval=0.0, adapter_min_interval={("gpt-4", "slow-to-change"): 60.0})
    )
    plan: dict[str, list[Adapter]] = {
        "gpt-4": [meter.adapter("slow-to-change"), meter.adapter("always-probe")]
    }
    for _ in range(3):
        await checker.run(plan)
    assert meter.calls == {"slow-to-change": 1, "always-probe": 3}


async def test_budget_verdicts_are_not_remembered_and_measurements_bypass_the_cache(
    autojump_clock: trio.testing.MockClock,
) -> None:
    meter = Meter()
    checker = HealthChecker(settings(min_interval=60.0))
    plan: dict[str, list[Adapter]] = {"gpt-4": [meter.adapter("openai", 5.0)]}
    cut_short = await checker.run(plan, timeout=1.0)  # the run's budget, not the provider's fault
    assert cut_short.models["gpt-4"].results["openai"].failure is FailureKind.DEADLINE
    await checker.run(plan)  # so this one probes
    await checker.run(plan)  # and this one is served
    await checker.run(plan, use_cache=False)  # a measurement probes regardless
    assert meter.calls == {"openai": 3}


async def test_the_recheck_pass_gives_a_second_opinion_not_the_cached_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outcomes = iter([None, True])  # first call hangs, the re-check answers

    async def flaky() -> bool:
        if next(outcomes) is None:
            await trio.sleep_forever()
        return True

    checker = HealthChecker(settings(min_interval=60.0, adapter_timeout=1.0, recheck_timeouts=True))
    report = await checker.run({"gpt-4": [CallableAdapter("flaky", flaky)]})
    assert report.models["gpt-4"].results["flaky"].healthy
    assert report.models["gpt-4"].results["flaky"].fallback  # from the re-check


async def test_min_interval_from_config_over_the_wire_sends_one_probe_per_interval() -> None:
    async with running_service(checks={"min_interval": 60}) as service:
        first = (await service.client.get("/v1/health/")).json()
        second = (await service.client.get("/v1/health/models/gpt-4")).json()
        requests = {name: service.sim.stats(name).requests for name in PROVIDERS}
        measured = (await service.client.get("/v1/health/performance")).json()
    assert requests == dict.fromkeys(PROVIDERS, 1)
    assert "cached" not in first["details"]["gpt-4"]["openai"]
    assert second["details"]["openai"]["cached"] is True
    assert second["details"]["openai"]["age_s"] >= 0
    assert measured["concurrent_result_count"] == 4  # measured for real, not served


# -- caps on probes in flight ----------------------------------------------------------------------


async def test_the_global_cap_bounds_probes_in_flight_across_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    meter = Meter()
    checker = HealthChecker(settings(max_concurrent_probes=3))
    plans: list[dict[str, list[Adapter]]] = [
        {f"m{run}": [meter.adapter(f"p{run}-{i}") for i in range(5)]} for run in range(2)
    ]
    async with trio.open_nursery() as nursery:
        for plan in plans:
            nursery.start_soon(lambda plan=plan: checker.run(plan))
    assert meter.peak_total == 3
    assert sum(meter.calls.values()) == 10
    assert checker.slots.statistics()["*"] == {"in_use": 0, "limit": 3, "queued": 0}


async def test_a_provider_cap_applies_to_its_name_across_models_and_spares_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    meter = Meter()
    checker = HealthChecker(settings(provider_max_concurrent={"openai": 1}))
    plan: dict[str, list[Adapter]] = {
        f"model-{i}": [meter.adapter("openai"), meter.adapter(f"other-{i}")] for i in range(4)
    }
    report = await checker.run(plan)
    assert meter.peak["openai"] == 1
    assert all(meter.peak[f"other-{i}"] == 1 for i in range(4))
    assert meter.peak_total == 5  # four others at once, plus one openai
    assert report.execution_time == pytest.approx(4.0)  # openai one at a time
    queued = sorted(r.queued_ms for r in report.results() if r.provider == "openai")
    assert queued == pytest.approx([0.0, 1000.0, 2000.0, 3000.0])


async def test_waiting_for_a_slot_counts_against_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    meter = Meter()
    checker = HealthChecker(settings(max_concurrent_probes=1, adapter_timeout=6.0))
    hog = meter.adapter("hog", 10.0)
    hog.timeout = 20.0  # holds the only slot past the other's deadline
    starved = meter.adapter("starved", 1.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(checker.run, {"gpt-4": [hog]})
        await trio.testing.wait_all_tasks_blocked()  # the hog holds the slot
        report = await checker.run({"gpt-4": [starved]})
    result = report.models["gpt-4"].results["starved"]
    assert result.status.value == "timeout"
    assert result.failure is FailureKind.RESOURCE  # our capacity, not the provider
    assert result.error is not None and "no probe slot free within 6.00 s" in result.error
    assert result.queued_ms == pytest.approx(6000.0)
    assert result.latency_ms == pytest.approx(6000.0)  # its deadline held while queued
    assert meter.calls == {"hog": 1}
    # A probe that never ran says nothing about its provider: not remembered.
    assert checker.recent.fresh("gpt-4", starved) is None


async def test_a_slot_granted_late_leaves_the_rest_of_the_deadline_to_the_probe(
    autojump_clock: trio.testing.MockClock,
) -> None:
    meter = Meter()
    checker = HealthChecker(settings(max_concurrent_probes=1, adapter_timeout=6.0))
    plan: dict[str, list[Adapter]] = {"gpt-4": [meter.adapter("a", 5.0), meter.adapter("b", 5.0)]}
    report = await checker.run(plan)
    first, second = sorted(report.results(), key=lambda r: r.queued_ms or 0.0)
    assert first.healthy and first.queued_ms == pytest.approx(0.0)
    assert second.failure is FailureKind.TIMEOUT
    assert second.error == "no answer within 6.00 s (adapter timeout 6 s)"
    assert second.queued_ms == pytest.approx(5000.0)
    assert report.execution_time == pytest.approx(6.0)  # not 10 s


async def test_a_shared_limiter_passed_in_wins_over_the_setting() -> None:
    limiter = trio.CapacityLimiter(7)
    checker = HealthChecker(settings(max_concurrent_probes=2), probe_limiter=limiter)
    assert checker.probe_limiter is limiter
    assert not HealthChecker(settings()).slots.active


def test_probe_slots_reject_a_cap_below_one() -> None:
    with pytest.raises(ValueError, match="max_concurrent for provider 'x' must be >= 1"):
        ProbeSlots(provider_caps={"x": 0})


# -- config ------------------------------------------------------------------------------------


def _config(checks: dict[str, Any] | None = None, **provider: Any) -> dict[str, Any]:
    entry = {"name": "local", "type": "ollama", **provider}
    return {"checks": checks or {}, "models": [{"name": "llama3", "providers": [entry]}]}


def test_cost_keys_load_into_the_checker_settings() -> None:
    document = {
        "checks": {"min_interval": 15, "max_concurrent_probes": 50},
        "models": [
            {"name": "gpt-4", "providers": [
                {"name": "openai", "type": "ollama", "max_concurrent": 4, "min_interval": 0},
            ]},
            {"name": "gpt-4o", "providers": [{"name": "openai", "type": "ollama"}]},
        ],
    }
    config = parse_config(document, env={})
    settings = CheckerSettings.from_config(config.checks)
    assert settings.min_interval == 15.0
    assert settings.max_concurrent_probes == 50
    assert settings.provider_max_concurrent == {"openai": 4}
    assert settings.adapter_min_interval == {("gpt-4", "openai"): 0.0}
    assert config.models[0].providers[0].max_concurrent == 4


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (_config({"min_interval": -1}),
         "checks.min_interval: must be a finite number of seconds >= 0 (0 = off), got -1"),
        (_config({"min_interval": "5s"}), "checks.min_interval: must be a number, got '5s'"),
        (_config({"max_concurrent_probes": -2}),
         "checks.max_concurrent_probes: must be at least 0 (0 = unlimited), got -2"),
        (_config({"max_concurrent_probes": 2.5}), "checks.max_concurrent_probes: must be an integer"),
        (_config(max_concurrent=0),
         "providers[0].max_concurrent: must be at least 1 (leave it out for no cap), got 0"),
        (_config(max_concurrent=True), "providers[0].max_concurrent: must be an integer, got True"),
        (_config(min_interval=float("inf")),
         "providers[0].min_interval: must be a finite number of seconds >= 0"),
        (
            {"models": [
                {"name": "a", "providers": [{"name": "p", "type": "ollama", "max_concurrent": 2}]},
                {"name": "b", "providers": [{"name": "p", "type": "ollama", "max_concurrent": 3}]},
            ]},
            "models[1] (b).providers[0].max_concurrent: 3 conflicts with 2 at models[0] (a).providers[0]",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_cost_key_mistakes_get_one_clear_line(document: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(document, source="<test>", env={})
    message = str(info.value)
    assert expected in message
    assert len(message.splitlines()) == 1


def test_invalid_checker_settings_are_rejected() -> None:
    bad: list[Callable[[], object]] = [
        lambda: CheckerSettings(min_interval=-1),
        lambda: CheckerSettings(max_concurrent_probes=-1),
        lambda: CheckerSettings(provider_max_concurrent={"p": 0}),
        lambda: CheckerSettings(adapter_min_interval={("m", "p"): float("nan")}),
    ]
    for make in bad:
        with pytest.raises(ValueError):
            make()

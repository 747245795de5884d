"""Passive health: verdicts from the router's reported traffic, probes only when quiet.

PassiveHealth itself is tested on Trio's MockClock (exact windows); the
strategy end to end runs through a real config and AdapterManager against the
real simulator over loopback, reading what reached the upstream from its
per-provider stats.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from adapters import CallableAdapter, FailureKind
from service import (
    AdapterManager,
    CheckerSettings,
    HealthChecker,
    HealthReport,
    HealthStatus,
    PassivePolicy,
    ProbeResult,
    ProbeStatus,
    UnknownModelError,
    parse_config,
)
from service.engine.passive import MAX_OBSERVATIONS, PassiveHealth
from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support import eventually
from tests.support.configs import problems
from tests.support.fakes import healthy

KEY = "router-literal-key-0042"  # not key-shaped: only known-key redaction can hide it


def watched(window: float = 10.0, max_error_rate: float = 0.5) -> tuple[PassiveHealth, Any]:
    passive = PassiveHealth()
    adapter = CallableAdapter("p", healthy, adapter_name="PAdapter")
    passive.watch("m", adapter, PassivePolicy(window, max_error_rate))
    return passive, adapter


# -- PassiveHealth, unit (MockClock) ----------------------------------------------------------


async def test_no_traffic_means_no_verdict(mock_clock: trio.testing.MockClock) -> None:
    passive, adapter = watched()
    assert passive.watches("m", "p")
    assert passive.verdict("m", adapter) is None  # the checker probes instead


async def test_traffic_in_the_window_is_healthy_with_samples_and_median(
    mock_clock: trio.testing.MockClock,
) -> None:
    passive, adapter = watched()
    assert passive.observe("m", "p", ok=True, latency_ms=10)
    assert passive.observe("m", "p", ok=True, latency_ms=30.0)
    assert passive.observe("m", "p", ok=False, latency_ms=5000, http_status=502)  # 1 of 4 failed
    assert passive.observe("m", "p", ok=True, latency_ms=20)
    verdict = passive.verdict("m", adapter)
    assert verdict is not None
    assert verdict.status is ProbeStatus.HEALTHY
    assert (verdict.model, verdict.provider, verdict.adapter) == ("m", "p", "PAdapter")
    assert (verdict.source, verdict.samples) == ("passive", 4)
    assert verdict.latency_ms == 20.0  # median of the successful requests only
    assert verdict.error is None and verdict.failure is None
    assert verdict.to_dict()["source"] == "passive" and verdict.to_dict()["samples"] == 4


async def test_failures_above_the_error_rate_are_unhealthy(mock_clock: trio.testing.MockClock) -> None:
    passive, adapter = watched()
    passive.observe("m", "p", ok=True, latency_ms=10)
    passive.observe("m", "p", ok=False, http_status=500, error="upstream exploded")
    passive.observe("m", "p", ok=False, http_status=429, error="slow down")
    verdict = passive.verdict("m", adapter)
    assert verdict is not None
    assert verdict.status is ProbeStatus.UNHEALTHY
    assert (verdict.http_status, verdict.failure) == (429, FailureKind.RATE_LIMITED)  # the last one
    assert verdict.error == "2 of 3 reported requests failed in the last 10 s; last: slow down"
    assert verdict.samples == 3 and verdict.latency_ms == 10


async def test_half_failed_is_still_healthy_at_the_default_rate(
    mock_clock: trio.testing.MockClock,
) -> None:
    passive, adapter = watched(max_error_rate=0.5)
    passive.observe("m", "p", ok=True)
    passive.observe("m", "p", ok=False, http_status=500)
    verdict = passive.verdict("m", adapter)
    assert verdict is not None and verdict.healthy and verdict.latency_ms is None
    strict, adapter2 = watched(max_error_rate=0.0)
    strict.observe("m", "p", ok=True)
    strict.observe("m", "p", ok=False)
    assert strict.verdict("m", adapter2).status is ProbeStatus.UNHEALTHY  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("http_status", "failure"),
    [
        (429, FailureKind.RATE_LIMITED),
        (401, FailureKind.AUTH),
        (403, FailureKind.AUTH),
        (500, FailureKind.HTTP_STATUS),
        (404, FailureKind.HTTP_STATUS),
        (None, FailureKind.CONNECT),
    ],
)
async def test_reported_failures_are_classified(
    mock_clock: trio.testing.MockClock, http_status: int | None, failure: FailureKind
) -> None:
    passive, adapter = watched()
    passive.observe("m", "p", ok=False, http_status=http_status)
    verdict = passive.verdict("m", adapter)
    assert verdict is not None
    assert (verdict.status, verdict.failure, verdict.http_status) == (
        ProbeStatus.UNHEALTHY, failure, http_status)


async def test_a_reported_timeout_is_a_timeout(mock_clock: trio.testing.MockClock) -> None:
    passive, adapter = watched()
    passive.observe("m", "p", ok=False, failure="timeout", error="no answer in 30 s")
    verdict = passive.verdict("m", adapter)
    assert verdict is not None
    assert (verdict.status, verdict.failure) == (ProbeStatus.TIMEOUT, FailureKind.TIMEOUT)
    # An explicit failure wins over the status-based guess.
    passive.observe("m", "p", ok=False, http_status=200, failure=FailureKind.BAD_BODY)
    verdict = passive.verdict("m", adapter)
    assert verdict is not None
    assert (verdict.status, verdict.failure, verdict.http_status) == (
        ProbeStatus.UNHEALTHY, FailureKind.BAD_BODY, 200)


async def test_traffic_older_than_the_window_is_dropped(mock_clock: trio.testing.MockClock) -> None:
    passive, adapter = watched(window=10.0)
    passive.observe("m", "p", ok=False, http_status=500)
    mock_clock.jump(5)
    passive.observe("m", "p", ok=True, latency_ms=7)
    assert passive.verdict("m", adapter).status is ProbeStatus.HEALTHY  # type: ignore[union-attr]
    assert passive.verdict("m", adapter).samples == 2  # type: ignore[union-attr]
    mock_clock.jump(6)  # t=11: the failure (t=0) is out, the success (t=5) in
    verdict = passive.verdict("m", adapter)
    assert verdict is not None and (verdict.samples, verdict.healthy) == (1, True)
    mock_clock.jump(5)  # t=16: quiet again
    assert passive.verdict("m", adapter) is None


async def test_at_most_max_observations_are_kept(mock_clock: trio.testing.MockClock) -> None:
    passive, adapter = watched()
    for _ in range(10):
        passive.observe("m", "p", ok=False, http_status=500)
    for _ in range(MAX_OBSERVATIONS):
        passive.observe("m", "p", ok=True, latency_ms=1)
    verdict = passive.verdict("m", adapter)
    assert verdict is not None
    assert verdict.samples == MAX_OBSERVATIONS
    assert verdict.healthy  # the 10 oldest (the failures) were pushed out


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ok": "yes"}, "ok must be true or false, got 'yes'"),
        ({"ok": 1}, "ok must be true or false, got 1"),
        ({"latency_ms": -1}, "latency_ms must be a finite number >= 0, got -1"),
        ({"latency_ms": math.nan}, "latency_ms must be a finite number >= 0, got nan"),
        ({"latency_ms": math.inf}, "latency_ms must be a finite number >= 0, got inf"),
        ({"latency_ms": True}, "latency_ms must be a finite number >= 0, got True"),
        ({"latency_ms": "12"}, "latency_ms must be a finite number >= 0, got '12'"),
        ({"http_status": 42}, "http_status must be an HTTP status 100..599, got 42"),
        ({"http_status": 600}, "http_status must be an HTTP status 100..599, got 600"),
        ({"http_status": "500"}, "http_status must be an HTTP status 100..599, got '500'"),
        ({"failure": "on_fire"}, "unknown failure 'on_fire'; expected one of http_status, auth"),
        ({"error": 123}, "error must be a string, got int"),
        ({"error": b"bytes"}, "error must be a string, got bytes"),
    ],
)
async def test_values_that_cannot_describe_a_request_are_refused(
    mock_clock: trio.testing.MockClock, changes: dict[str, Any], message: str
) -> None:
    passive, adapter = watched()
    report: dict[str, Any] = {"ok": False, **changes}
    with pytest.raises(ValueError) as info:
        passive.observe("m", "p", **report)
    assert str(info.value).startswith(message)
    assert passive.verdict("m", adapter) is None  # nothing kept


async def test_reports_for_other_adapters_are_ignored(mock_clock: trio.testing.MockClock) -> None:
    passive, adapter = watched()
    assert passive.observe("m", "not-passive", ok=False, http_status=500) is False
    assert passive.observe("other-model", "p", ok=False) is False
    assert not passive.watches("m", "not-passive")
    assert passive.verdict("m", CallableAdapter("not-passive", healthy)) is None
    assert passive.verdict("m", adapter) is None  # and nothing leaked into "p"
    # A different adapter object under the watched name (a replaced one) gets no verdict.
    passive.observe("m", "p", ok=True)
    assert passive.verdict("m", CallableAdapter("p", healthy)) is None
    assert passive.verdict("m", adapter) is not None


async def test_a_reported_error_is_redacted_and_shortened(mock_clock: trio.testing.MockClock) -> None:
    checker = HealthChecker()
    checker.add_secrets([KEY])
    adapter = CallableAdapter("p", healthy)
    checker.passive.watch("m", adapter, PassivePolicy(max_error_rate=0.0))
    assert checker.observe("m", "p", ok=False, http_status=401,
                           error=f"401: invalid key {KEY} " + "x" * 500)
    verdict = checker.passive.verdict("m", adapter)
    assert verdict is not None and verdict.error is not None
    assert KEY not in verdict.error and "***" in verdict.error
    assert verdict.failure is FailureKind.AUTH
    last = verdict.error.split("; last: ", 1)[1]
    assert len(last) == 200


# -- end to end: config + AdapterManager + the real simulator --------------------------------


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    return [
        SimProvider("router", "openai", KEY, ["sim-model"], Behavior(latency=0.01)),
        SimProvider("active", "openai-compatible", None, ["sim-model"], Behavior(latency=0.01)),
    ]


def passive_config(
    sim: Simulator, *, checks: dict[str, Any] | None = None, **entry_changes: Any
) -> Any:
    entries = {e["name"]: e for e in sim.provider_entries()}
    router = {**entries["router"], "probe": "passive", **entry_changes}
    return parse_config(
        {
            "checks": {"adapter_timeout": 5, "recheck_timeouts": False, **(checks or {})},
            "models": [
                {"name": "m", "providers": [router]},
                {"name": "n", "providers": [entries["active"]]},
            ],
        },
        env={},
    )


async def check(manager: AdapterManager, *models: str) -> HealthReport:
    return await manager.health_checker.check_all_models_with_timeout(
        list(models or ["m"]), manager.model_adapters
    )


async def test_a_passive_adapter_costs_nothing_while_traffic_flows(sim: Simulator) -> None:
    async with AdapterManager.from_config(passive_config(sim)) as manager:
        for latency in (40, 10, 20):
            assert manager.observe("m", "router", ok=True, latency_ms=latency, http_status=200)
        first = await check(manager, "m", "n")
        second = await check(manager)
        for _ in range(5):
            manager.observe("m", "router", ok=False, http_status=503, error=f"bad key {KEY}")
        failing = await check(manager)
    stats = sim.stats("router")
    assert (stats.requests, stats.list_probes, stats.completion_probes) == (0, 0, 0)
    assert sim.stats("active").list_probes == 1  # the ordinary adapter was probed
    for report in (first, second):
        result = report.models["m"].results["router"]
        assert (result.status, result.source, result.samples) == (ProbeStatus.HEALTHY, "passive", 3)
        assert result.latency_ms == 20
        assert report.to_dict()["details"]["m"]["router"]["source"] == "passive"
    assert first.models["n"].results["active"].source is None
    bad = failing.models["m"].results["router"]
    assert (bad.status, bad.failure, bad.http_status, bad.samples) == (
        ProbeStatus.UNHEALTHY, FailureKind.HTTP_STATUS, 503, 8)
    assert bad.error is not None and KEY not in bad.error and "***" in bad.error
    assert failing.models["m"].status is HealthStatus.UNHEALTHY


async def test_a_quiet_passive_adapter_is_probed_with_the_free_list(sim: Simulator) -> None:
    async with AdapterManager.from_config(passive_config(sim)) as manager:
        report = await check(manager)
    result = report.models["m"].results["router"]
    assert result.healthy and result.source is None and result.samples is None
    assert result.http_status == 200
    stats = sim.stats("router")
    assert (stats.list_probes, stats.completion_probes) == (1, 0)


async def test_traffic_that_ages_out_brings_the_probe_back(sim: Simulator) -> None:
    # The window's passing is what is under test: real time, so the test
    # waits (bounded polling) until the traffic has aged out, not a fixed time.
    config = passive_config(sim, checks={"passive_window": 1.0})
    async with AdapterManager.from_config(config) as manager:
        manager.observe("m", "router", ok=True, latency_ms=5)
        busy = await check(manager)
        assert sim.stats("router").requests == 0
        router = manager.model_adapters["m"][0]
        await eventually(lambda: manager.health_checker.passive.verdict("m", router) is None)
        quiet = await check(manager)
    assert busy.models["m"].results["router"].source == "passive"
    result = quiet.models["m"].results["router"]
    assert result.healthy and result.source is None
    stats = sim.stats("router")
    assert (stats.list_probes, stats.completion_probes) == (1, 0)


async def test_a_completion_fallback_sends_a_completion_when_quiet(sim: Simulator) -> None:
    config = passive_config(sim, passive_fallback="completion")
    assert config.models[0].providers[0].active_probe == "completion"
    async with AdapterManager.from_config(config) as manager:
        report = await check(manager)
        manager.observe("m", "router", ok=True)
        await check(manager)
    assert report.models["m"].results["router"].healthy
    stats = sim.stats("router")
    assert (stats.list_probes, stats.completion_probes, stats.max_tokens_requested) == (0, 1, 1)


async def test_mostly_429s_with_transient_rate_limits_is_degraded(sim: Simulator) -> None:
    config = passive_config(sim, checks={"transient": ["rate_limited"]})
    async with AdapterManager.from_config(config) as manager:
        manager.observe("m", "router", ok=True, latency_ms=12)
        for _ in range(3):
            manager.observe("m", "router", ok=False, http_status=429, error="rate limited")
        report = await check(manager)
    result = report.models["m"].results["router"]
    assert (result.status, result.failure, result.source, result.samples) == (
        ProbeStatus.DEGRADED, FailureKind.RATE_LIMITED, "passive", 4)
    assert report.models["m"].status is HealthStatus.DEGRADED
    assert report.to_dict()["models"]["m"]["providers"] == {"router": "degraded"}
    assert sim.stats("router").requests == 0


async def test_manager_observe_names_what_it_does_not_know(sim: Simulator) -> None:
    manager = AdapterManager.from_config(passive_config(sim))
    with pytest.raises(UnknownModelError):
        manager.observe("no-such-model", "router", ok=True)
    with pytest.raises(ValueError, match=r"model 'm' has no provider named 'nope'; its providers: router"):
        manager.observe("m", "nope", ok=True)
    assert manager.observe("n", "active", ok=False, http_status=500) is False  # not passive
    with pytest.raises(ValueError, match="http_status must be an HTTP status"):
        manager.observe("m", "router", ok=False, http_status=42)


async def test_reported_traffic_outranks_an_old_retry_after_hold(sim: Simulator) -> None:
    async with AdapterManager.from_config(passive_config(sim)) as manager:
        sim.set_behavior("router", mode="rate_limited", retry_after=60)
        idle = await check(manager)  # quiet: the fallback probe is refused
        assert idle.models["m"].results["router"].failure is FailureKind.RATE_LIMITED
        sim.set_behavior("router", mode="ok")
        for _ in range(5):  # the router's own requests succeed again
            manager.observe("m", "router", ok=True, latency_ms=15, http_status=200)
        report = await check(manager)
    result = report.models["m"].results["router"]
    assert sim.stats("router").requests == 1
    assert (result.status, result.source, result.samples) == (ProbeStatus.HEALTHY, "passive", 5)


async def test_register_adapter_can_make_a_custom_adapter_passive(sim: Simulator) -> None:
    calls: list[int] = []

    async def counted() -> bool:
        calls.append(1)
        return True

    manager = AdapterManager.from_config(passive_config(sim))
    custom = CallableAdapter("custom", counted)
    manager.register_adapter("n", custom, passive=PassivePolicy(window=30))
    assert manager.observe("n", "custom", ok=False, http_status=500)
    report = await manager.health_checker.check_all_models_with_timeout(
        ["n"], {"n": [custom]}
    )
    result: ProbeResult = report.models["n"].results["custom"]
    assert (result.status, result.source, calls) == (ProbeStatus.UNHEALTHY, "passive", [])


async def test_checker_settings_transient_applies_to_passive_timeouts(
    mock_clock: trio.testing.MockClock,
) -> None:
    checker = HealthChecker(CheckerSettings(transient=frozenset({"timeout"})))
    adapter = CallableAdapter("p", healthy)
    checker.passive.watch("m", adapter)
    checker.observe("m", "p", ok=False, failure="timeout")
    report = await checker.run({"m": [adapter]})
    assert report.models["m"].results["p"].status is ProbeStatus.DEGRADED


# -- config ----------------------------------------------------------------------------------

MODEL = '[[models]]\nname = "m"\n[[models.providers]]\nname = "p"\ntype = "ollama"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MODEL + 'probe = "passive"\npassive_fallback = "chat"\n',
         "models[0] (m).providers[0].passive_fallback: must be one of models, completion "
         "(the probe sent while the router reports no traffic), got 'chat'"),
        (MODEL + 'passive_fallback = "models"\n',
         'models[0] (m).providers[0].passive_fallback: only applies with probe = "passive"'),
        ("[checks]\npassive_window = 0\n" + MODEL,
         "checks.passive_window: must be a finite number of seconds > 0, got 0"),
        ("[checks]\npassive_error_rate = 1.5\n" + MODEL,
         "checks.passive_error_rate: must be a fraction of requests from 0 to 1, got 1.5"),
        ("[checks]\npassive_error_rate = -0.1\n" + MODEL,
         "checks.passive_error_rate: must be a fraction of requests from 0 to 1, got -0.1"),
        (MODEL + 'probe = "passive"\npassive_window = 0\n',
         "models[0] (m).providers[0].passive_window: must be a finite number of seconds > 0, got 0"),
    ],
    ids=["fallback-chat", "fallback-not-passive", "window-0", "rate-1.5", "rate-negative",
         "provider-window-0"],
)
def test_each_passive_config_mistake_is_one_precise_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    message = problems(text, tmp_path)
    assert message == f"{tmp_path / 'providers.toml'}: {expected}"


def test_passive_config_reaches_the_manager() -> None:
    config = parse_config(
        {
            "checks": {"passive_window": 7, "passive_error_rate": 0.25},
            "models": [{"name": "m", "providers": [
                {"name": "p", "type": "ollama", "probe": "passive"},
                {"name": "q", "type": "ollama"},
            ]}],
        },
        env={},
    )
    p, q = config.models[0].providers
    assert (p.passive, p.active_probe, q.passive) == (True, "models", False)
    manager = AdapterManager.from_config(config)
    passive = manager.health_checker.passive
    assert passive.watches("m", "p") and not passive.watches("m", "q")
    policy = passive._policies[("m", "p")][1]
    assert (policy.window, policy.max_error_rate) == (7, 0.25)

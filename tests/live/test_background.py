"""Background checks: schedules on Trio's MockClock, config, and the app serving from state."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

from adapters import CallableAdapter
from service import CheckerSettings, ConfigError, HealthChecker, parse_config
from service.api.app import EXTENSION_KEY, get_health_state
from service.config import CheckSchedule
from service.live.background import BackgroundChecker, next_delay
from service.live.state import HealthState
from tests.support import eventually
from tests.support.app import get_json, make_app, serving
from tests.support.fakes import Probe, adapter, settings


class Timed:
    """A probe that records the Trio time of each call and answers from ``outcomes``."""

    def __init__(self, outcomes: list[bool], seconds: float = 0.0) -> None:
        self.outcomes = outcomes
        self.seconds = seconds
        self.times: list[float] = []

    async def __call__(self) -> bool:
        self.times.append(trio.current_time())
        await trio.sleep(self.seconds)
        return self.outcomes[min(len(self.times), len(self.outcomes)) - 1]


async def run_for(
    seconds: float, fleet: list[tuple[str, CallableAdapter]], schedule: CheckSchedule,
    *, checker: HealthChecker | None = None, seed: int = 1,
) -> HealthState:
    state = HealthState(lambda model, provider: schedule)
    background = BackgroundChecker(
        checker or HealthChecker(settings()), fleet, state, rng=random.Random(seed)
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(background.run)
        await trio.sleep(seconds)
        background.stop()
    await background.wait_stopped()
    return state


async def test_probes_every_interval_without_jitter(autojump_clock: trio.testing.MockClock) -> None:
    probe = Timed([True], seconds=0.5)
    start = trio.current_time()
    state = await run_for(
        35, [("gpt-4", adapter("openai", probe))], CheckSchedule(interval=10, jitter=0)
    )
    # The interval runs from the end of one probe to the start of the next.
    assert [t - start for t in probe.times] == pytest.approx([0, 10.5, 21, 31.5])
    assert len(state.history("gpt-4", "openai")) == 4


async def test_unhealthy_and_changing_adapters_use_the_fast_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # healthy, then a blip that does not flip yet (changing), then down for good.
    probe = Timed([True, False, False, False])
    start = trio.current_time()
    schedule = CheckSchedule(
        interval=10, unhealthy_interval=2, jitter=0, unhealthy_threshold=2, healthy_threshold=2
    )
    state = await run_for(15, [("gpt-4", adapter("openai", probe))], schedule)
    assert [t - start for t in probe.times] == pytest.approx([0, 10, 12, 14])
    current = state.get("gpt-4", "openai")
    assert current is not None and current.reported.value == "unhealthy"


async def test_jitter_stays_in_bounds_and_spreads_probes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    schedule = CheckSchedule(interval=10, jitter=0.2)
    rng = random.Random(7)
    delays = [next_delay(schedule, fast=False, rng=rng) for _ in range(1000)]
    assert all(8 <= d <= 12 for d in delays)
    assert min(delays) < 8.2 and max(delays) > 11.8  # it really is spread
    probes = [Timed([True]) for _ in range(5)]
    fleet = [("gpt-4", adapter(f"p{i}", p)) for i, p in enumerate(probes)]
    start = trio.current_time()
    await run_for(100, fleet, schedule, seed=3)
    firsts = [p.times[0] - start for p in probes]
    assert all(0 <= t <= 2 for t in firsts)  # a first wait of [0, jitter] x interval
    assert len(set(firsts)) == 5  # none aligned
    for p in probes:
        gaps = [b - a for a, b in zip(p.times, p.times[1:], strict=False)]
        assert gaps and all(8 <= g <= 12 for g in gaps)


async def test_adapters_with_interval_zero_are_not_checked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = Timed([True])
    state = await run_for(50, [("gpt-4", adapter("openai", probe))], CheckSchedule(interval=0))
    assert probe.times == []
    assert state.get("gpt-4", "openai") is None


async def test_background_probes_share_the_checkers_min_interval_and_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    checker = HealthChecker(settings(min_interval=25, adapter_timeout=3))
    fast = Timed([True])
    hung = Timed([True], seconds=100)
    fleet = [("gpt-4", adapter("openai", fast)), ("gpt-4", adapter("slow", hung))]
    state = await run_for(45, fleet, CheckSchedule(interval=10, jitter=0), checker=checker)
    # min_interval 25 s: probes at 0 and ~30 (10, 20 served from the cache, not recorded).
    assert len(fast.times) == 2
    assert len(state.history("gpt-4", "openai")) == 2
    slow = state.get("gpt-4", "slow")
    assert slow is not None and slow.latest.failure is not None
    assert slow.latest.failure.value == "timeout"


# -- config -----------------------------------------------------------------------------


def config(checks: dict[str, Any], provider: dict[str, Any] | None = None) -> Any:
    entry = {"name": "local", "type": "ollama", "base_url": "http://127.0.0.1:9", **(provider or {})}
    return parse_config(
        {"checks": checks, "models": [{"name": "llama3", "providers": [entry]}]},
        source="t.toml", env={},
    )


def test_defaults_leave_background_checks_off() -> None:
    checks = config({}).checks
    assert not checks.background_enabled
    assert checks.schedule == CheckSchedule()
    assert CheckSchedule().jitter == 0.1


def test_schedule_keys_and_provider_overrides() -> None:
    checks = config(
        {"interval": 30, "jitter": 0.2, "unhealthy_interval": 5, "healthy_threshold": 2,
         "unhealthy_threshold": 3},
        {"interval": 60, "max_age": 90},
    ).checks
    assert checks.background_enabled
    own = checks.schedule_for("llama3", "local")
    assert own == CheckSchedule(60, 0.2, 5, 2, 3, 90)
    assert own.served_max_age == 90
    default = checks.schedule_for("llama3", "other")
    assert default.fast_interval == 5 and default.served_max_age == 60  # 2 x interval
    assert CheckSchedule(interval=10).fast_interval == 10
    # One provider on its own turns background checks on.
    assert config({}, {"interval": 15}).checks.background_enabled


def test_bad_schedule_values_get_one_line_each() -> None:
    with pytest.raises(ConfigError) as info:
        config(
            {"interval": -1, "jitter": 1.5, "unhealthy_interval": 0, "healthy_threshold": 0,
             "unhealthy_threshold": "2", "max_age": float("inf")},
            {"jitter": -0.1},
        )
    lines = str(info.value).splitlines()
    assert len(lines) == 7, lines
    assert any("checks.interval: must be a finite number of seconds >= 0" in x for x in lines)
    assert any("checks.jitter: must be a fraction of the interval from 0 to 1" in x for x in lines)
    assert any("checks.unhealthy_interval: must be a finite number of seconds > 0" in x
               for x in lines)
    assert any("checks.healthy_threshold: must be an integer >= 1" in x for x in lines)
    assert any("checks.unhealthy_threshold: must be an integer, got '2'" in x for x in lines)
    assert any("checks.max_age:" in x for x in lines)
    assert any("providers[0].jitter:" in x for x in lines)


# -- the app ------------------------------------------------------------------------------


async def test_app_serves_from_state_and_fresh_runs_live() -> None:
    openai, ollama = Probe([True]), Probe([False])
    fleet = {"gpt-4": [adapter("openai", openai)], "llama3": [adapter("ollama", ollama)]}
    # No jitter: the first probes run at startup; the next ones are an hour away.
    app, _ = make_app(fleet, checks={"interval": 3600, "jitter": 0})
    health = app.extensions[EXTENSION_KEY].health
    async with serving(app) as client:
        await health.changes.wait_value(lambda n: n >= 2)
        assert (openai.calls, ollama.calls) == (1, 1)

        status, body = await get_json(client, "/v1/health/")
        assert status == 200 and body["status"] == "degraded"
        assert body["source"] == "background"
        assert body["details"]["gpt-4"]["openai"]["age_s"] >= 0
        assert body["models"]["llama3"]["status"] == "unhealthy"
        status, one = await get_json(client, "/v1/health/models/llama3")
        assert status == 503 and one["source"] == "background"
        status, listed = await get_json(client, "/v1/health/models")
        assert listed["source"] == "background" and len(listed["models"]) == 2
        response = await client.post("/v1/health/batch", json={"models": ["gpt-4"]})
        batch = await response.get_json()
        assert response.status_code == 200 and batch["source"] == "background"
        assert (openai.calls, ollama.calls) == (1, 1)  # nothing probed
        response = await client.post("/v1/health/batch", json={"models": ["gpt-4"], "fresh": True})
        assert (await response.get_json())["source"] == "live" and openai.calls == 2

        status, body = await get_json(client, "/v1/health/?fresh=true")
        assert body["source"] == "live" and "age_s" not in body["details"]["gpt-4"]["openai"]
        assert (openai.calls, ollama.calls) == (3, 2)
        status, one = await get_json(client, "/v1/health/models/gpt-4?fresh=1")
        assert status == 200 and one["source"] == "live" and openai.calls == 4
        assert health.changes.value == 6  # live results feed the state too

        status, history = await get_json(client, "/v1/health/history?model=gpt-4")
        assert status == 200
        [entry] = history["adapters"]
        assert entry["model"] == "gpt-4" and entry["provider"] == "openai"
        assert entry["status"] == "healthy" and len(entry["history"]) == 4
        assert set(entry["history"][0]) == {"checked_at", "status", "latency_ms", "failure"}
        status, everything = await get_json(client, "/v1/health/history")
        assert [a["provider"] for a in everything["adapters"]] == ["openai", "ollama"]
        status, missing = await get_json(client, "/v1/health/history?model=nope")
        assert status == 404 and missing["error"] == "unknown_model"
        status, missing = await get_json(client, "/v1/health/history?provider=nope")
        assert status == 404 and missing["error"] == "unknown_provider"


async def older_than_max_age(health: HealthState, max_age: float = 0.001) -> None:
    """Wait until gpt-4/openai's result is older than ``max_age`` (the configs below)."""

    def aged() -> bool:
        current = health.get("gpt-4", "openai")
        return current is not None and trio.current_time() - current.at > max_age

    await eventually(aged)


async def test_app_runs_live_when_the_state_is_stale() -> None:
    probe = Probe([True])
    # max_age far below the interval: the startup result is stale almost at once.
    app, _ = make_app({"gpt-4": [adapter("openai", probe)]},
                      checks={"interval": 3600, "jitter": 0, "max_age": 0.001})
    health = app.extensions[EXTENSION_KEY].health
    async with serving(app) as client:
        await health.changes.wait_value(1)
        await older_than_max_age(health)
        status, body = await get_json(client, "/v1/health/")
        assert status == 200 and body["source"] == "live"
        assert probe.calls == 2


async def test_app_without_background_checks_is_unchanged() -> None:
    probe = Probe([True])
    app, _ = make_app({"gpt-4": [adapter("openai", probe)]})
    assert app.extensions[EXTENSION_KEY].health is None
    async with serving(app) as client:
        status, body = await get_json(client, "/v1/health/")
        assert status == 200 and "source" not in body and probe.calls == 1
        status, body = await get_json(client, "/v1/health/history")
        assert status == 404 and body["error"] == "background_checks_off"


async def test_embedders_receive_transitions_until_shutdown() -> None:
    fleet = {"gpt-4": [adapter("openai", Probe([True]))], "llama3": [adapter("ollama", Probe([False]))]}
    app, _ = make_app(fleet, checks={"interval": 3600, "jitter": 0})
    health = get_health_state(app)
    assert health is not None
    updates = health.subscribe()
    async with serving(app):
        await health.changes.wait_value(lambda n: n >= 2)
    seen = {(t.model, t.previous, t.current.value) async for t in updates}  # ends at shutdown
    assert seen == {("gpt-4", None, "healthy"), ("llama3", None, "unhealthy")}


async def test_app_serves_stale_results_and_refreshes_them_once() -> None:
    release = trio.Event()
    calls = 0

    async def probe() -> bool:
        nonlocal calls
        calls += 1
        if calls > 1:
            await release.wait()  # the refresh stays in flight until released
        return True

    fleet = {"gpt-4": [adapter("openai", probe)]}
    app, _ = make_app(
        fleet,
        checks={"interval": 3600, "jitter": 0, "max_age": 0.001, "stale_while_revalidate": 3600},
    )
    state = app.extensions[EXTENSION_KEY]
    health = state.health
    async with serving(app) as client:
        await health.changes.wait_value(1)
        await older_than_max_age(health)  # the result's age is what is under test
        for _ in range(3):
            status, body = await get_json(client, "/v1/health/")
            assert status == 200 and body["source"] == "background" and body["stale"] == 1
            assert body["details"]["gpt-4"]["openai"]["stale"] is True
        status, one = await get_json(client, "/v1/health/models/gpt-4")
        assert status == 200 and one["source"] == "background" and one["stale"] == 1
        # Four stale answers, one refresh in flight: the provider saw two probes.
        assert calls == 2 and state.background.refreshes == 1
        release.set()
        await health.changes.wait_value(2)
        history = health.history("gpt-4", "openai")
        assert len(history) == 2


def test_degraded_keys_are_validated_one_line_each() -> None:
    with pytest.raises(ConfigError) as info:
        config(
            {"transient": ["rate_limited", "5xx"], "transient_limit": -1, "latency_slo_ms": 0,
             "slo_percentile": 101, "slo_window": 0, "stale_while_revalidate": -2,
             "passive_window": 0, "passive_error_rate": 2},
            {"transient": "timeout"},
        )
    lines = str(info.value).splitlines()
    assert len(lines) == 9, lines
    expected = [
        "checks.transient: unknown failure kind '5xx'; expected a list of 'rate_limited' and/or 'timeout'",
        "checks.transient_limit: must be an integer >= 0 (0 = never escalate)",
        "checks.latency_slo_ms: must be a finite number of milliseconds > 0",
        "checks.slo_percentile: must be a percentile above 0 and up to 100",
        "checks.slo_window: must be an integer >= 1",
        "checks.stale_while_revalidate: must be a finite number of seconds >= 0",
        "checks.passive_window: must be a finite number of seconds > 0",
        "checks.passive_error_rate: must be a fraction of requests from 0 to 1",
        "providers[0].transient: must be a list, got 'timeout'",
    ]
    for text in expected:
        assert any(text in line for line in lines), (text, lines)


def test_degraded_keys_reach_the_schedule_and_the_checker() -> None:
    checks = config(
        {"interval": 10, "transient": ["rate_limited"], "latency_slo_ms": 800, "slo_window": 30},
        {"transient": ["rate_limited", "timeout"], "transient_limit": 0},
    ).checks
    own = checks.schedule_for("llama3", "local")
    assert own.transient == ("rate_limited", "timeout") and own.transient_limit == 0
    assert own.latency_slo_ms == 800 and own.slo_window == 30 and own.slo_percentile == 95
    settings_ = CheckerSettings.from_config(checks)
    assert settings_.transient == frozenset({"rate_limited"})
    assert settings_.adapter_transient[("llama3", "local")] == frozenset({"rate_limited", "timeout"})
    with pytest.raises(ValueError, match="transient kinds must be among"):
        settings(transient=frozenset({"auth"}))
    with pytest.raises(ConfigError, match="list each kind once"):
        config({"transient": ["timeout", "timeout"]})

"""Adaptive (AIMD) probe limits, Retry-After holds and transient failures.

Controller and slot tests run on Trio's MockClock (exact, deterministic);
the checker tests at the end run against the real simulator over loopback
(no mocks), reading what reached the upstream from its per-provider stats.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from adapters import CallableAdapter, FailureKind
from adapters.base import ProbeOutcome
from service import (
    AdapterManager,
    HealthChecker,
    ProbeResult,
    ProbeStatus,
    parse_config,
)
from service.engine.cache import MAX_RETRY_AFTER, RecentResults
from service.engine.limits import INITIAL_LIMIT, PROBE_FACTOR, AdaptiveLimit, ProbeSlots, Signal
from service.engine.report import HealthStatus
from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support.configs import problems, sim_config
from tests.support.fakes import hang, healthy, probe_result, settings

# -- helpers -------------------------------------------------------------------------------


def controller(ceiling: int = 8, initial: int | None = None) -> AdaptiveLimit:
    """A controller starting at ``initial`` (default: the ceiling, past slow start)."""
    return AdaptiveLimit(
        trio.CapacityLimiter(ceiling), ceiling=ceiling, name="provider 'p'",
        initial=ceiling if initial is None else initial,
    )


def answer(limit: AdaptiveLimit, times: int, granted_at: float) -> None:
    for _ in range(times):
        limit.feedback(Signal.ANSWERED, granted_at)


def result(**changes: Any) -> ProbeResult:
    """A 429 with a Retry-After of 30 s, for model ``m`` and provider ``p``."""
    base: dict[str, Any] = {
        "model": "m", "provider": "p", "adapter": "PAdapter", "checked_at": 1.0,
        "http_status": 429, "error": "rate limited", "retry_after": 30.0,
    }
    return probe_result(ProbeStatus.UNHEALTHY, failure=FailureKind.RATE_LIMITED, **{**base, **changes})


# -- AdaptiveLimit ---------------------------------------------------------------------------


async def test_adaptive_limit_starts_where_told(mock_clock: trio.testing.MockClock) -> None:
    limit = controller(8)
    assert (limit.limit, limit.ceiling, limit.decreases, limit.increases) == (8, 8, 0, 0)
    assert limit.statistics() == {
        "in_use": 0, "limit": 8, "queued": 0, "ceiling": 8, "decreases": 0, "increases": 0,
    }
    with pytest.raises(ValueError, match="floor <= ceiling"):
        AdaptiveLimit(trio.CapacityLimiter(2), ceiling=2, name="x", floor=3)
    with pytest.raises(ValueError, match="floor <= ceiling"):
        AdaptiveLimit(trio.CapacityLimiter(2), ceiling=2, name="x", floor=0)


async def test_congestion_halves_the_limit_down_to_a_floor_of_one(
    mock_clock: trio.testing.MockClock,
) -> None:
    limit = controller(8)
    seen = []
    for _ in range(5):
        granted = trio.current_time()
        mock_clock.jump(1)  # the probe takes a second, then is refused
        limit.feedback(Signal.CONGESTED, granted)
        seen.append(limit.limit)
        mock_clock.jump(1)
    assert seen == [4, 2, 1, 1, 1]
    assert limit.decreases == 3  # staying at the floor is not a decrease
    assert limit.limiter.total_tokens == 1


async def test_one_burst_of_refusals_from_probes_in_flight_halves_once(
    mock_clock: trio.testing.MockClock,
) -> None:
    limit = controller(8)
    in_flight_since = trio.current_time()  # 30 probes granted at t=0
    for _ in range(30):
        mock_clock.jump(0.1)  # their 429s come back one after another
        limit.feedback(Signal.CONGESTED, in_flight_since)
    assert (limit.limit, limit.decreases) == (4, 1)
    # A probe granted after that decrease is news: a second episode.
    granted_later = trio.current_time()
    mock_clock.jump(1)
    limit.feedback(Signal.CONGESTED, granted_later)
    assert (limit.limit, limit.decreases) == (2, 2)
    # ...and the probes of the first burst still cannot shrink it further.
    limit.feedback(Signal.CONGESTED, in_flight_since)
    assert (limit.limit, limit.decreases) == (2, 2)


async def test_limit_answers_in_a_row_grow_the_limit_by_exactly_one(
    mock_clock: trio.testing.MockClock,
) -> None:
    limit = controller(8)
    limit.feedback(Signal.REFUSED, trio.current_time())
    assert limit.limit == 4
    mock_clock.jump(1)
    now = trio.current_time()
    answer(limit, 3, now)
    assert (limit.limit, limit.increases) == (4, 0)
    answer(limit, 1, now)  # the 4th answer in a row
    assert (limit.limit, limit.increases) == (5, 1)
    answer(limit, 4, now)
    assert limit.limit == 5  # now it takes 5
    answer(limit, 1, now)
    assert limit.limit == 6
    answer(limit, 6, now)
    assert (limit.limit, limit.increases) == (7, 3)
    # 8 is where the provider refused: growing back to it is a probe, tried
    # only after PROBE_FACTOR times as many answers.
    answer(limit, 7 * PROBE_FACTOR - 1, now)
    assert limit.limit == 7
    answer(limit, 1, now)
    assert (limit.limit, limit.increases) == (8, 4)
    answer(limit, 100, now)
    assert (limit.limit, limit.increases) == (8, 4)  # never above the ceiling
    assert limit.limiter.total_tokens == 8


async def test_congestion_resets_the_answers_in_a_row(mock_clock: trio.testing.MockClock) -> None:
    limit = controller(8)
    old = trio.current_time()
    mock_clock.jump(1)
    limit.feedback(Signal.CONGESTED, trio.current_time())  # -> 4, at t=1
    mock_clock.jump(1)
    now = trio.current_time()
    answer(limit, 3, now)
    # A refusal from a probe of the same episode does not shrink it again, but
    # it does break the run of answers.
    limit.feedback(Signal.CONGESTED, old)
    assert (limit.limit, limit.decreases) == (4, 1)
    answer(limit, 3, now)
    assert limit.limit == 4
    answer(limit, 1, now)
    assert limit.limit == 5


async def test_neutral_and_never_granted_feedback_change_nothing(
    mock_clock: trio.testing.MockClock,
) -> None:
    limit = controller(8)
    limit.feedback(Signal.CONGESTED, trio.current_time())
    mock_clock.jump(1)
    now = trio.current_time()
    answer(limit, 3, now)
    before = limit.statistics()
    for _ in range(10):
        limit.feedback(Signal.NEUTRAL, now)
        limit.feedback(Signal.CONGESTED, None)
        limit.feedback(Signal.ANSWERED, None)
        limit.feedback(Signal.NEUTRAL, None)
    assert limit.statistics() == before
    answer(limit, 1, now)  # the three answers before still count
    assert limit.limit == 5


async def test_lowering_the_limit_keeps_holders_and_blocks_newcomers(
    mock_clock: trio.testing.MockClock,
) -> None:
    limit = controller(4)
    limiter = limit.limiter
    releases = [trio.Event() for _ in range(4)]
    holding: list[int] = []
    done: list[int] = []
    newcomer_in = trio.Event()

    async def holder(i: int) -> None:
        async with limiter:
            holding.append(i)
            await releases[i].wait()
        done.append(i)

    async def newcomer() -> None:
        async with limiter:
            newcomer_in.set()

    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(holder, i)
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(holding) == [0, 1, 2, 3]
        limit.feedback(Signal.CONGESTED, 0.0)
        assert limit.limit == 2
        nursery.start_soon(newcomer)
        await trio.testing.wait_all_tasks_blocked()
        # Nobody in flight was interrupted; the newcomer queues.
        assert done == []
        assert limit.statistics()["in_use"] == 4
        assert limit.statistics()["queued"] == 1
        for i in range(2):  # 4 -> 2 held: still not below the new limit
            releases[i].set()
            await trio.testing.wait_all_tasks_blocked()
            assert not newcomer_in.is_set()
        releases[2].set()  # 1 held < 2
        await trio.testing.wait_all_tasks_blocked()
        assert newcomer_in.is_set()
        assert done == [0, 1, 2]
        releases[3].set()
    assert limiter.borrowed_tokens == 0


# -- ProbeSlots ------------------------------------------------------------------------------


async def test_adaptive_slots_give_every_provider_a_limit(mock_clock: trio.testing.MockClock) -> None:
    slots = ProbeSlots(adaptive=True, adaptive_ceiling=6, provider_caps={"capped": 3})
    assert slots.active
    free = slots.provider_limiter("free")
    # Slow start: INITIAL_LIMIT (4), or the ceiling when that is lower.
    assert free is not None and free.total_tokens == INITIAL_LIMIT == 4
    capped = slots.adaptive_limit("capped")
    assert capped is not None and (capped.limit, capped.ceiling) == (3, 3)
    assert slots.adaptive_limit("free") is not None
    assert slots.statistics() == {
        "free": {"in_use": 0, "limit": 4, "queued": 0, "ceiling": 6, "decreases": 0, "increases": 0},
        "capped": {"in_use": 0, "limit": 3, "queued": 0, "ceiling": 3, "decreases": 0, "increases": 0},
    }
    slots.feedback("free", Signal.CONGESTED, trio.current_time())
    stats = slots.statistics()
    assert (stats["free"]["limit"], stats["free"]["decreases"]) == (2, 1)
    assert stats["capped"]["limit"] == 3
    # The limiter is the one slot() queues on.
    async with slots.slot("free"):
        assert slots.statistics()["free"]["in_use"] == 1


async def test_non_adaptive_slots_have_no_controllers() -> None:
    slots = ProbeSlots(provider_caps={"capped": 3})
    assert slots.provider_limiter("free") is None
    assert slots.adaptive_limit("capped") is None
    slots.feedback("capped", Signal.CONGESTED, trio.current_time())
    assert slots.statistics() == {}  # made on demand, and nothing asked yet
    slots.provider_limiter("capped")
    assert slots.statistics() == {"capped": {"in_use": 0, "limit": 3, "queued": 0}}
    with pytest.raises(ValueError, match="adaptive_ceiling must be >= 1"):
        ProbeSlots(adaptive=True, adaptive_ceiling=0)


async def test_the_global_limit_shrinks_only_on_local_exhaustion(
    mock_clock: trio.testing.MockClock,
) -> None:
    slots = ProbeSlots(max_concurrent_probes=8, adaptive=True, adaptive_ceiling=4)
    assert slots.statistics()["*"]["ceiling"] == 8
    # A slow, refusing provider: many episodes of 429s and timeouts.
    for _ in range(5):
        granted = trio.current_time()
        mock_clock.jump(1)
        slots.feedback("slow", Signal.CONGESTED, granted)
    stats = slots.statistics()
    assert stats["*"]["limit"] == 8 and stats["*"]["decreases"] == 0  # everybody's share intact
    assert stats["slow"]["limit"] == 1
    assert slots.adaptive_limit("other").limit == 4  # type: ignore[union-attr]
    # EMFILE and friends: our own capacity, the global limit's business.
    granted = trio.current_time()
    mock_clock.jump(1)
    slots.feedback("other", Signal.CONGESTED, granted, local=True)
    stats = slots.statistics()
    assert (stats["*"]["limit"], stats["*"]["decreases"]) == (4, 1)
    assert stats["other"]["limit"] == 4  # says nothing about that provider
    # Answers from any provider grow it back.
    now = trio.current_time()
    for _ in range(4):
        slots.feedback("other", Signal.ANSWERED, now)
    assert slots.statistics()["*"]["limit"] == 5


async def test_checker_contains_one_slow_provider(autojump_clock: trio.testing.MockClock) -> None:
    async def refuse() -> ProbeOutcome:
        await trio.sleep(1)
        return ProbeOutcome.fail(FailureKind.RATE_LIMITED, "HTTP 429", http_status=429)

    async def exhausted() -> ProbeOutcome:
        await trio.sleep(1)
        return ProbeOutcome.fail(FailureKind.RESOURCE, "EMFILE: too many open files")

    checker = HealthChecker(
        settings(max_concurrent_probes=8, adaptive_concurrency=True, adaptive_ceiling=4,
                 adapter_timeout=5)
    )
    # Four models served by the same refusing provider: one episode, one halving.
    plan: dict[str, list[Any]] = {
        f"m{i}": [CallableAdapter("limited", refuse), CallableAdapter("fine", healthy)] for i in range(4)
    }
    plan["slow-model"] = [CallableAdapter("slow", hang)]
    report = await checker.run(plan)
    assert report.models["m0"].results["limited"].failure is FailureKind.RATE_LIMITED
    assert report.models["slow-model"].results["slow"].failure is FailureKind.TIMEOUT
    stats = checker.slots.statistics()
    assert stats["*"]["limit"] == 8
    assert (stats["limited"]["limit"], stats["limited"]["decreases"]) == (2, 1)
    assert (stats["slow"]["limit"], stats["slow"]["decreases"]) == (2, 1)
    assert (stats["fine"]["limit"], stats["fine"]["decreases"]) == (4, 0)

    report = await checker.run({"m": [CallableAdapter("local", exhausted)]})
    assert report.models["m"].results["local"].failure is FailureKind.RESOURCE
    stats = checker.slots.statistics()
    assert (stats["*"]["limit"], stats["*"]["decreases"]) == (4, 1)
    assert stats["local"]["limit"] == 4


async def test_a_refusal_lowers_the_limit_before_its_slot_goes_to_the_next_probe() -> None:
    """A refused probe's slot must not go to a queued probe at the old limit.

    Otherwise that probe is sent into the same overload, is refused too and,
    granted after the decrease, counts as a new episode: a second halving per
    burst (seen in the benchmark as the limit stepping down run after run).
    """
    count = INITIAL_LIMIT + 1  # one more probe than the initial limit, one provider name
    released = {i: trio.Event() for i in range(count)}
    refused: set[int] = set()
    started: list[int] = []

    def gate(i: int) -> CallableAdapter:
        async def check() -> ProbeOutcome:
            started.append(i)
            await released[i].wait()
            if i in refused:
                return ProbeOutcome.fail(FailureKind.RATE_LIMITED, "HTTP 429", http_status=429)
            return ProbeOutcome.ok(http_status=200)

        return CallableAdapter("limited", check)

    checker = HealthChecker(settings(adaptive_concurrency=True, adaptive_ceiling=32))
    plan: dict[str, list[Any]] = {f"m{i}": [gate(i)] for i in range(count)}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(checker.run, plan)
        await trio.testing.wait_all_tasks_blocked()
        assert len(started) == INITIAL_LIMIT  # the last one queues
        (queued,) = set(range(count)) - set(started)
        first = started[0]
        refused.add(first)
        released[first].set()  # the provider refuses one
        await trio.testing.wait_all_tasks_blocked()
        stats = checker.slots.statistics()["limited"]
        assert (stats["limit"], stats["decreases"]) == (INITIAL_LIMIT // 2, 1)
        # Three still in flight against a limit of two: nobody new goes out.
        assert queued not in started
        assert stats["queued"] == 1
        for event in released.values():
            event.set()
    assert sorted(started) == list(range(count))
    assert checker.slots.statistics()["limited"]["decreases"] == 1


async def test_refusals_in_the_same_instant_are_one_episode(
    mock_clock: trio.testing.MockClock,
) -> None:
    async def refuse_at_once() -> ProbeOutcome:
        return ProbeOutcome.fail(FailureKind.RATE_LIMITED, "HTTP 429", http_status=429)

    checker = HealthChecker(settings(adaptive_concurrency=True, adaptive_ceiling=8))
    # Four probes of one provider, all granted at t=0, all refused at t=0.
    await checker.run({f"m{i}": [CallableAdapter("p", refuse_at_once)] for i in range(4)})
    stats = checker.slots.statistics()["p"]
    # Slow start put it at 4; one episode halves it once.
    assert (stats["limit"], stats["decreases"]) == (2, 1)


async def test_slow_start_doubles_until_the_first_refusal(
    mock_clock: trio.testing.MockClock,
) -> None:
    limit = controller(32, initial=INITIAL_LIMIT)
    now = trio.current_time()
    seen = [limit.limit]
    for _ in range(3):
        answer(limit, limit.limit, now)  # one full round answered
        seen.append(limit.limit)
    assert seen == [4, 8, 16, 32]
    answer(limit, 100, now)
    assert limit.limit == 32 and limit.bad is None


async def test_a_hard_cap_is_found_and_then_only_probed(
    mock_clock: trio.testing.MockClock,
) -> None:
    """Against a provider refusing above 8 in flight: settle at 8, test 9 rarely, never halve again."""
    limit = controller(32, initial=16)
    mock_clock.jump(1)
    limit.feedback(Signal.REFUSED, trio.current_time())  # refused at 16
    assert (limit.limit, limit.bad) == (8, 16)
    mock_clock.jump(1)
    now = trio.current_time()
    answer(limit, 8, now)
    assert limit.limit == 9  # 9 < 16: plain additive increase
    mock_clock.jump(1)
    limit.feedback(Signal.REFUSED, trio.current_time())  # refused at 9: real congestion
    assert (limit.limit, limit.bad) == (4, 9)
    mock_clock.jump(1)
    now = trio.current_time()
    answer(limit, 4, now)
    # Fast recovery: 8 was answered in full before, so one round doubles back to it.
    assert (limit.limit, limit.good) == (8, 8)
    answer(limit, 8 * PROBE_FACTOR - 1, now)
    assert limit.limit == 8  # growing to the refused level waits PROBE_FACTOR times longer
    answer(limit, 1, now)
    assert limit.limit == 9
    mock_clock.jump(1)
    limit.feedback(Signal.REFUSED, trio.current_time())
    # A refused probe steps back by one instead of halving.
    assert (limit.limit, limit.bad, limit.decreases) == (8, 9, 3)


async def test_a_probed_level_that_holds_is_no_longer_bad(
    mock_clock: trio.testing.MockClock,
) -> None:
    limit = controller(32, initial=8)
    mock_clock.jump(1)
    limit.feedback(Signal.REFUSED, trio.current_time())  # refused at 8 -> 4, bad 8
    mock_clock.jump(1)
    now = trio.current_time()
    answer(limit, 4 + 5 + 6, now)
    assert limit.limit == 7
    answer(limit, 7 * PROBE_FACTOR, now)
    assert limit.limit == 8
    # A whole round at 8 answered: the provider has room now. The level is
    # forgotten and the same round grows the limit as usual.
    answer(limit, 8, now)
    assert limit.bad is None and limit.limit == 9


async def test_timeouts_do_not_mark_a_bad_level_and_recovery_doubles_back(
    mock_clock: trio.testing.MockClock,
) -> None:
    """An outage (timeouts) halves the limit to the floor; coming back takes rounds, not hours."""
    limit = controller(32, initial=32)
    answer(limit, 32, trio.current_time())  # a full round at 32: the known-good level
    assert limit.good == 32
    for _ in range(6):  # six episodes of timeouts
        mock_clock.jump(1)
        limit.feedback(Signal.CONGESTED, trio.current_time())
    assert (limit.limit, limit.bad) == (1, None)
    mock_clock.jump(1)
    now = trio.current_time()
    answers = 0
    while limit.limit < 32:
        answer(limit, 1, now)
        answers += 1
    assert answers == 1 + 2 + 4 + 8 + 16  # 31 answers, doubling each round


# -- Retry-After holds, unit level (MockClock, no sockets) ----------------------------------


async def test_retry_after_is_capped(mock_clock: trio.testing.MockClock) -> None:
    recent = RecentResults()
    adapter = CallableAdapter("p", healthy)
    recent.hold("m", adapter, result(retry_after=10.0**9), 10**9)
    mock_clock.jump(MAX_RETRY_AFTER - 1)
    held = recent.held("m", adapter)
    assert held is not None
    assert held.source == "retry_after"
    assert held.cached_age == MAX_RETRY_AFTER - 1
    assert "Retry-After" in (held.error or "")
    mock_clock.jump(1)
    assert recent.held("m", adapter) is None  # 300 s, not 31 years
    assert MAX_RETRY_AFTER == 300


@pytest.mark.parametrize("seconds", [0, -5, float("nan")])
async def test_no_hold_without_a_positive_retry_after(seconds: float) -> None:
    recent = RecentResults()
    adapter = CallableAdapter("p", healthy)
    recent.hold("m", adapter, result(), seconds)
    assert recent.held("m", adapter) is None


async def test_a_hold_belongs_to_its_adapter_object(mock_clock: trio.testing.MockClock) -> None:
    recent = RecentResults()
    first, replacement = CallableAdapter("p", healthy), CallableAdapter("p", healthy)
    recent.hold("m", first, result(), 30)
    assert recent.held("m", first) is not None
    assert recent.held("other-model", first) is None
    assert recent.held("m", replacement) is None
    assert recent.held("m", first) is None  # forgotten, not just hidden
    recent.hold("m", first, result(), 30)
    recent.clear()
    assert recent.held("m", first) is None


# -- through the checker, against the real simulator ---------------------------------------


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    return [
        SimProvider("busy", "openai", "sk-sim-busy-0123456789", ["sim-model"],
                    Behavior(latency=0.01, mode="rate_limited", retry_after=30)),
        SimProvider("calm", "openai", "sk-sim-calm-0123456789", ["sim-model"],
                    Behavior(latency=0.01)),
    ]


async def test_a_429_holds_the_adapter_for_its_retry_after(sim: Simulator) -> None:
    config = sim_config(sim, "busy", "calm", adaptive_concurrency=True, adaptive_ceiling=4)
    async with AdapterManager.from_config(config) as manager:
        checker = manager.health_checker
        first = await checker.check_all_models_with_timeout(["m"], manager.model_adapters)
        busy = first.models["m"].results["busy"]
        assert (busy.status, busy.failure, busy.http_status) == (
            ProbeStatus.UNHEALTHY, FailureKind.RATE_LIMITED, 429)
        assert busy.retry_after == 30
        assert busy.source is None and busy.cached_age is None
        stats = checker.slots.statistics()
        assert (stats["busy"]["limit"], stats["busy"]["decreases"]) == (2, 1)
        assert (stats["calm"]["limit"], stats["calm"]["decreases"]) == (4, 0)
        assert first.models["m"].results["calm"].healthy
        assert sim.stats("busy").requests == 1

        # Right after, even for a caller that wants fresh probes: nothing is sent.
        second = await checker.check_all_models_with_timeout(
            ["m"], manager.model_adapters, use_cache=False
        )
    assert sim.stats("busy").requests == 1 and sim.stats("busy").rate_limited == 1
    assert sim.stats("calm").list_probes == 2  # the healthy one is probed as usual
    held = second.models["m"].results["busy"]
    assert (held.status, held.failure, held.http_status, held.retry_after) == (
        ProbeStatus.UNHEALTHY, FailureKind.RATE_LIMITED, 429, 30)
    detail = second.to_dict()["details"]["m"]["busy"]
    assert detail["source"] == "retry_after"
    assert detail["cached"] is True and detail["age_s"] >= 0
    assert "Retry-After" in detail["error"]
    calm = second.models["m"].results["calm"]
    assert calm.healthy and calm.source is None and calm.cached_age is None
    # The held verdict is no new feedback: still one halving.
    assert checker.slots.statistics()["busy"]["decreases"] == 1


async def test_a_long_retry_after_is_held_for_the_cap(sim: Simulator) -> None:
    sim.set_behavior("busy", retry_after=3600)
    async with AdapterManager.from_config(sim_config(sim, "busy")) as manager:
        checker = manager.health_checker
        first = await checker.check_all_models_with_timeout(["m"], manager.model_adapters)
        second = await checker.check_all_models_with_timeout(["m"], manager.model_adapters)
    assert first.models["m"].results["busy"].retry_after == 3600
    assert second.models["m"].results["busy"].source == "retry_after"
    assert "Retry-After" in (second.models["m"].results["busy"].error or "")
    assert sim.stats("busy").requests == 1


async def test_a_day_long_retry_after_is_still_held_for_the_cap(sim: Simulator) -> None:
    sim.set_behavior("busy", retry_after=86400)
    async with AdapterManager.from_config(sim_config(sim, "busy")) as manager:
        checker = manager.health_checker
        await checker.check_all_models_with_timeout(["m"], manager.model_adapters)
        second = await checker.check_all_models_with_timeout(["m"], manager.model_adapters)
    assert second.models["m"].results["busy"].source == "retry_after"
    assert sim.stats("busy").requests == 1  # actual: 2, the quota-exhausted provider is probed


async def test_rate_limited_as_transient_is_degraded(sim: Simulator) -> None:
    config = sim_config(sim, "busy")
    checker = HealthChecker(
        settings(adapter_timeout=5, transient=frozenset({"rate_limited"}))
    )
    async with AdapterManager.from_config(config, checker=checker) as manager:
        first = await checker.check_all_models_with_timeout(["m"], manager.model_adapters)
        again = await checker.check_all_models_with_timeout(["m"], manager.model_adapters)
    busy = first.models["m"].results["busy"]
    assert (busy.status, busy.failure, busy.http_status) == (
        ProbeStatus.DEGRADED, FailureKind.RATE_LIMITED, 429)
    assert first.models["m"].status is HealthStatus.DEGRADED
    assert first.to_dict()["models"]["m"]["providers"] == {"busy": "degraded"}
    # The hold keeps the same verdict, without a request.
    held = again.models["m"].results["busy"]
    assert (held.status, held.source) == (ProbeStatus.DEGRADED, "retry_after")
    assert sim.stats("busy").requests == 1


async def test_a_hold_never_outlives_the_adapter_object(sim: Simulator) -> None:
    config = sim_config(sim, "busy")
    async with (
        AdapterManager.from_config(config) as manager,
        AdapterManager.from_config(config) as rebuilt,
    ):
        checker = manager.health_checker
        await checker.check_all_models_with_timeout(["m"], manager.model_adapters)
        assert sim.stats("busy").requests == 1
        # Same model and provider name, new adapter object (a reload): probed.
        report = await checker.check_all_models_with_timeout(["m"], rebuilt.model_adapters)
        assert sim.stats("busy").requests == 2
        fresh = report.models["m"].results["busy"]
        assert fresh.source is None and fresh.failure is FailureKind.RATE_LIMITED
        # The new adapter's own 429 is held now, the old one's hold is gone.
        await checker.check_all_models_with_timeout(["m"], rebuilt.model_adapters)
        assert sim.stats("busy").requests == 2
        await checker.check_all_models_with_timeout(["m"], manager.model_adapters)
        assert sim.stats("busy").requests == 3


# -- config ----------------------------------------------------------------------------------

PROVIDER = '[[models]]\nname = "m"\n[[models.providers]]\nname = "p"\ntype = "ollama"\n'


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("adaptive_ceiling = 0",
         "checks.adaptive_ceiling: must be at least 1 (the largest an adaptive provider limit "
         "grows), got 0"),
        ('adaptive_ceiling = "8"', "checks.adaptive_ceiling: must be an integer, got '8'"),
        ("adaptive_ceiling = true", "checks.adaptive_ceiling: must be an integer, got True"),
        ('adaptive_concurrency = "yes"',
         "checks.adaptive_concurrency: must be true or false, got 'yes'"),
    ],
)
def test_each_adaptive_config_mistake_is_one_precise_line(
    tmp_path: Path, line: str, expected: str
) -> None:
    message = problems(f"[checks]\n{line}\n{PROVIDER}", tmp_path)
    assert message == f"{tmp_path / 'providers.toml'}: {expected}"
    assert len(message.splitlines()) == 1


async def test_adaptive_config_reaches_the_checker() -> None:
    text = (
        "[checks]\nadaptive_concurrency = true\nadaptive_ceiling = 5\n"
        f"{PROVIDER}\n[[models.providers]]\nname = \"q\"\ntype = \"ollama\"\nmax_concurrent = 2\n"
    )
    config = parse_config(tomllib.loads(text), env={})
    assert (config.checks.adaptive_concurrency, config.checks.adaptive_ceiling) == (True, 5)
    manager = AdapterManager.from_config(config)
    slots = manager.health_checker.slots
    assert slots.adaptive is True
    assert slots.adaptive_limit("p").ceiling == 5  # type: ignore[union-attr]
    assert slots.adaptive_limit("q").ceiling == 2  # type: ignore[union-attr]
    default = AdapterManager.from_config(parse_config(tomllib.loads(PROVIDER), env={}))
    assert default.health_checker.slots.adaptive is False
    assert default.health_checker.slots.adaptive_limit("p") is None

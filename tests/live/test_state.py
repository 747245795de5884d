"""HealthState: hysteresis, history bound, and serving from memory (fresh vs stale).

All on Trio's MockClock (ages are measured on the Trio clock).
"""

from __future__ import annotations

import dataclasses

import pytest
import trio
import trio.testing

from adapters import FailureKind
from service.config import CheckSchedule, ConfigError
from service.engine.report import HealthStatus, ProbeResult, ProbeStatus
from service.live.state import HISTORY_LENGTH, HealthState, stale_results
from tests.support.fakes import ok, probe_result, reported_for


def result(status: ProbeStatus, *, provider: str = "openai", failure: FailureKind | None = None,
           cached_age: float | None = None) -> ProbeResult:
    return probe_result(status, provider=provider, failure=failure, cached_age=cached_age)


H, U, T = ProbeStatus.HEALTHY, ProbeStatus.UNHEALTHY, ProbeStatus.TIMEOUT


def reported_after(statuses: list[ProbeStatus], schedule: CheckSchedule) -> list[ProbeStatus]:
    return reported_for([result(status) for status in statuses], schedule)


async def test_first_result_sets_the_status_directly() -> None:
    schedule = CheckSchedule(interval=10, healthy_threshold=3, unhealthy_threshold=3)
    assert reported_after([U], schedule) == [U]
    assert reported_after([H], schedule) == [H]


async def test_thresholds_of_one_follow_every_result() -> None:
    schedule = CheckSchedule(interval=10)
    assert reported_after([H, U, H, T, H], schedule) == [H, U, H, T, H]


async def test_unhealthy_threshold_needs_consecutive_failures() -> None:
    schedule = CheckSchedule(interval=10, unhealthy_threshold=3)
    # A blip (two failures, then healthy) never flips; three in a row do.
    assert reported_after([H, U, T, H, U, U, T], schedule) == [H, H, H, H, H, H, T]


async def test_healthy_threshold_needs_consecutive_successes() -> None:
    schedule = CheckSchedule(interval=10, healthy_threshold=2)
    assert reported_after([U, H, U, H, H, U], schedule) == [U, U, U, U, H, U]


async def test_changing_while_results_disagree() -> None:
    schedule = CheckSchedule(interval=10, unhealthy_threshold=2)
    state = HealthState(lambda model, provider: schedule)
    state.record(result(H))
    state.record(result(U))
    current = state.get("gpt-4", "openai")
    assert current is not None and current.changing and current.reported is H
    state.record(result(H))
    current = state.get("gpt-4", "openai")
    assert current is not None and not current.changing


async def test_non_verdicts_and_cached_copies_are_not_recorded() -> None:
    state = HealthState(lambda model, provider: CheckSchedule(interval=10))
    for failure in (FailureKind.DEADLINE, FailureKind.NOT_STARTED, FailureKind.RESOURCE):
        state.record(result(T, failure=failure))
    state.record(result(H, cached_age=1.0))
    assert state.get("gpt-4", "openai") is None
    assert state.changes.value == 0
    state.record(result(T, failure=FailureKind.TIMEOUT))
    assert state.changes.value == 1


async def test_history_keeps_the_last_results_only() -> None:
    state = HealthState(lambda model, provider: CheckSchedule(interval=10))
    for i in range(HISTORY_LENGTH + 7):
        state.record(result(H if i % 2 else U))
    history = state.history("gpt-4", "openai")
    assert len(history) == HISTORY_LENGTH == 50
    # The oldest seven went; the newest (index 56, even: unhealthy) is last.
    assert history[-1].status is U
    assert history[0].status is H  # index 7
    assert history[-1].to_dict() == {
        "checked_at": 1_700_000_000.0, "status": "unhealthy", "latency_ms": 12.0, "failure": None,
    }
    assert state.history("gpt-4", "nobody") == []


async def test_report_is_served_while_younger_than_max_age(
    autojump_clock: trio.testing.MockClock,
) -> None:
    schedule = CheckSchedule(interval=10)  # max_age defaults to 20
    state = HealthState(lambda model, provider: schedule)
    plan = {"gpt-4": [ok("openai"), ok("azure")]}
    state.record(result(H))
    assert state.report(plan, timeout=30, concurrent=True) is None  # azure never checked
    state.record(result(U, provider="azure"))
    await trio.sleep(19.5)
    report = state.report(plan, timeout=30, concurrent=True)
    assert report is not None
    assert report.status is HealthStatus.DEGRADED
    body = report.to_dict()
    assert body["source"] == "background"
    assert body["details"]["gpt-4"]["openai"]["age_s"] == pytest.approx(19.5)
    assert body["details"]["gpt-4"]["azure"]["status"] == "unhealthy"
    # A refresh of one adapter does not make the other fresh.
    state.record(result(H))
    await trio.sleep(0.5)
    assert state.report(plan, timeout=30, concurrent=True) is None  # azure is 20 s old
    assert state.report({"gpt-4": plan["gpt-4"][:1]}, timeout=30, concurrent=True) is not None


async def test_served_status_is_the_reported_one(autojump_clock: trio.testing.MockClock) -> None:
    schedule = CheckSchedule(interval=10, max_age=5, unhealthy_threshold=2)
    state = HealthState(lambda model, provider: schedule)
    plan = {"gpt-4": [ok("openai")]}
    state.record(result(H))
    state.record(result(T, failure=FailureKind.TIMEOUT))  # one blip
    report = state.report(plan, timeout=30, concurrent=True)
    assert report is not None and report.status is HealthStatus.HEALTHY
    await trio.sleep(5)
    assert state.report(plan, timeout=30, concurrent=True) is None  # max_age overrides 2x


async def test_an_adapter_without_background_checks_is_never_fresh() -> None:
    state = HealthState(lambda model, provider: CheckSchedule(interval=0))
    state.record(result(H))
    assert state.report({"gpt-4": [ok("openai")]}, timeout=30, concurrent=True) is None


# -- transitions ----------------------------------------------------------------------------


async def test_subscribers_see_first_results_and_flips_only() -> None:
    state = HealthState(lambda model, provider: CheckSchedule(interval=10, unhealthy_threshold=2))
    updates = state.subscribe()
    for status in (H, U, H, U, T, H, H):
        state.record(result(status))
    state.close()
    seen = [(t.previous, t.current) async for t in updates]
    # H; blip U then H (no flip); U, T flips to timeout; H flips back; H again is no change.
    assert seen == [(None, H), (H, T), (T, H)]


async def test_a_slow_subscriber_is_dropped_not_waited_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = HealthState(lambda model, provider: CheckSchedule(interval=10))
    slow = state.subscribe(buffer=2)
    fast = state.subscribe(buffer=100)
    for i in range(5):
        state.record(result(H if i % 2 else U))  # every result flips
    assert "dropping a status subscriber: 2 transitions unread" in caplog.text
    assert [t.current async for t in slow] == [U, H]  # what it had, then the end
    state.close()
    assert [t.current async for t in fast] == [U, H, U, H, U]


async def test_a_closed_subscriber_is_forgotten() -> None:
    state = HealthState(lambda model, provider: CheckSchedule(interval=10))
    gone = state.subscribe()
    gone.close()
    state.record(result(H))
    assert state._subscribers == []
    with pytest.raises(ValueError):
        state.subscribe(buffer=0)


# -- degraded: transient failures and the latency SLO ----------------------------------------

D = ProbeStatus.DEGRADED


def slow(latency_ms: float, status: ProbeStatus = H) -> ProbeResult:
    return probe_result(status, latency_ms=latency_ms)


def busy(failure: FailureKind = FailureKind.RATE_LIMITED) -> ProbeResult:
    """A transient failure as the checker reports it: degraded, with its failure kind."""
    return result(D, failure=failure)


async def test_transient_failures_are_degraded_until_the_limit() -> None:
    schedule = CheckSchedule(interval=10, transient_limit=3)
    # Two 429s: degraded (still up); a third in a row: down (unhealthy); a
    # healthy answer resets the count.
    assert reported_for([result(H), busy(), busy(), busy(), result(H), busy()], schedule) == [
        H, D, D, U, H, D,
    ]
    # A transient timeout escalates to timeout, not unhealthy.
    timeouts = [busy(FailureKind.TIMEOUT)] * 2
    assert reported_for(timeouts, CheckSchedule(interval=10, transient_limit=2)) == [D, T]


async def test_transient_limit_zero_never_escalates() -> None:
    schedule = CheckSchedule(interval=10, transient_limit=0)
    assert reported_for([busy()] * 10, schedule) == [D] * 10


async def test_degraded_is_up_for_the_thresholds() -> None:
    # A transient failure never brings a down adapter back up: a black-holed
    # provider's timeouts are not "serving".
    schedule = CheckSchedule(interval=10, healthy_threshold=2, transient_limit=0)
    assert reported_for([result(U), busy(), busy(), result(H), result(H)], schedule) == [
        U, U, U, U, H,
    ]
    timeouts = [result(U), busy(FailureKind.TIMEOUT), result(U), busy(FailureKind.TIMEOUT)]
    assert reported_for(timeouts, CheckSchedule(interval=10, transient=("timeout",))) == [
        U, T, U, T,
    ]
    # Up: a degraded answer does not count toward unhealthy_threshold.
    schedule = CheckSchedule(interval=10, unhealthy_threshold=2, transient_limit=0)
    assert reported_for([result(H), result(U), busy(), result(U)], schedule) == [H, H, D, D]


async def test_latency_above_the_slo_is_degraded_with_the_measurement() -> None:
    schedule = CheckSchedule(interval=10, latency_slo_ms=500, slo_percentile=95, slo_window=10)
    state = HealthState(lambda model, provider: schedule)
    # Four slow answers: below SLO_MIN_SAMPLES, so no verdict on latency yet.
    for _ in range(4):
        state.record(slow(900))
    current = state.get("gpt-4", "openai")
    assert current is not None and current.reported is H
    state.record(slow(900))
    current = state.get("gpt-4", "openai")
    assert current is not None and current.reported is D
    assert current.note is not None and "p95 latency 900 ms" in current.note
    assert "SLO of 500 ms" in current.note
    # Fast answers push the slow ones out of the 10-result window.
    for _ in range(10):
        state.record(slow(100))
    current = state.get("gpt-4", "openai")
    assert current is not None and current.reported is H and current.note is None


async def test_one_outlier_in_the_window_does_not_breach_a_p95() -> None:
    schedule = CheckSchedule(interval=10, latency_slo_ms=500, slo_window=20)
    statuses = reported_for([slow(100)] * 19 + [slow(5000)], schedule)
    assert statuses[-1] is H  # p95 of 20 is the 19th: 100 ms
    assert reported_for([slow(100)] * 18 + [slow(5000)] * 2, schedule)[-1] is D


async def test_the_slo_only_degrades_a_healthy_adapter() -> None:
    schedule = CheckSchedule(interval=10, latency_slo_ms=10, slo_window=5)
    # Unhealthy stays unhealthy (a down adapter is not "degraded").
    assert reported_for([slow(900)] * 5 + [slow(900, U)], schedule)[-1] is U


async def test_served_results_carry_the_slo_note(autojump_clock: trio.testing.MockClock) -> None:
    schedule = CheckSchedule(interval=10, latency_slo_ms=50, slo_window=5)
    state = HealthState(lambda model, provider: schedule)
    for _ in range(5):
        state.record(slow(80))
    report = state.report({"gpt-4": [ok("openai")]}, timeout=30, concurrent=True)
    assert report is not None and report.status is HealthStatus.DEGRADED
    detail = report.to_dict()["details"]["gpt-4"]["openai"]
    assert detail["status"] == "degraded" and "above the SLO of 50 ms" in detail["error"]


async def test_transitions_are_level_changes() -> None:
    schedule = CheckSchedule(interval=10, transient_limit=0)
    state = HealthState(lambda model, provider: schedule)
    updates = state.subscribe()
    for each in (result(H), busy(), busy(), result(U), result(T), result(H)):
        state.record(each)
    state.close()
    seen = [(t.previous, t.current) async for t in updates]
    # degraded -> degraded and unhealthy -> timeout are no level change.
    assert seen == [(None, H), (H, D), (D, U), (T, H)]


# -- stale-while-revalidate -------------------------------------------------------------------


async def test_stale_results_are_served_marked_within_the_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    schedule = CheckSchedule(interval=10, max_age=20, stale_while_revalidate=30)
    state = HealthState(lambda model, provider: schedule)
    plan = {"gpt-4": [ok("openai"), ok("azure")]}
    state.record(result(H))
    state.record(result(H, provider="azure"))
    await trio.sleep(15)
    state.record(result(H))  # openai refreshed, azure 15 s old
    await trio.sleep(10)  # openai 10 s, azure 25 s: past max_age, within the grace
    assert state.report(plan, timeout=30, concurrent=True) is None  # strict: go live
    report = state.report(plan, timeout=30, concurrent=True, allow_stale=True)
    assert report is not None
    body = report.to_dict()
    assert body["stale"] == 1 and body["source"] == "background"
    assert body["details"]["gpt-4"]["azure"]["stale"] is True
    assert "stale" not in body["details"]["gpt-4"]["openai"]
    assert stale_results(report) == [("gpt-4", "azure")]
    await trio.sleep(25)  # azure 50 s old: past max_age + grace
    assert state.report(plan, timeout=30, concurrent=True, allow_stale=True) is None


async def test_stale_grace_defaults_to_max_age_and_zero_turns_it_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert CheckSchedule(interval=10).stale_for == 20  # max_age 2 x interval
    assert CheckSchedule(interval=10, max_age=5).stale_for == 5
    assert CheckSchedule(interval=0).stale_for == 0
    schedule = CheckSchedule(interval=10, max_age=5, stale_while_revalidate=0)
    state = HealthState(lambda model, provider: schedule)
    state.record(result(H))
    await trio.sleep(6)
    assert state.report({"gpt-4": [ok("openai")]}, timeout=30, concurrent=True,
                        allow_stale=True) is None


async def test_a_late_older_result_does_not_move_the_status_back() -> None:
    state = HealthState(lambda model, provider: CheckSchedule(interval=10))
    newer = dataclasses.replace(result(H), checked_at=2_000.0)
    older = dataclasses.replace(result(U), checked_at=1_000.0)
    state.record(newer)
    state.record(older)  # a slower probe that started earlier, finishing later
    current = state.get("gpt-4", "openai")
    assert current is not None and current.reported is H
    assert len(state.history("gpt-4", "openai")) == 1


async def test_the_slo_window_counts_answered_probes_only() -> None:
    schedule = CheckSchedule(interval=10, latency_slo_ms=500, slo_window=5)
    timeout = dataclasses.replace(slow(8000, T), failure=FailureKind.TIMEOUT)
    # Five timeouts at their 8 s deadline, then five fast answers: the
    # deadline is not a latency, so the adapter is healthy at once.
    assert reported_for([timeout] * 5 + [slow(100)] * 5, schedule)[-1] is H


def test_the_config_bound_on_slo_window_is_the_history_length() -> None:
    from service.config import parse_config

    def slo_window(value: int) -> dict[str, object]:
        return {
            "checks": {"interval": 10, "slo_window": value},
            "models": [{"name": "m", "providers": [{"name": "p", "type": "ollama"}]}],
        }

    parse_config(slo_window(HISTORY_LENGTH), env={})
    with pytest.raises(ConfigError, match=f"slo_window: must be at most {HISTORY_LENGTH}"):
        parse_config(slo_window(HISTORY_LENGTH + 1), env={})

"""HealthState details a mutation-testing pass (issue 13) found untested.

Each test pins one rule of :mod:`service.live.state` that a mutant of the
code broke without any other test noticing: what a flip resets, what a
report or a transition carries, the SLO's window and boundary, the history's
JSON and the subscribers' buffer. No clock is needed: nothing here ages.
"""

from __future__ import annotations

import dataclasses

import pytest

from adapters import FailureKind
from service.config import CheckSchedule
from service.engine.report import ProbeResult, ProbeStatus
from service.live.state import HealthState, HistoryEntry, level, percentile
from tests.support.fakes import ok, probe_result, reported_for

H, D, U, T = ProbeStatus.HEALTHY, ProbeStatus.DEGRADED, ProbeStatus.UNHEALTHY, ProbeStatus.TIMEOUT
PLAN = {"gpt-4": [ok("openai")]}


def busy() -> ProbeResult:
    """A transient failure (a 429) as the checker reports it: degraded, with its failure."""
    return probe_result(D, failure=FailureKind.RATE_LIMITED, error="rate limited")


def slow(latency_ms: float) -> ProbeResult:
    return probe_result(H, latency_ms=latency_ms)


def timed_out(latency_ms: float) -> ProbeResult:
    return probe_result(T, latency_ms=latency_ms, failure=FailureKind.TIMEOUT)


def test_level_names_both_down_statuses_down() -> None:
    assert [level(s) for s in (H, D, U, T)] == ["healthy", "degraded", "down", "down"]


def test_percentile_is_the_nearest_rank() -> None:
    assert percentile([20.0, 10.0], 50) == 10.0  # rank ceil(0.5 x 2) = 1
    assert percentile([10.0, 20.0, 30.0], 67) == 30.0  # rank ceil(2.01) = 3
    assert percentile([10.0, 20.0, 30.0], 100) == 30.0


async def test_a_flip_starts_the_count_to_the_next_flip_from_zero() -> None:
    # Two 429s in a row flip the adapter down (transient_limit 2); from there it
    # takes three healthy answers to come back, counted from the flip.
    schedule = CheckSchedule(interval=10, healthy_threshold=3, transient_limit=2)
    statuses = reported_for([probe_result(H), busy(), busy(), *[probe_result(H)] * 3], schedule)
    assert statuses == [H, D, U, U, U, H]


async def test_a_pending_flip_keeps_the_slo_note_and_the_report_joins_both_reasons() -> None:
    schedule = CheckSchedule(interval=10, unhealthy_threshold=2, latency_slo_ms=50, slo_window=5)
    state = HealthState(lambda model, provider: schedule)
    for _ in range(5):
        state.record(slow(80))
    degraded = state.get("gpt-4", "openai")
    assert degraded is not None and degraded.reported is D and degraded.note is not None
    note = degraded.note
    report = state.report(PLAN, timeout=30, concurrent=True)
    assert report is not None
    assert report.to_dict()["details"]["gpt-4"]["openai"]["error"] == note  # the note alone

    # One failure: not enough to flip (threshold 2), so the SLO reason stays.
    state.record(probe_result(U, error="HTTP 500: boom", failure=FailureKind.HTTP_STATUS))
    pending = state.get("gpt-4", "openai")
    assert pending is not None and pending.reported is D and pending.note == note
    report = state.report(PLAN, timeout=30, concurrent=True)
    assert report is not None
    assert report.to_dict()["details"]["gpt-4"]["openai"]["error"] == f"HTTP 500: boom; {note}"


async def test_the_slo_window_leaves_out_failed_probes_latencies() -> None:
    # Still reported healthy after two timeouts (unhealthy_threshold 3): their
    # latency is their deadline, not an answer's, so the p95 stays 100 ms.
    schedule = CheckSchedule(interval=10, unhealthy_threshold=3, latency_slo_ms=500, slo_window=10)
    statuses = reported_for([slow(100)] * 5 + [timed_out(8000)] * 2, schedule)
    assert statuses[-1] is H


async def test_a_latency_exactly_at_the_slo_is_within_it() -> None:
    schedule = CheckSchedule(interval=10, latency_slo_ms=500, slo_window=5)
    assert reported_for([slow(500)] * 5, schedule)[-1] is H
    assert reported_for([slow(501)] * 5, schedule)[-1] is D


async def test_history_keeps_each_results_failure_kind() -> None:
    state = HealthState(lambda model, provider: CheckSchedule(interval=10))
    state.record(timed_out(30_000))
    state.record(probe_result(H))
    assert [e.failure for e in state.history("gpt-4", "openai")] == ["timeout", None]


def test_history_entries_round_times_to_the_millisecond_and_latency_to_a_tenth() -> None:
    entry = HistoryEntry(
        checked_at=1_700_000_000.123456, status=T, latency_ms=12.3456, failure="timeout"
    )
    assert entry.to_dict() == {
        "checked_at": 1_700_000_000.123, "status": "timeout", "latency_ms": 12.3,
        "failure": "timeout",
    }
    unanswered = dataclasses.replace(entry, latency_ms=None)
    assert unanswered.to_dict()["latency_ms"] is None


async def test_a_transition_names_its_adapter_and_carries_the_result() -> None:
    state = HealthState(lambda model, provider: CheckSchedule(interval=10))
    updates = state.subscribe()
    first = probe_result(H, model="llama3", provider="ollama")
    state.record(first)
    state.close()
    [transition] = [t async for t in updates]
    assert (transition.model, transition.provider, transition.result) == ("llama3", "ollama", first)


async def test_the_default_subscriber_buffer_holds_a_hundred_transitions() -> None:
    state = HealthState(lambda model, provider: CheckSchedule(interval=10))
    updates = state.subscribe()
    for i in range(101):  # every result flips: 101 transitions, none read
        state.record(probe_result(U if i % 2 else H))
    state.close()
    assert len([t async for t in updates]) == 100  # dropped at the 101st


async def test_a_buffer_of_one_is_allowed_and_zero_is_refused_with_a_message() -> None:
    state = HealthState(lambda model, provider: CheckSchedule(interval=10))
    single = state.subscribe(buffer=1)
    state.record(probe_result(H))
    state.close()
    assert [t.current async for t in single] == [H]
    with pytest.raises(ValueError, match="buffer must be at least 1, got 0"):
        state.subscribe(buffer=0)


async def test_each_adapter_is_served_under_its_own_schedule() -> None:
    # The lookup fails for any other (model, provider): the report must ask for this one.
    schedules = {("gpt-4", "openai"): CheckSchedule(interval=10)}
    state = HealthState(lambda model, provider: schedules[model, provider])
    state.record(probe_result(H))
    assert state.report(PLAN, timeout=30, concurrent=True) is not None


async def test_a_report_from_memory_carries_the_callers_timeout_and_strategy() -> None:
    state = HealthState(lambda model, provider: CheckSchedule(interval=10))
    state.record(probe_result(H))
    report = state.report(PLAN, timeout=7.5, concurrent=False)
    assert report is not None
    assert (report.timeout, report.concurrent, report.execution_time) == (7.5, False, 0.0)

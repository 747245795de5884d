"""Time-weighted uptime against hand-computed timelines.

Through :class:`Storage` on a real SQLite file (verdicts recorded in the live
state, one flush, then queries on a wall clock the test sets), and the pure
accumulator for what a storage cannot arrange (out-of-order arrivals).
Every expected number is worked out in the comment above it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from service.config import CheckSchedule, StorageConfig
from service.engine.report import ProbeStatus
from service.live.state import HealthState
from service.live.storage import Storage, open_storage
from service.live.uptime import (
    MODEL,
    Increments,
    Uptime,
    UptimeAccumulator,
    open_tail,
)
from tests.support.fakes import probe_result

H, D_, U, T = ProbeStatus.HEALTHY, ProbeStatus.DEGRADED, ProbeStatus.UNHEALTHY, ProbeStatus.TIMEOUT
#: A UTC midnight.
D = 1_700_006_400.0
KNOWN = {("gpt-4", "openai"), ("gpt-4", "azure"), ("claude", "anthropic")}
Verdict = tuple[str, float, ProbeStatus]  # provider (of gpt-4), checked_at, status


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def stored(
    path: Path, verdicts: Sequence[Verdict], clock: Clock, *, hold: float = 300.0
) -> AsyncIterator[Storage]:
    """A storage on ``path`` with ``verdicts`` of gpt-4 recorded and flushed."""
    health = HealthState(lambda model, provider: CheckSchedule(interval=10))
    config = StorageConfig(enabled=True, path=str(path), flush_interval=3600.0)
    async with open_storage(
        config, health, known=KNOWN, wall_clock=clock, hold_limit=hold
    ) as storage:
        for provider, at, status in verdicts:
            health.record(probe_result(status, provider=provider, checked_at=at))
        assert await storage.flush()
        yield storage
        health.close()


def seconds(uptime: Uptime) -> tuple[float, float]:
    return uptime.up_seconds, uptime.covered_seconds


async def test_a_verdict_holds_until_the_next_one(tmp_path: Path) -> None:
    verdicts = [("openai", D, H), ("openai", D + 100, U), ("openai", D + 160, D_)]
    async with stored(tmp_path / "h.db", verdicts, Clock(D + 200)) as storage:
        report = await storage.uptime(3600)
    # Up D..D+100 and, degraded still counting as up, D+160..now (the open tail): 140 of 200.
    openai = report.adapters[("gpt-4", "openai")]
    assert seconds(openai) == (140, 200)
    assert openai.ratio == pytest.approx(0.7)
    # The window starts on the minute before now - 1 h.
    assert (report.start, report.end) == (D + 200 - 3600 - 20, D + 200)
    assert report.window_seconds == 3620 and openai.window_seconds == 3620
    assert openai.to_dict() == {
        "uptime": 0.7, "up_seconds": 140.0, "covered_seconds": 200.0,
        "coverage": round(200 / 3620, 6),
    }


async def test_a_gap_longer_than_the_hold_is_not_covered(tmp_path: Path) -> None:
    verdicts = [("openai", D, H), ("openai", D + 1000, U)]
    async with stored(tmp_path / "h.db", verdicts, Clock(D + 1100)) as storage:
        report = await storage.uptime(3600)
    # D..D+300 up (then the hold ends), D+1000..now down: 300 up of 400 covered.
    assert seconds(report.adapters[("gpt-4", "openai")]) == (300, 400)
    assert seconds(report.models["gpt-4"]) == (300, 400)


async def test_the_open_tail_ends_at_the_hold(tmp_path: Path) -> None:
    clock = Clock(D + 100)
    async with stored(tmp_path / "h.db", [("openai", D, H)], clock) as storage:
        assert seconds((await storage.uptime(3600)).adapters[("gpt-4", "openai")]) == (100, 100)
        clock.now = D + 1000
        # Covered until D+300 only: the checker has been silent since.
        assert seconds((await storage.uptime(3600)).adapters[("gpt-4", "openai")]) == (300, 300)


async def test_a_restart_is_a_gap_and_uptime_resumes_after_it(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    async with stored(path, [("openai", D, H), ("openai", D + 10, H)], Clock(D + 20)):
        pass
    later = [("openai", D + 600, H), ("openai", D + 610, U)]
    async with stored(path, later, Clock(D + 640)) as storage:
        report = await storage.uptime(3600)
    # Before: D..D+10, and D+10's hold until D+310 (then the process was gone): 310 up.
    # After: D+600..D+610 up, D+610..now down: 10 up of 40. Total 320 up of 350 covered.
    assert seconds(report.adapters[("gpt-4", "openai")]) == (320, 350)
    assert seconds(report.models["gpt-4"]) == (320, 350)


async def test_a_window_longer_than_the_data_has_low_coverage_not_low_uptime(
    tmp_path: Path,
) -> None:
    verdicts = [("openai", D, H), ("openai", D + 50, H)]
    async with stored(tmp_path / "h.db", verdicts, Clock(D + 100)) as storage:
        report = await storage.uptime(30 * 86400)
        days = await storage.daily("gpt-4", 3)
    # Past raw_retention (48 h) minute rollups are gone: the start is floored to the hour.
    assert report.start == (D + 100 - 30 * 86400) // 3600 * 3600
    openai = report.adapters[("gpt-4", "openai")]
    assert seconds(openai) == (100, 100) and openai.ratio == 1.0
    assert openai.coverage == pytest.approx(100 / report.window_seconds)
    # Days with nothing stored: nothing covered, no ratio; today is 100 s long so far.
    assert [(d.start, seconds(d.uptime), d.uptime.window_seconds) for d in days] == [
        (D - 2 * 86400, (0, 0), 86400), (D - 86400, (0, 0), 86400), (D, (100, 100), 100),
    ]
    assert days[0].uptime.ratio is None and days[0].uptime.to_dict()["uptime"] is None


async def test_a_model_is_up_while_any_provider_is_up(tmp_path: Path) -> None:
    verdicts = [
        ("openai", D, H), ("azure", D, U),  # one down: the model is up
        ("openai", D + 60, U),  # both down: the model is down
        ("openai", D + 120, H), ("azure", D + 120, H),  # both up
    ]
    async with stored(tmp_path / "h.db", verdicts, Clock(D + 180)) as storage:
        report = await storage.uptime(3600)
    assert seconds(report.models["gpt-4"]) == (120, 180)  # D..D+60 and D+120..now
    assert seconds(report.adapters[("gpt-4", "openai")]) == (120, 180)
    assert seconds(report.adapters[("gpt-4", "azure")]) == (60, 180)


async def test_a_model_is_covered_while_any_provider_is_covered(tmp_path: Path) -> None:
    verdicts = [("openai", D, H), ("azure", D + 100, U)]
    clock = Clock(D + 200)
    async with stored(tmp_path / "h.db", verdicts, clock) as storage:
        report = await storage.uptime(3600)
        # azure is covered from D+100 only; the model from D, up while openai's hold runs.
        assert seconds(report.adapters[("gpt-4", "azure")]) == (0, 100)
        assert seconds(report.models["gpt-4"]) == (200, 200)
        clock.now = D + 350
        report = await storage.uptime(3600)
    # openai's hold ends at D+300 (the model is down after: only azure, down, is covered);
    # azure's at D+400, after now.
    assert seconds(report.adapters[("gpt-4", "openai")]) == (300, 300)
    assert seconds(report.models["gpt-4"]) == (300, 350)


async def test_every_configured_model_and_adapter_is_answered_and_filtered(tmp_path: Path) -> None:
    async with stored(tmp_path / "h.db", [("openai", D, H)], Clock(D + 10)) as storage:
        report = await storage.uptime(3600)
        only = await storage.uptime(3600, models=["claude"])
    assert set(report.models) == {"gpt-4", "claude"}
    assert set(report.adapters) == KNOWN
    assert seconds(report.models["claude"]) == (0, 0) and report.models["claude"].ratio is None
    assert set(only.models) == {"claude"} and set(only.adapters) == {("claude", "anthropic")}


async def test_minute_hour_and_day_boundaries_add_up(tmp_path: Path) -> None:
    # A long hold (10,000 s) so that single verdicts span minutes, hours and midnight.
    verdicts = [("openai", D - 1000, H), ("openai", D + 5000, U)]
    async with stored(tmp_path / "h.db", verdicts, Clock(D + 6000), hold=10_000) as storage:
        day = await storage.uptime(86400)  # minutes + hours + days, with the open tail
        hour = await storage.uptime(3600)  # minutes + hours
        days = await storage.daily("gpt-4", 2)
    # Up D-1000..D+5000, down D+5000..now.
    assert seconds(day.adapters[("gpt-4", "openai")]) == (6000, 7000)
    assert seconds(day.models["gpt-4"]) == (6000, 7000)
    # From D+2400: up until D+5000.
    assert hour.start == D + 2400
    assert seconds(hour.adapters[("gpt-4", "openai")]) == (2600, 3600)
    assert [seconds(d.uptime) for d in days] == [(1000, 1000), (5000, 6000)]


async def test_a_short_window_counts_only_its_minutes(tmp_path: Path) -> None:
    verdicts = [("openai", D - 30, H), ("openai", D + 30, U)]
    async with stored(tmp_path / "h.db", verdicts, Clock(D + 90)) as storage:
        report = await storage.uptime(60)
        days = await storage.daily("gpt-4", 2)
    # The window is D..D+90 (now - 60 floored to the minute): up D..D+30.
    assert (report.start, report.window_seconds) == (D, 90)
    assert seconds(report.adapters[("gpt-4", "openai")]) == (30, 90)
    assert [seconds(d.uptime) for d in days] == [(30, 30), (30, 90)]


async def test_bad_windows_are_refused(tmp_path: Path) -> None:
    async with stored(tmp_path / "h.db", [], Clock(D)) as storage:
        with pytest.raises(ValueError, match="more than 0 seconds"):
            await storage.uptime(0)
        with pytest.raises(ValueError, match="at least 1"):
            await storage.daily("gpt-4", 0)


# -- the accumulator alone -----------------------------------------------------------


def minutes(increments: Increments, provider: str) -> tuple[int, int]:
    """Up and covered ms summed over the minute periods of gpt-4/``provider``."""
    cells = [c for (p, key, _), c in increments.items() if p == "minute" and key[1] == provider]
    return sum(c[0] for c in cells), sum(c[1] for c in cells)


def test_a_provider_verdict_older_than_the_model_frontier_is_clamped() -> None:
    acc = UptimeAccumulator(hold=300_000)
    acc.feed("gpt-4", "openai", 0, True)
    acc.feed("gpt-4", "azure", 100_000, False)  # frontier 100 s
    acc.feed("gpt-4", "openai", 50_000, False)  # arrives late: for the model, from 100 s
    acc.feed("gpt-4", "azure", 200_000, True)
    increments = acc.take()
    # openai: up 0..50 s. The model: up 0..100 s (openai's first verdict), then
    # down 100..200 s (openai's late one from the frontier on; azure down).
    assert minutes(increments, "openai") == (50_000, 50_000)
    assert minutes(increments, MODEL) == (100_000, 200_000)


def test_an_older_verdict_of_the_same_series_is_ignored_and_the_same_ms_replaces() -> None:
    acc = UptimeAccumulator(hold=300_000)
    acc.feed("gpt-4", "openai", 10_000, False)
    acc.feed("gpt-4", "openai", 5_000, True)  # older: ignored
    acc.feed("gpt-4", "openai", 10_000, True)  # the same ms: its state replaces
    acc.feed("gpt-4", "openai", 20_000, True)
    assert minutes(acc.take(), "openai") == (10_000, 10_000)


def test_a_verdict_without_availability_covers_nothing() -> None:
    acc = UptimeAccumulator(hold=300_000)
    acc.feed("gpt-4", "openai", 0, True)
    acc.feed("gpt-4", "openai", 10_000, None)  # e.g. an unsupported deployment
    acc.feed("gpt-4", "openai", 50_000, True)
    assert minutes(acc.take(), "openai") == (10_000, 10_000)
    assert minutes(UptimeAccumulator(300_000, dict(acc.latest)).take(), "openai") == (0, 0)


def test_the_accumulator_continues_from_what_storage_kept() -> None:
    first = UptimeAccumulator(hold=300_000)
    first.feed("gpt-4", "openai", 0, True)
    first.feed("gpt-4", "azure", 10_000, False)
    first.take()
    second = UptimeAccumulator(300_000, dict(first.latest), dict(first.frontiers))
    second.feed("gpt-4", "openai", 20_000, False)
    # openai up 0..20 s; the model up 10..20 s (from its frontier, openai still up).
    increments = second.take()
    assert minutes(increments, "openai") == (20_000, 20_000)
    assert minutes(increments, MODEL) == (10_000, 10_000)


def test_the_open_tail_of_a_model_is_the_union_of_its_providers_holds() -> None:
    holds = [(0, True), (100_000, False)]
    assert open_tail(100_000, holds, 300_000, 200_000) == ((100_000, 200_000),) * 2
    assert open_tail(100_000, holds, 300_000, 350_000) == (
        (100_000, 300_000), (100_000, 350_000)
    )
    assert open_tail(100_000, holds, 300_000, 500_000) == (
        (100_000, 300_000), (100_000, 400_000)
    )
    assert open_tail(None, [], 300_000, 500_000) == ((0, 0), (0, 0))


def test_intervals_across_period_boundaries_are_split() -> None:
    acc = UptimeAccumulator(hold=10_000_000)
    acc.feed("gpt-4", "openai", 3_590_000, True)  # 10 s before the first whole hour
    acc.feed("gpt-4", "openai", 3_670_000, False)
    cells = {(p, start): c[:2] for (p, key, start), c in acc.take().items() if key[1] == "openai"}
    assert cells[("minute", 3_540_000)] == [10_000, 10_000]
    assert cells[("minute", 3_600_000)] == [60_000, 60_000]
    assert cells[("minute", 3_660_000)] == [10_000, 10_000]
    assert cells[("hour", 0)] == [10_000, 10_000]
    assert cells[("hour", 3_600_000)] == [70_000, 70_000]
    assert cells[("day", 0)] == [80_000, 80_000]


async def test_a_write_into_periods_a_query_kept_is_seen_by_the_next_query(
    tmp_path: Path,
) -> None:
    health = HealthState(lambda model, provider: CheckSchedule(interval=10))
    config = StorageConfig(enabled=True, path=str(tmp_path / "h.db"), flush_interval=3600.0)
    async with open_storage(
        config, health, known=KNOWN, wall_clock=Clock(D + 100), hold_limit=10_000
    ) as storage:
        health.record(probe_result(H, checked_at=D - 7200))
        assert await storage.flush()
        # All of it is the open tail so far: the hours before midnight hold nothing yet.
        first = await storage.uptime(86400)
        assert seconds(first.adapters[("gpt-4", "openai")]) == (7300, 7300)
        assert await storage.uptime(86400) == first  # the kept hours, the same answer
        # The next verdict closes the hold: its 7,200 s before midnight land in those hours.
        health.record(probe_result(U, checked_at=D + 50))
        assert await storage.flush()
        second = await storage.uptime(86400)
        health.close()
    assert seconds(second.adapters[("gpt-4", "openai")]) == (7250, 7300)
    assert seconds(second.models["gpt-4"]) == (7250, 7300)

"""Alert spells across a restart: storage restores verdicts silently, the notifier carries outages on.

The new process restores each adapter's last verdict (``HealthState.restore``:
no transition) before the notifier starts; the notifier resumes the spell of
every adapter restored down or degraded from when it began (``restored_since``,
else the verdict's ``checked_at``). Time runs on the MockClock: clock 0 is
the restart, results carry ``checked_at = EPOCH + clock``. The start of each
spell read back from a real SQLite file (:mod:`service.live.storage_spells`)
is tested at the end; the whole service restarted on one file is in
tests/system/test_alerts_restart.py.
"""

from __future__ import annotations

import functools
from pathlib import Path

import trio
import trio.testing

from adapters import FailureKind
from service.config import StorageConfig
from service.engine.report import ProbeStatus
from service.live.state import HealthState
from service.live.storage import open_storage
from service.live.storage_spells import restored_spell_starts
from tests.support import alerts
from tests.support.alerts import EPOCH, channel, delivered, new_state, record
from tests.support.fakes import probe_result

H, D, U = ProbeStatus.HEALTHY, ProbeStatus.DEGRADED, ProbeStatus.UNHEALTHY
KEY = ("gpt-4", "openai")


def restore(state: HealthState, reported: ProbeStatus, age: float) -> None:
    """The verdict storage loads at the restart: ``reported``, checked ``age`` seconds ago."""
    failure = None if reported.usable else FailureKind.HTTP_STATUS
    error = None if reported.usable else "HTTP 503: upstream unavailable"
    state.restore(
        probe_result(reported, failure=failure, error=error, checked_at=EPOCH - age),
        reported, age,
    )


alerting = functools.partial(alerts.alerting, tags={KEY: frozenset()})


async def test_an_outage_restored_30s_old_is_announced_min_duration_after_its_real_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    restore(state, U, age=30)  # down since 07:59:30 (no transition known: its own time)
    async with alerting([channel(min_duration=60, repeat_every=300)], state) as (notifier, rec):
        await trio.sleep(10)
        record(state, U)  # still down: the same level, no transition
        await notifier.wait_until(delivered(3))  # down, then two reminders
        await trio.sleep(700 - trio.current_time())
        record(state, H)  # up at 700: down for 730 s
        await notifier.wait_until(delivered(4))
    assert rec["ops"].times == [30.0, 330.0, 630.0, 700.0]
    assert rec["ops"].titles == [
        "gpt-4 / openai is down", "gpt-4 / openai is still down",
        "gpt-4 / openai is still down", "gpt-4 / openai recovered",
    ]
    down, reminder = rec["ops"].sent[0][1], rec["ops"].sent[1][1]
    assert down.body == (
        "gpt-4 / openai has been down for 1m 0s (since 2027-01-15 07:59:30 UTC).\n"
        "Last result: unhealthy (http_status): HTTP 503: upstream unavailable"
    )
    assert reminder.body.startswith("gpt-4 / openai has been down for 6m 0s (since 2027-01-15 07:59:30")
    assert rec["ops"].sent[3][1].body == (
        "gpt-4 / openai is healthy again after 12m 10s down "
        "(from 2027-01-15 07:59:30 UTC to 08:11:40 UTC)."
    )


async def test_a_restored_spell_counts_from_the_stored_transition_not_the_last_verdict(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    restore(state, U, age=5)  # the last verdict is 5 s old; the outage began 45 s ago
    async with alerting(
        [channel(min_duration=60)], state, restored_since={KEY: EPOCH - 45}
    ) as (notifier, rec):
        await notifier.wait_until(delivered(1))
    assert rec["ops"].times == [15.0]
    assert "down for 1m 0s (since 2027-01-15 07:59:15 UTC)" in rec["ops"].sent[0][1].body


async def test_a_restored_outage_past_min_duration_sends_no_duplicate_then_reminds_and_recovers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Down for 10 min at the restart: the old process announced it (most likely). Nothing now;
    # reminders keep their schedule (announced at -540, reminded at -240, then 60, 360...).
    state = new_state()
    restore(state, U, age=5)
    channels = [channel(min_duration=60, repeat_every=300), channel("quiet", min_duration=60)]
    async with alerting(channels, state, restored_since={KEY: EPOCH - 600}) as (notifier, rec):
        await trio.sleep(59)
        assert rec["ops"].sent == [] and rec["quiet"].sent == []
        await notifier.wait_until(delivered(1))
        await trio.sleep(100 - trio.current_time())
        record(state, H)  # up at 100: down for 700 s
        await notifier.wait_until(delivered(2))
        await notifier.wait_until(delivered(1, "quiet"))
    assert rec["ops"].times == [60.0, 100.0]
    assert rec["ops"].titles == ["gpt-4 / openai is still down", "gpt-4 / openai recovered"]
    assert "down for 11m 0s (since 2027-01-15 07:50:00 UTC)" in rec["ops"].sent[0][1].body
    assert rec["quiet"].titles == ["gpt-4 / openai recovered"]  # no reminders asked: only the end
    assert rec["quiet"].sent[0][1].body == (
        "gpt-4 / openai is healthy again after 11m 40s down "
        "(from 2027-01-15 07:50:00 UTC to 08:01:40 UTC)."
    )


async def test_a_restored_healthy_adapter_sends_nothing_and_a_later_outage_is_alerted_as_usual(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    restore(state, H, age=5)
    async with alerting([channel(min_duration=30)], state) as (notifier, rec):
        record(state, H)
        await trio.sleep(600)
        assert rec["ops"].sent == []
        record(state, U)  # down at 600
        await notifier.wait_until(delivered(1))
    assert rec["ops"].times == [630.0]


async def test_a_restored_outage_ending_within_min_duration_was_a_flap_and_sends_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    restore(state, U, age=30)
    async with alerting([channel(min_duration=60)], state) as (notifier, rec):
        await trio.sleep(20)
        record(state, H)  # up at 20: down for 50 s in all
        await trio.sleep(600)
        assert rec["ops"].sent == []
        assert notifier.channel("ops").pending == 0


async def test_a_restored_degraded_spell_is_followed_by_channels_on_degraded_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    restore(state, D, age=5)
    channels = [channel(on=["degraded", "recovered"], min_duration=60), channel("down")]
    async with alerting(channels, state, restored_since={KEY: EPOCH - 120}) as (notifier, rec):
        await trio.sleep(30)
        assert rec["ops"].sent == []  # past min_duration at the restart: announced before
        record(state, H)
        await notifier.wait_until(delivered(1))
        await trio.sleep(600)
    assert rec["ops"].titles == ["gpt-4 / openai recovered"]
    assert "healthy again after 2m 30s degraded" in rec["ops"].sent[0][1].body
    assert rec["down"].sent == []  # healthy after degraded is no recovery from down


async def test_an_adapter_that_recovered_before_the_notifier_started_is_not_resumed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    restore(state, U, age=30)
    record(state, H)  # its transition went to nobody: the notifier was not running yet
    async with alerting([channel(min_duration=60)], state) as (_, rec):
        await trio.sleep(600)
    assert rec["ops"].sent == []


# -- the start of each restored spell, read back from the file ----------------------


async def test_spell_starts_come_from_the_stored_transition_into_the_restored_level(
    tmp_path: Path,
) -> None:
    path = tmp_path / "health.db"
    config = StorageConfig(enabled=True, path=str(path), flush_interval=3600.0)
    known = {KEY, ("gpt-4", "azure"), ("claude", "anthropic")}
    base = EPOCH - 1000

    before = new_state()
    async with open_storage(config, before, known=known, wall_clock=lambda: base + 200):
        for at, status in ((0, H), (10, U), (20, U), (30, U)):
            failure = None if status.usable else FailureKind.HTTP_STATUS
            before.record(probe_result(status, failure=failure, checked_at=base + at))
        before.record(probe_result(U, provider="azure", failure=FailureKind.HTTP_STATUS,
                                   checked_at=base + 40))
        before.record(probe_result(H, model="claude", provider="anthropic", checked_at=base + 5))
        await trio.testing.wait_all_tasks_blocked()  # the transitions forwarded
        before.close()

    after = new_state()
    async with open_storage(config, after, known=known, wall_clock=lambda: base + 300):
        starts = await restored_spell_starts(str(path), after.restored())
        after.close()
    assert sorted((r.model, r.provider, r.reported) for r in after.restored()) == [
        ("claude", "anthropic", H), ("gpt-4", "azure", U), ("gpt-4", "openai", U),
    ]
    # openai: down since the transition at +10 (not its last verdict at +30); azure's first
    # result was down (previous None); claude is healthy: no spell.
    assert starts == {KEY: base + 10, ("gpt-4", "azure"): base + 40}


async def test_spell_starts_without_a_readable_file_are_empty(tmp_path: Path) -> None:
    state = new_state()
    state.restore(probe_result(U, failure=FailureKind.HTTP_STATUS, checked_at=EPOCH), U, 1.0)
    assert await restored_spell_starts(":memory:", state.restored()) == {}
    assert await restored_spell_starts(str(tmp_path / "missing.db"), state.restored()) == {}
    (tmp_path / "garbage.db").write_bytes(b"not a database" * 100)
    assert await restored_spell_starts(str(tmp_path / "garbage.db"), state.restored()) == {}
    assert not (tmp_path / "missing.db").exists()

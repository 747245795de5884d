"""Storage: batching, the restart load, incremental rollups and retention, a locked database,
migrations, reads beside writes.

A real SQLite file in tmp_path; flushes are driven by hand (``flush()``) or
by closing, never by waiting for time to pass.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest
import trio
import trio.testing

from adapters import FailureKind
from service.config import CheckSchedule, StorageConfig
from service.engine.report import ProbeStatus
from service.live.state import HealthState
from service.live.storage import (
    SCHEMA_VERSION,
    Storage,
    StorageError,
    hold_limit_for,
    migrate,
    open_storage,
)
from service.live.storage_schema import FAILURE_CODES, STATUS_CODES
from tests.support.fakes import probe_result

H, U = ProbeStatus.HEALTHY, ProbeStatus.UNHEALTHY
#: A whole minute (and 780 s into an hour) in unix time.
B = 1_699_999_980.0
KNOWN = {("gpt-4", "openai"), ("gpt-4", "azure")}


def soon() -> float:
    """The wall clock of these tests: just after their results (nothing is old enough to prune)."""
    return B + 200


def config(path: Path, **changes: object) -> StorageConfig:
    # An hour between flushes: tests flush by hand.
    values: dict[str, object] = {"enabled": True, "path": str(path), "flush_interval": 3600.0}
    return StorageConfig(**{**values, **changes})  # type: ignore[arg-type]


def state() -> HealthState:
    return HealthState(lambda model, provider: CheckSchedule(interval=10))


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        found = db.execute(sql).fetchall()
    db.close()
    return found


def ms(seconds: float) -> int:
    return round(seconds * 1000)


async def test_many_results_are_written_in_one_transaction(tmp_path: Path) -> None:
    health = state()
    async with open_storage(config(tmp_path / "h.db"), health, known=KNOWN, wall_clock=soon) as storage:
        for i in range(50):
            health.record(probe_result(H, checked_at=B + i))
        await trio.testing.wait_all_tasks_blocked()  # the transition forwarded
        assert storage.stats()["pending"] == 51  # 50 results and the first transition
        assert await storage.flush()
        assert (storage.commits, storage.writes, storage.stats()["pending"]) == (1, 51, 0)
        health.close()
    assert rows(tmp_path / "h.db", "SELECT count(*) FROM results") == [(50,)]
    assert rows(tmp_path / "h.db", "SELECT previous, current FROM transitions") == [
        (None, STATUS_CODES[H])
    ]


async def test_raw_rows_are_small_ints_with_error_text_only_when_there_is_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.db"
    health = state()
    async with open_storage(config(path), health, known=KNOWN, wall_clock=soon):
        health.record(probe_result(H, checked_at=B, latency_ms=12.3456, http_status=200))
        health.record(probe_result(
            U, checked_at=B + 10, failure=FailureKind.AUTH, error="401: bad key", http_status=401
        ))
        health.close()
    assert rows(path, "SELECT s.model, s.provider, s.adapter, r.at, r.status, r.reported, "
                "r.latency_us, r.failure, r.http_status, r.error FROM results r "
                "JOIN series s ON s.id = r.series ORDER BY r.at") == [
        ("gpt-4", "openai", "OpenaiAdapter", ms(B), 0, 0, 12346, None, 200, None),
        ("gpt-4", "openai", "OpenaiAdapter", ms(B + 10), 2, 2, 12000,
         FAILURE_CODES[FailureKind.AUTH], 401, "401: bad key"),
    ]


def test_every_status_and_failure_kind_has_a_stored_code() -> None:
    assert set(STATUS_CODES) == set(ProbeStatus)
    assert set(FAILURE_CODES) == set(FailureKind)
    assert len(set(FAILURE_CODES.values())) == len(FailureKind)


async def test_a_restart_loads_the_last_verdicts_with_their_age(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "h.db"
    first = state()
    async with open_storage(config(path), first, known=KNOWN, wall_clock=soon):
        first.record(probe_result(H, checked_at=B))
        first.record(probe_result(U, checked_at=B + 10, failure=FailureKind.HTTP_STATUS))
        first.record(probe_result(H, provider="azure", checked_at=B + 5))
        first.record(probe_result(H, model="gone", checked_at=B + 5))  # no longer configured
        first.close()  # the last flush happens on the way out
    second = state()
    async with open_storage(config(path), second, known=KNOWN, wall_clock=lambda: B + 130):
        openai, azure = second.get("gpt-4", "openai"), second.get("gpt-4", "azure")
        assert openai is not None and azure is not None
        assert openai.reported is U and openai.latest.failure is FailureKind.HTTP_STATUS
        assert openai.latest.adapter == "OpenaiAdapter" and openai.latest.latency_ms == 12.0
        assert trio.current_time() - openai.at == pytest.approx(120.0)
        assert trio.current_time() - azure.at == pytest.approx(125.0)
        assert second.get("gone", "openai") is None
        assert [e.checked_at for e in second.history("gpt-4", "openai")] == [B + 10]
        second.close()


async def test_rollups_are_upserted_time_weighted_with_each_write(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    health = state()
    async with open_storage(config(path), health, known=KNOWN, wall_clock=soon) as storage:
        health.record(probe_result(H, checked_at=B))
        health.record(probe_result(U, checked_at=B + 30))
        assert await storage.flush()
        health.record(probe_result(H, checked_at=B + 90))
        health.record(probe_result(ProbeStatus.TIMEOUT, checked_at=B + 150))
        assert await storage.flush()
        health.close()
    # B up until B+30; down until B+90; up until B+150; the hold from B+150 is still open.
    minutes = ("SELECT s.provider, r.start, r.up_ms, r.covered_ms, r.healthy, r.degraded, r.down, "
               "r.other FROM rollups_minute r JOIN series s ON s.id = r.series "
               "ORDER BY s.provider DESC, r.start")
    assert rows(path, minutes) == [
        ("openai", B, 30_000, 60_000, 1, 0, 1, 0),
        ("openai", B + 60, 30_000, 60_000, 1, 0, 0, 0),
        ("openai", B + 120, 30_000, 30_000, 0, 0, 1, 0),
        ("", B, 30_000, 60_000, 1, 0, 1, 0),  # the model: its one provider
        ("", B + 60, 30_000, 60_000, 1, 0, 0, 0),
        ("", B + 120, 30_000, 30_000, 0, 0, 1, 0),
    ]
    for table, start in (("hour", B - 780), ("day", B - B % 86400)):
        assert rows(path, f"SELECT start, up_ms, covered_ms, healthy, down FROM rollups_{table} "
                    "ORDER BY series") == [(start, 90_000, 150_000, 2, 2)] * 2
    assert rows(path, "SELECT provider, last_at, last_up FROM series ORDER BY provider") == [
        ("", ms(B + 150), None), ("openai", ms(B + 150), 0)
    ]


async def test_a_restart_continues_the_rollups_where_they_were_committed(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    for at in (B, B + 10):
        health = state()
        async with open_storage(config(path), health, known=KNOWN, wall_clock=soon):
            health.close()  # nothing recorded: the load only
        health = state()
        async with open_storage(config(path), health, known=KNOWN, wall_clock=soon):
            health.record(probe_result(H, checked_at=at + 1))  # newer than what was loaded
            health.close()
    assert rows(path, "SELECT up_ms, covered_ms FROM rollups_minute ORDER BY series") == [
        (10_000, 10_000), (10_000, 10_000)
    ]


async def test_pruning_keeps_raw_rows_and_minutes_for_raw_retention(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    health = state()
    cfg = config(path, raw_retention=3600.0, rollup_retention=7200.0)
    async with open_storage(cfg, health, known=KNOWN, wall_clock=lambda: B + 120 + 3600) as storage:
        for at, status in ((B, H), (B + 30, U), (B + 90, H), (B + 150, H)):
            health.record(probe_result(status, checked_at=at))
        assert await storage.flush()
        health.close()
    assert rows(path, "SELECT at FROM results") == [(ms(B + 150),)]
    # A minute goes once it ended before the cutoff (B + 120); hours stay rollup_retention.
    assert rows(path, "SELECT DISTINCT start FROM rollups_minute ORDER BY start") == [
        (B + 60,), (B + 120,)
    ]
    assert rows(path, "SELECT up_ms, covered_ms FROM rollups_hour") == [(90_000, 150_000)] * 2


async def test_pruning_drops_transitions_and_rollups_after_rollup_retention(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    health = state()
    cfg = config(path, raw_retention=3600.0, rollup_retention=3600.0)
    clock = [B + 100]
    async with open_storage(cfg, health, known=KNOWN, wall_clock=lambda: clock[0]) as storage:
        health.record(probe_result(H, checked_at=B))
        health.record(probe_result(U, checked_at=B + 10))
        assert await storage.flush()
        clock[0] = B + 2 * 86400 + 100  # the next prune sees all of it as old
        health.record(probe_result(H, checked_at=B + 2 * 86400))
        assert await storage.flush()
        health.close()
    assert rows(path, "SELECT at FROM transitions") == [(ms(B + 2 * 86400),)]
    for table in ("minute", "hour", "day"):
        assert rows(path, f"SELECT count(*) FROM rollups_{table} WHERE start < {B + 86400}") == [
            (0,)
        ]


async def test_a_locked_database_never_stops_checks_and_writing_resumes(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    health = state()
    async with open_storage(config(path, max_pending=5), health, known=KNOWN, wall_clock=soon) as storage:
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        for i in range(8):
            health.record(probe_result(H if i % 2 else U, checked_at=B + i))
        await trio.testing.wait_all_tasks_blocked()  # the transitions forwarded (and dropped)
        current = health.get("gpt-4", "openai")
        assert current is not None and current.latest.checked_at == B + 7  # checks went on
        assert not await storage.flush()
        stats = storage.stats()
        assert stats["status"] == "failing" and "locked" in stats["last_error"]
        assert stats["pending"] == 5 and stats["dropped"] > 0 and storage.failures == 1
        locker.execute("ROLLBACK")
        locker.close()
        assert await storage.flush()
        assert storage.stats()["status"] == "ok" and storage.stats()["pending"] == 0
        health.close()
    # The first five results waited; the rest, and every transition, were dropped.
    assert rows(path, "SELECT at FROM results ORDER BY at") == [(ms(B + i),) for i in range(5)]
    assert storage.dropped == 3 + 8
    # The failed attempt added nothing to the rollups: B+0..B+4 counted once.
    assert rows(path, "SELECT sum(covered_ms) FROM rollups_minute GROUP BY series") == [
        (4000,), (4000,)
    ]


async def test_results_with_impossible_times_are_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    health = state()
    async with open_storage(config(path), health, known=KNOWN, wall_clock=soon) as storage:
        health.record(probe_result(H, checked_at=B))
        health.record(probe_result(H, checked_at=1e300))  # the state takes it; storage cannot
        health.record(probe_result(H, provider="azure", checked_at=math.nan))
        await trio.testing.wait_all_tasks_blocked()
        assert await storage.flush()
        health.close()
    assert rows(path, "SELECT at FROM results") == [(ms(B),)]
    assert storage.dropped >= 2 and not storage.failing


async def test_an_unwritable_path_never_stops_the_service(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    health = state()
    async with open_storage(
        config(tmp_path / "file" / "h.db"), health, known=KNOWN, wall_clock=soon
    ) as storage:
        assert storage.failing and storage.failures == 1
        health.record(probe_result(H, checked_at=B))
        await trio.testing.wait_all_tasks_blocked()  # the transition forwarded
        assert not await storage.flush()
        assert storage.stats()["pending"] == 2  # the result and its transition wait
        health.close()


def test_an_empty_file_is_migrated_to_the_current_schema(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    assert migrate(db) == 0
    assert migrate(db) == SCHEMA_VERSION  # idempotent
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "series", "results", "transitions", "rollups_minute", "rollups_hour", "rollups_day"
    } <= tables
    keys = [(r[1], r[5]) for r in db.execute("PRAGMA table_info(results)") if r[5]]
    assert keys == [("series", 1), ("at", 2)]
    assert "WITHOUT ROWID" in db.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'results'"
    ).fetchone()[0]
    db.close()


async def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    db.close()
    with pytest.raises(StorageError, match=r"newer router-health \(schema version 2"):
        async with open_storage(config(path), state(), known=KNOWN, wall_clock=soon):
            pass


async def test_storage_opens_in_memory(tmp_path: Path) -> None:
    health = state()
    storage: Storage
    async with open_storage(config(Path(":memory:")), health, known=KNOWN, wall_clock=soon) as storage:
        health.record(probe_result(H, checked_at=B))
        assert await storage.flush()
        assert (await storage.uptime(3600)).adapters[("gpt-4", "openai")].covered_seconds == 200
        health.close()
    assert storage.writes == 2


async def test_a_query_never_waits_behind_a_write(tmp_path: Path) -> None:
    health = state()
    async with open_storage(config(tmp_path / "h.db"), health, known=KNOWN, wall_clock=soon) as storage:
        health.record(probe_result(H, checked_at=B))
        assert await storage.flush()
        # The writer's thread is taken (as by a flush waiting for a lock); a
        # query that needed it would never end, and the guard would fail it.
        async with storage._limiter:
            with trio.fail_after(30):
                report = await storage.uptime(3600)
        assert report.models["gpt-4"].up_seconds == 200
        health.close()


def test_the_hold_limit_is_three_longest_intervals_and_at_least_300_s() -> None:
    assert hold_limit_for([]) == 300
    assert hold_limit_for([10, 30]) == 300
    assert hold_limit_for([10, 600]) == 1800

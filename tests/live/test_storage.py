"""Storage: batching, the restart load, rollups and retention, a locked database, migrations.

A real SQLite file in tmp_path; flushes are driven by hand (``flush()``) or
by closing, never by waiting for time to pass.
"""

from __future__ import annotations

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
    migrate,
    open_storage,
    rollup,
)
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
        return db.execute(sql).fetchall()


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
        (None, "healthy")
    ]


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
        assert trio.current_time() - openai.at == pytest.approx(120.0)
        assert trio.current_time() - azure.at == pytest.approx(125.0)
        assert second.get("gone", "openai") is None
        assert [e.checked_at for e in second.history("gpt-4", "openai")] == [B + 10]
        second.close()


def test_rollups_are_time_weighted_per_minute_and_hour(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "h.db", isolation_level=None)
    migrate(db)
    db.executemany(
        "INSERT INTO results (model, provider, checked_at, status, reported, adapter) "
        "VALUES ('m', 'p', ?, ?, ?, 'A')",
        [(B, "healthy", "healthy"), (B + 30, "unhealthy", "unhealthy"),
         (B + 90, "healthy", "healthy"), (B + 150, "timeout", "healthy")],
    )
    rollup(db, B + 120)
    # B+0 up until B+30; B+30 down until B+90; B+90 up until the end (B+120).
    assert db.execute(
        "SELECT start, healthy, degraded, down, other, up_seconds, covered_seconds "
        "FROM rollups_minute ORDER BY start"
    ).fetchall() == [(B, 1, 0, 1, 0, 30.0, 60.0), (B + 60, 1, 0, 0, 0, 30.0, 60.0)]
    assert db.execute("SELECT start, healthy, down, up_seconds, covered_seconds "
                      "FROM rollups_hour").fetchall() == [(B - 780, 2, 1, 60.0, 120.0)]
    db.close()


async def test_pruning_rolls_up_raw_results_before_deleting_them(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    health = state()
    cfg = config(path, raw_retention=3600.0, rollup_retention=7200.0)
    async with open_storage(cfg, health, known=KNOWN, wall_clock=lambda: B + 120 + 3600) as storage:
        for at, status in ((B, H), (B + 30, U), (B + 90, H), (B + 150, H)):
            health.record(probe_result(status, checked_at=at))
        assert await storage.flush()
        health.close()
    assert rows(path, "SELECT checked_at FROM results") == [(B + 150,)]
    assert rows(path, "SELECT start, up_seconds, covered_seconds FROM rollups_minute "
                "ORDER BY start") == [(B, 30.0, 60.0), (B + 60, 30.0, 60.0)]


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
    assert rows(path, "SELECT checked_at FROM results ORDER BY checked_at") == [
        (B + i,) for i in range(5)
    ]
    assert storage.dropped == 3 + 8


def test_an_empty_file_is_migrated_to_the_current_schema(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    assert migrate(db) == 0
    assert migrate(db) == SCHEMA_VERSION  # idempotent
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"results", "transitions", "rollups_minute", "rollups_hour"} <= tables
    indexes = db.execute("PRAGMA index_info(results_adapter_time)").fetchall()
    assert [r[2] for r in indexes] == ["model", "provider", "checked_at"]
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
        health.close()
    assert storage.writes == 2

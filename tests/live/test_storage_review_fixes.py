"""Storage after the issue 16 review: query errors wrapped, the draft schema moved aside,
incidents read from ``since`` on, filtered by models before the limit, and unsupported
providers left out of "every checked provider".

A real SQLite file in tmp_path; verdicts go through the live state and the
writer (one flush), except where a file is damaged or written by an old
draft on purpose.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import trio
import trio.testing

from adapters import FailureKind
from service.config import CheckSchedule, StorageConfig
from service.engine.report import ProbeStatus
from service.live.incidents import Change, incidents_of
from service.live.state import HealthState
from service.live.storage import Storage, StorageError, open_storage
from service.live.storage_schema import SCHEMA_VERSION, STATUS_CODES
from tests.support.fakes import probe_result
from tests.support.storage import DRAFT_ROW, DRAFT_SCHEMA

H, U, NA = ProbeStatus.HEALTHY, ProbeStatus.UNHEALTHY, ProbeStatus.UNSUPPORTED
#: 2023-11-15T00:00:00Z.
D = 1_700_006_400.0
DOWN_CODES = (STATUS_CODES[U], STATUS_CODES[ProbeStatus.TIMEOUT])
KNOWN = {("gpt-4", "openai"), ("gpt-4", "azure"), ("claude", "anthropic")}
Verdict = tuple[str, str, float, ProbeStatus]


def config(path: Path, **changes: object) -> StorageConfig:
    values: dict[str, object] = {"enabled": True, "path": str(path), "flush_interval": 3600.0}
    return StorageConfig(**{**values, **changes})  # type: ignore[arg-type]


def state() -> HealthState:
    return HealthState(lambda model, provider: CheckSchedule(interval=10))


@contextlib.asynccontextmanager
async def stored(
    path: Path, verdicts: Sequence[Verdict], now: float, *,
    known: set[tuple[str, str]] = KNOWN, **changes: object,
) -> AsyncIterator[Storage]:
    """Storage on ``path`` holding ``verdicts`` (one flush), read at ``now``."""
    health = state()
    async with open_storage(config(path, **changes), health, known=known,
                            wall_clock=lambda: now) as storage:
        for model, provider, at, status in verdicts:
            failure = FailureKind.HTTP_STATUS if status is U else None
            health.record(probe_result(
                status, model=model, provider=provider, checked_at=at, failure=failure
            ))
        await trio.testing.wait_all_tasks_blocked()  # the transitions forwarded
        assert await storage.flush()
        yield storage
        health.close()


async def every_query_fails(storage: Storage) -> list[StorageError]:
    errors = []
    for query in (
        lambda: storage.uptime(3600),
        lambda: storage.daily("gpt-4", 2),
        lambda: storage.incidents(),
        lambda: storage.history("gpt-4", "openai", before=None, limit=1),
    ):
        with pytest.raises(StorageError) as caught:
            await query()
        errors.append(caught.value)
    return errors


# -- 1. a database that cannot be read: StorageError, naming the path and the cause ---------


async def test_queries_on_a_file_that_is_not_a_database_raise_storage_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"not a database at all" * 500)
    health = state()
    async with open_storage(config(path), health, known=KNOWN, wall_clock=lambda: D) as storage:
        assert storage.failing  # the load failed, and the service goes on
        for error in await every_query_fails(storage):
            assert isinstance(error.__cause__, sqlite3.DatabaseError)
            assert str(path) in str(error)
        health.close()


async def test_queries_on_tables_dropped_behind_storage_raise_storage_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.db"
    async with stored(path, [("gpt-4", "openai", D, H)], D + 10) as storage:
        assert (await storage.uptime(3600)).adapters[("gpt-4", "openai")].covered_seconds == 10
        with sqlite3.connect(path) as db:
            for table in ("results", "transitions", "rollups_minute", "rollups_day"):
                db.execute(f"DROP TABLE {table}")
        db.close()
        for error in await every_query_fails(storage):
            assert isinstance(error.__cause__, sqlite3.OperationalError)


async def test_a_history_cursor_far_in_the_past_or_future_is_a_bound_not_an_error(
    tmp_path: Path,
) -> None:
    async with stored(tmp_path / "h.db", [("gpt-4", "openai", D, H)], D + 10) as storage:
        assert await storage.history("gpt-4", "openai", before=-1e300, limit=5) == []
        assert len(await storage.history("gpt-4", "openai", before=1e300, limit=5)) == 1
        assert await storage.incidents(since=-1e300) == []


# -- 2. a file written by the draft schema ---------------------------------------------------


def draft_file(path: Path, scratch: Path) -> None:
    """A draft-schema database at ``path`` whose last row is still in its -wal file."""
    source = scratch / "source.db"
    db = sqlite3.connect(source, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(DRAFT_SCHEMA)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute(DRAFT_ROW)
    for suffix in ("", "-wal", "-shm"):
        shutil.copy(f"{source}{suffix}", f"{path}{suffix}")
    db.close()


def drafts(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if "draft" in p.name]


def tables(path: Path | str) -> set[str]:
    with sqlite3.connect(path) as db:
        found = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    return found


async def test_a_draft_schema_file_is_moved_aside_and_a_new_one_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "health.db"
    (tmp_path / "scratch").mkdir()
    draft_file(path, tmp_path / "scratch")
    aside = tmp_path / "health.db.draft-20231115T000010Z"  # the wall clock's time, UTC
    with caplog.at_level(logging.WARNING, logger="router_health.storage"):
        async with stored(path, [("gpt-4", "openai", D, H)], D + 10) as storage:
            report = await storage.uptime(60)
            assert report.adapters[("gpt-4", "openai")].covered_seconds == 10
            assert not storage.failing
    assert "series" in tables(path)
    with sqlite3.connect(aside) as db:  # the draft, its -wal along with it
        assert db.execute("SELECT model, provider, status FROM results").fetchall() == [
            ("gpt-4", "openai", "healthy")
        ]
    db.close()
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = warning.getMessage()
    assert str(path) in message and str(aside) in message and "draft" in message


async def test_a_draft_schema_file_that_cannot_be_moved_aside_is_refused_saying_what_to_do(
    tmp_path: Path,
) -> None:
    path = tmp_path / "health.db"
    (tmp_path / "scratch").mkdir()
    draft_file(path, tmp_path / "scratch")
    (tmp_path / "health.db.draft-20231115T000010Z").mkdir()  # in the way: rename fails
    with pytest.raises(StorageError, match=r"draft.*delete it.*\[storage\] path") as caught:
        async with stored(path, [], D + 10):
            pass
    assert str(path) in str(caught.value)
    assert "results" in tables(path) and "series" not in tables(path)  # left as it was


async def test_a_current_file_of_the_same_version_is_not_taken_for_the_draft(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.db"
    async with stored(path, [("gpt-4", "openai", D, H)], D + 10):
        pass
    async with stored(path, [], D + 20) as storage:
        assert len(await storage.history("gpt-4", "openai", before=None, limit=5)) == 1
    assert drafts(tmp_path) == []
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT max(version) FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    db.close()


# -- 4. incidents from `since` on -----------------------------------------------------------


async def test_an_incident_open_at_since_is_reported_with_its_true_start(tmp_path: Path) -> None:
    verdicts = [
        ("gpt-4", "openai", D, H), ("gpt-4", "azure", D, H),
        ("gpt-4", "openai", D + 10, U),  # the incident starts
        ("gpt-4", "azure", D + 20, U),  # joins it
        ("gpt-4", "openai", D + 30, H),  # back, azure still down
        ("gpt-4", "azure", D + 500, H),  # the end, after since
        ("gpt-4", "openai", D + 600, U), ("gpt-4", "openai", D + 610, H),
    ]
    async with stored(tmp_path / "h.db", verdicts, D + 1000) as storage:
        incidents = await storage.incidents(since=D + 100)
    assert [(i.started_at, i.ended_at, i.severity, i.adapters) for i in incidents] == [
        (D + 600, D + 610, "partial", ("openai",)),
        (D + 10, D + 500, "major", ("azure", "openai")),
    ]


async def test_incidents_ended_before_since_are_left_out(tmp_path: Path) -> None:
    verdicts = [
        ("gpt-4", "openai", D, U), ("gpt-4", "openai", D + 10, H),
        ("claude", "anthropic", D + 5, U),  # still open
    ]
    async with stored(tmp_path / "h.db", verdicts, D + 1000) as storage:
        assert [(i.model, i.started_at) for i in await storage.incidents(since=D + 10)] == [
            ("claude", D + 5), ("gpt-4", D)  # gpt-4's ended exactly at since: still in
        ]
        assert [(i.model, i.started_at) for i in await storage.incidents(since=D + 11)] == [
            ("claude", D + 5)
        ]


async def test_without_since_incidents_reach_back_rollup_retention(tmp_path: Path) -> None:
    clock = [D + 5020]  # written then (nothing old enough to prune), read an hour later
    health = state()
    cfg = config(tmp_path / "h.db", raw_retention=1800.0, rollup_retention=3600.0)
    async with open_storage(cfg, health, known=KNOWN, wall_clock=lambda: clock[0]) as storage:
        for at, status in ((D + 2000, U), (D + 2010, H), (D + 5000, U), (D + 5010, H)):
            health.record(probe_result(status, checked_at=at))
        await trio.testing.wait_all_tasks_blocked()
        assert await storage.flush()
        assert [i.started_at for i in await storage.incidents()] == [D + 5000, D + 2000]
        clock[0] = D + 2010 + 3600 + 1  # the first one ended past rollup_retention
        assert [i.started_at for i in await storage.incidents()] == [D + 5000]
        health.close()


async def test_reading_from_since_finds_what_reading_every_transition_finds(
    tmp_path: Path,
) -> None:
    rng = random.Random(16)
    statuses = (H, H, H, U, U, ProbeStatus.TIMEOUT, ProbeStatus.DEGRADED, NA)
    verdicts: list[Verdict] = sorted(
        ((m, p, D + rng.uniform(0, 20_000), rng.choice(statuses))
         for m, p in sorted(KNOWN) for _ in range(150)),
        key=lambda v: v[2],
    )
    now = D + 20_000
    async with stored(tmp_path / "h.db", verdicts, now) as storage:
        with sqlite3.connect(tmp_path / "h.db") as db:
            every: dict[str, list[Change]] = {}
            for m, p, at, current, failure in db.execute(
                "SELECT s.model, s.provider, t.at, t.current, t.failure FROM transitions t "
                "JOIN series s ON s.id = t.series"
            ):
                every.setdefault(m, []).append(Change(
                    p, at / 1000, current in DOWN_CODES,
                    None if failure is None else "http_status", checked=current != STATUS_CODES[NA],
                ))
        db.close()
        models = {m: {p for known_model, p in KNOWN if known_model == m} for m in every}
        reference = sorted(
            (i for m, changes in every.items() for i in incidents_of(m, changes, models[m], now=now)),
            key=lambda i: (i.started_at, i.model), reverse=True,
        )
        assert len(reference) > 50
        for since in (None, D + 1000, D + 9_999.5, D + 19_000):
            for limit in (1, 7, 1000):
                for model in (None, "gpt-4"):
                    for open_only, resolved_only in ((False, False), (True, False), (False, True)):
                        expected = [
                            i for i in reference
                            if (since is None or i.ended_at is None or i.ended_at >= since)
                            and (model is None or i.model == model)
                            and not (open_only and i.ended_at is not None)
                            and not (resolved_only and i.ended_at is None)
                        ][:limit]
                        found = await storage.incidents(
                            since=since, limit=limit, model=model, open_only=open_only,
                            resolved_only=resolved_only,
                        )
                        assert found == expected, (since, limit, model, open_only)


# -- 5. models= filters before the limit ----------------------------------------------------


async def test_incidents_of_some_models_are_filtered_before_the_limit(tmp_path: Path) -> None:
    verdicts: list[Verdict] = [("gpt-4", "openai", D, U), ("gpt-4", "openai", D + 5, H)]
    for k in range(20):  # claude flaps after it
        verdicts += [("claude", "anthropic", D + 10 + 2 * k, U),
                     ("claude", "anthropic", D + 11 + 2 * k, H)]
    async with stored(tmp_path / "h.db", verdicts, D + 100) as storage:
        [incident] = await storage.incidents(models=["gpt-4"], limit=1)
        assert (incident.model, incident.started_at) == ("gpt-4", D)
        assert len(await storage.incidents(models=["gpt-4", "claude"])) == 21
        assert await storage.incidents(models=[]) == []
        assert await storage.incidents(models=["claude"], model="gpt-4") == []


# -- 7. unsupported providers are not "checked" ---------------------------------------------


def test_an_unsupported_provider_does_not_keep_an_incident_from_being_major() -> None:
    changes = [
        Change("azure", 5.0, False, checked=False),  # unsupported: never checked
        Change("openai", 10.0, True, "http_status"),
        Change("openai", 20.0, False),
    ]
    [incident] = incidents_of("gpt-4", changes, {"openai", "azure"}, now=100.0)
    assert incident.severity == "major"


def test_a_provider_becoming_unsupported_leaves_the_down_ones_as_every_checked_one() -> None:
    changes = [
        Change("azure", 1.0, False), Change("openai", 1.0, False),
        Change("openai", 10.0, True, "http_status"),  # partial: azure is up
        Change("azure", 15.0, False, checked=False),  # now only openai is checked, and down
        Change("openai", 20.0, False),
    ]
    [incident] = incidents_of("gpt-4", changes, {"openai", "azure"}, now=100.0)
    assert incident.severity == "major"


async def test_stored_unsupported_levels_are_left_out_of_major(tmp_path: Path) -> None:
    verdicts = [
        ("gpt-4", "azure", D, NA), ("gpt-4", "openai", D, H),
        ("gpt-4", "openai", D + 10, U), ("gpt-4", "openai", D + 20, H),
    ]
    async with stored(tmp_path / "h.db", verdicts, D + 100) as storage:
        [incident] = await storage.incidents()
    assert (incident.severity, incident.adapters) == ("major", ("openai",))

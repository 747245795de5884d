"""Results and transitions kept in SQLite across restarts: :class:`Storage`.

One Trio task batches what the live state records into one transaction per
``flush_interval``, run through ``trio.to_thread`` on one connection that
only that worker thread uses (a capacity-1 limiter). Nothing here is on the
probe path: a locked, full or read-only database only makes rows wait in a
bounded buffer (beyond ``max_pending`` they are dropped and counted), the
failure is logged once per change of state, and writing resumes when it can.

Schema (versioned: ``schema_version``; migration 1):

* ``results``: one row per recorded verdict, with the status reported after
  hysteresis; kept ``raw_retention``, indexed by (model, provider, checked_at);
* ``transitions``: every change of reported level; kept ``rollup_retention``;
* ``rollups_minute`` / ``rollups_hour``: per adapter and period, counts of
  raw statuses (healthy, degraded, down = unhealthy or timeout, other) and
  time-weighted ``up_seconds`` / ``covered_seconds``: a verdict holds from
  its ``checked_at`` until the adapter's next one, for at most
  :data:`HOLD_LIMIT` seconds (longer gaps are not covered). Periods are
  rolled up from raw results just before those are pruned; kept
  ``rollup_retention``.

On start, the last verdict of every configured adapter is loaded into the
state with its age (:meth:`HealthState.restore`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection
from pathlib import Path
from typing import Any, Final

import trio
from trio_util import AsyncValue  # type: ignore[import-untyped]

from adapters.base import FailureKind

from ..config import StorageConfig
from ..engine.report import ProbeResult, ProbeStatus
from .state import HealthState, Transition

__all__ = ["HOLD_LIMIT", "SCHEMA_VERSION", "Storage", "StorageError", "open_storage"]

logger = logging.getLogger("router_health.storage")

#: The schema this code writes; a database with a newer one is refused.
SCHEMA_VERSION: Final = 1
#: A verdict counts for uptime until the next one, but never longer than this.
HOLD_LIMIT: Final = 300.0
#: How long one write waits for another connection's lock before it fails.
BUSY_TIMEOUT: Final = 0.5
#: Seconds between two rollup-and-prune passes.
PRUNE_EVERY: Final = 60.0

_MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE results (
        model TEXT NOT NULL, provider TEXT NOT NULL, checked_at REAL NOT NULL,
        status TEXT NOT NULL, reported TEXT NOT NULL, adapter TEXT NOT NULL,
        latency_ms REAL, failure TEXT, error TEXT, http_status INTEGER
    );
    CREATE INDEX results_adapter_time ON results (model, provider, checked_at);
    CREATE INDEX results_time ON results (checked_at);
    CREATE TABLE transitions (
        model TEXT NOT NULL, provider TEXT NOT NULL, at REAL NOT NULL,
        previous TEXT, current TEXT NOT NULL, failure TEXT, error TEXT
    );
    CREATE INDEX transitions_adapter_time ON transitions (model, provider, at);
    CREATE INDEX transitions_time ON transitions (at);
    CREATE TABLE rollups_minute (
        model TEXT NOT NULL, provider TEXT NOT NULL, start REAL NOT NULL,
        healthy INTEGER NOT NULL, degraded INTEGER NOT NULL, down INTEGER NOT NULL,
        other INTEGER NOT NULL, up_seconds REAL NOT NULL, covered_seconds REAL NOT NULL,
        PRIMARY KEY (model, provider, start)
    ) WITHOUT ROWID;
    CREATE INDEX rollups_minute_time ON rollups_minute (start);
    CREATE TABLE rollups_hour (
        model TEXT NOT NULL, provider TEXT NOT NULL, start REAL NOT NULL,
        healthy INTEGER NOT NULL, degraded INTEGER NOT NULL, down INTEGER NOT NULL,
        other INTEGER NOT NULL, up_seconds REAL NOT NULL, covered_seconds REAL NOT NULL,
        PRIMARY KEY (model, provider, start)
    ) WITHOUT ROWID;
    CREATE INDEX rollups_hour_time ON rollups_hour (start);
    """,
)

_RESULT_INSERT: Final = (
    "INSERT INTO results (model, provider, checked_at, status, reported, adapter, "
    "latency_ms, failure, error, http_status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_TRANSITION_INSERT: Final = (
    "INSERT INTO transitions (model, provider, at, previous, current, failure, error) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)

Row = tuple[str, tuple[Any, ...]]  # ("result" | "transition", values)


class StorageError(Exception):
    """A database this version cannot use (written by a newer one); the message says what to do."""


def migrate(db: sqlite3.Connection, source: str = "<database>") -> int:
    """Bring ``db`` to :data:`SCHEMA_VERSION`; returns the version it had."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    found = int(row[0]) if row and row[0] is not None else 0
    if found > SCHEMA_VERSION:
        raise StorageError(
            f"{source}: written by a newer router-health (schema version {found}; this one "
            f"knows up to {SCHEMA_VERSION}): upgrade router-health, or set [storage] path "
            "to another file"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        with db:
            for statement in _MIGRATIONS[version - 1].split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    return found


def rollup(db: sqlite3.Connection, until: float) -> None:
    """Roll raw results before ``until`` (floored to the minute) up into minutes and hours.

    Idempotent: a period is rewritten whole from what raw results cover it.
    """
    end = math.floor(until / 60) * 60
    rows = db.execute(
        "SELECT model, provider, checked_at, status, reported FROM results "
        "WHERE checked_at < ? ORDER BY model, provider, checked_at",
        (end + HOLD_LIMIT,),
    ).fetchall()
    minutes: dict[tuple[str, str, float], list[float]] = {}
    for index, (model, provider, at, status, reported) in enumerate(rows):
        if at >= end:
            continue
        following = rows[index + 1] if index + 1 < len(rows) else None
        hold_end = at + HOLD_LIMIT
        if following is not None and following[:2] == (model, provider):
            hold_end = min(hold_end, following[2])
        hold_end = min(hold_end, end)
        start = math.floor(at / 60) * 60
        cell = minutes.setdefault((model, provider, start), [0, 0, 0, 0, 0.0, 0.0])
        kind = {"healthy": 0, "degraded": 1, "unhealthy": 2, "timeout": 2}.get(status, 3)
        cell[kind] += 1
        up = ProbeStatus(reported).usable
        # Spread the hold over the minutes it spans.
        t = at
        while t < hold_end:
            minute = math.floor(t / 60) * 60
            piece = min(hold_end, minute + 60) - t
            target = minutes.setdefault((model, provider, minute), [0, 0, 0, 0, 0.0, 0.0])
            target[5] += piece
            if up:
                target[4] += piece
            t += piece
    db.executemany(
        "INSERT OR REPLACE INTO rollups_minute VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(m, p, s, *cell) for (m, p, s), cell in minutes.items()],
    )
    hours = {math.floor(s / 3600) * 3600 for (_, _, s) in minutes}
    for hour in sorted(hours):
        db.execute("DELETE FROM rollups_hour WHERE start = ?", (hour,))
        db.execute(
            "INSERT INTO rollups_hour SELECT model, provider, ?, sum(healthy), sum(degraded), "
            "sum(down), sum(other), sum(up_seconds), sum(covered_seconds) FROM rollups_minute "
            "WHERE start >= ? AND start < ? GROUP BY model, provider",
            (hour, hour, hour + 3600),
        )


class Storage:
    """Writes what ``health`` records to ``config.path``; see the module doc."""

    def __init__(
        self,
        config: StorageConfig,
        health: HealthState,
        *,
        known: Collection[tuple[str, str]],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.health = health
        self.known = set(known)
        self.wall_clock = wall_clock
        self._pending: deque[Row] = deque()
        self._limiter = trio.CapacityLimiter(1)
        self._db: sqlite3.Connection | None = None
        self._last_prune = -math.inf
        self.writes = 0  # rows committed
        self.commits = 0  # transactions committed
        self.dropped = 0  # rows dropped: the buffer was full
        self.failures = 0  # failed write attempts
        self.last_error: str | None = None
        self.failing = False
        #: Bumped after every flush attempt (tests wait on it).
        self.flushes: AsyncValue = AsyncValue(0)

    def __repr__(self) -> str:
        return f"Storage(path={self.config.path!r}, pending={len(self._pending)})"

    # -- feeding (listeners: must not block or raise) ------------------------------

    def recorded(self, result: ProbeResult) -> None:
        """A :attr:`HealthState.record_listeners` entry: queue the result it took in."""
        state = self.health.get(result.model, result.provider)
        if state is None or state.latest is not result:
            return  # ignored by the state (a non-verdict, or older than its latest)
        self._queue((
            "result",
            (
                result.model, result.provider, result.checked_at, result.status.value,
                state.reported.value, result.adapter, result.latency_ms,
                result.failure.value if result.failure else None, result.error,
                result.http_status,
            ),
        ))

    def transition(self, transition: Transition) -> None:
        result = transition.result
        self._queue((
            "transition",
            (
                transition.model, transition.provider, result.checked_at,
                None if transition.previous is None else transition.previous.value,
                transition.current.value,
                result.failure.value if result.failure else None, result.error,
            ),
        ))

    def _queue(self, row: Row) -> None:
        if len(self._pending) >= self.config.max_pending:
            self.dropped += 1
            return
        self._pending.append(row)

    def stats(self) -> dict[str, Any]:
        """For ``/readyz`` and ``/metrics``."""
        return {
            "status": "failing" if self.failing else "ok",
            "pending": len(self._pending),
            "dropped": self.dropped,
            "writes": self.writes,
            "failures": self.failures,
            "last_error": self.last_error,
        }

    # -- the worker thread's side (only ever one call at a time) -------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            path = self.config.path
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT, check_same_thread=False, isolation_level=None
            )
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                migrate(db, path)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _load(self) -> list[tuple[Any, ...]]:
        db = self._connect()
        return db.execute(
            "SELECT r.model, r.provider, r.adapter, r.status, r.reported, r.latency_ms, "
            "r.checked_at, r.http_status, r.error, r.failure FROM results r JOIN ("
            "SELECT model, provider, max(checked_at) AS last FROM results "
            "GROUP BY model, provider) l ON r.model = l.model AND r.provider = l.provider "
            "AND r.checked_at = l.last"
        ).fetchall()

    def _write(self, batch: list[Row], now: float) -> None:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_RESULT_INSERT, [v for kind, v in batch if kind == "result"])
            db.executemany(_TRANSITION_INSERT, [v for kind, v in batch if kind == "transition"])
            if now - self._last_prune >= PRUNE_EVERY:
                self._prune(db, now)
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def _prune(self, db: sqlite3.Connection, now: float) -> None:
        raw_cutoff = now - self.config.raw_retention
        rollup(db, raw_cutoff)
        db.execute("DELETE FROM results WHERE checked_at < ?", (raw_cutoff,))
        old = now - self.config.rollup_retention
        for table, column in (
            ("transitions", "at"), ("rollups_minute", "start"), ("rollups_hour", "start"),
        ):
            db.execute(f"DELETE FROM {table} WHERE {column} < ?", (old,))
        self._last_prune = now

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- the Trio side -------------------------------------------------------------

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def load(self) -> int:
        """Put the last stored verdict of every known adapter into the state; how many."""
        try:
            rows = await self._in_thread(self._load)
        except sqlite3.Error as exc:
            self._failed(exc)
            return 0
        now = self.wall_clock()
        loaded = 0
        for model, provider, adapter, status, reported, latency, at, http, error, failure in rows:
            if (model, provider) not in self.known:
                continue  # no longer configured
            try:
                result = ProbeResult(
                    model=model, provider=provider, adapter=adapter, status=ProbeStatus(status),
                    latency_ms=latency, checked_at=at, http_status=http, error=error,
                    failure=None if failure is None else FailureKind(failure),
                )
                self.health.restore(result, ProbeStatus(reported), now - at)
            except ValueError:
                continue  # a status or failure kind this version does not know
            loaded += 1
        return loaded

    async def flush(self) -> bool:
        """Write what is pending in one transaction; False (and kept pending) if that failed."""
        batch = list(self._pending)
        self._pending.clear()
        try:
            await self._in_thread(self._write, batch, self.wall_clock())
        except (sqlite3.Error, OSError) as exc:
            # Back to the front of the queue, as far as the bound allows.
            room = self.config.max_pending - len(self._pending)
            kept = batch[-room:] if room > 0 else []
            self.dropped += len(batch) - len(kept)
            self._pending.extendleft(reversed(kept))
            self._failed(exc)
            return False
        else:
            self.writes += len(batch)
            self.commits += 1
            if self.failing:
                self.failing = False
                logger.info("storage: writing to %s again", self.config.path)
            return True
        finally:
            self.flushes.value = self.flushes.value + 1

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if not self.failing:
            self.failing = True
            logger.warning(
                "storage: cannot write to %s (%s); results wait in memory (at most %d)",
                self.config.path, self.last_error, self.config.max_pending,
            )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush every ``flush_interval`` until cancelled."""
        task_status.started()
        while True:
            await trio.sleep(self.config.flush_interval)
            await self.flush()


async def _forward(
    health: HealthState, storage: Storage, *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with health.subscribe(buffer=10_000) as transitions:
        task_status.started()
        async for transition in transitions:
            storage.transition(transition)


async def _in_scope(scope: trio.CancelScope, fn: Callable[[], Any]) -> None:
    with scope:
        await fn()


@contextlib.asynccontextmanager
async def open_storage(
    config: StorageConfig, health: HealthState, *, known: Collection[tuple[str, str]],
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[Storage]:
    """Storage loaded into ``health`` and fed by it; the last flush and close on the way out.

    Close ``health`` inside the block: its transitions end, then the rest is written.
    """
    storage = Storage(config, health, known=known, wall_clock=wall_clock)
    try:
        await storage.load()
        health.record_listeners.append(storage.recorded)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(_forward, health, storage)
                flushing = trio.CancelScope()
                nursery.start_soon(_in_scope, flushing, storage.run)
                try:
                    yield storage
                finally:
                    flushing.cancel()
                    # The state has closed: the forwarding ends once it has
                    # read what is buffered (bounded, in case it was not closed).
                    nursery.cancel_scope.deadline = trio.current_time() + 1.0
        finally:
            with contextlib.suppress(ValueError):
                health.record_listeners.remove(storage.recorded)
            with trio.CancelScope(shield=True), trio.move_on_after(BUSY_TIMEOUT * 4 + 5):
                if storage._pending:
                    await storage.flush()
    finally:
        with trio.CancelScope(shield=True):
            await storage._in_thread(storage._close)

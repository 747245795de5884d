"""Storage's writer: one connection, one transaction per batch (:class:`Writer`).

Only ever called from one worker thread at a time (the storage's
capacity-1 limiter). Each transaction inserts the raw rows, upserts what
they add to the rollups (:class:`~service.live.uptime.UptimeAccumulator`),
moves each touched series' latest verdict, and now and then prunes. The
series ids and the accumulator run ahead of the database inside a
transaction; if it rolls back, the connection is closed and the next write
reads them back as committed.

A file written by the unreleased draft of schema version 1 is moved aside
when the writer first opens it (one WARNING says where), and a new file is
started in its place.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from ..config import StorageConfig
from ..engine.report import ProbeResult, ProbeStatus
from .storage_read import load_latest, writer_state
from .storage_schema import DraftSchema, migrate, move_draft_aside
from .uptime import MODEL, PERIODS, UptimeAccumulator

__all__ = ["BUSY_TIMEOUT", "PRUNE_EVERY", "Row", "Writer"]

#: How long one write waits for another connection's lock before it fails.
BUSY_TIMEOUT: Final = 0.5
#: Seconds between two pruning passes.
PRUNE_EVERY: Final = 60.0

#: ("result", (model, provider, adapter, at ms, status, reported, latency_us, failure,
#:             http_status, error, up, count column)) or
#: ("transition", (model, provider, at ms, previous, current, failure, error)).
Row = tuple[str, tuple[Any, ...]]

logger = logging.getLogger("router_health.storage")

_RESULT_INSERT: Final = "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_TRANSITION_INSERT: Final = "INSERT INTO transitions VALUES (?, ?, ?, ?, ?, ?)"
_ROLLUP_UPSERT: Final = (
    "INSERT INTO rollups_{} VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (series, start) DO "
    "UPDATE SET up_ms = up_ms + excluded.up_ms, covered_ms = covered_ms + excluded.covered_ms, "
    "healthy = healthy + excluded.healthy, degraded = degraded + excluded.degraded, "
    "down = down + excluded.down, other = other + excluded.other"
)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class Writer:
    """The writing connection to ``config.path`` and what it has committed."""

    def __init__(
        self, config: StorageConfig, hold_limit: float,
        committed: Callable[[float], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.wall_clock = wall_clock
        #: Told, after each commit that added to rollups, the earliest second it added to.
        self.committed = committed
        self.hold = _ms(hold_limit)
        self.db: sqlite3.Connection | None = None
        self._ids: dict[tuple[str, str], int] = {}
        self._uptime = UptimeAccumulator(self.hold)
        self._last_prune = -math.inf

    def connect(self) -> sqlite3.Connection:
        if self.db is None:
            path = self.config.path
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            try:
                self.db = self._open(path)
            except DraftSchema:
                aside = move_draft_aside(path, self.wall_clock())  # closed by _open
                logger.warning(
                    "storage: %s was written by an unreleased draft of the history schema; "
                    "moved it aside to %s (with its -wal and -shm files) and started a new "
                    "history in %s. Delete the old file once you no longer need it",
                    path, aside, path,
                )
                self.db = self._open(path)
        return self.db

    def _open(self, path: str) -> sqlite3.Connection:
        db = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT, check_same_thread=False, isolation_level=None
        )
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            migrate(db, path)
            self._ids, self._uptime = writer_state(db, self.hold)
        except BaseException:
            db.close()
            raise
        return db

    def load(self) -> list[tuple[ProbeResult, ProbeStatus]]:
        return load_latest(self.connect())

    def close(self) -> None:
        if self.db is not None:
            self.db.close()  # rolls back what is not committed
            self.db = None

    def _series(self, db: sqlite3.Connection, key: tuple[str, str]) -> int:
        series = self._ids.get(key)
        if series is None:
            db.execute("INSERT INTO series (model, provider) VALUES (?, ?) ON CONFLICT DO NOTHING", key)
            series = int(db.execute(
                "SELECT id FROM series WHERE model = ? AND provider = ?", key
            ).fetchone()[0])
            self._ids[key] = series
        return series

    def write(self, batch: list[Row], now: float) -> None:
        """``batch`` in one transaction (and a prune, every :data:`PRUNE_EVERY` s)."""
        db = self.connect()
        uptime = self._uptime
        db.execute("BEGIN IMMEDIATE")
        try:
            results, transitions, adapters = [], [], {}
            for kind, values in batch:
                if kind == "result":
                    model, provider, adapter, at, *columns, up, count = values
                    series = self._series(db, (model, provider))
                    self._series(db, (model, MODEL))
                    results.append((series, at, *columns))
                    uptime.feed(model, provider, at, up, count)
                    adapters[(model, provider)] = adapter
                else:
                    model, provider, *columns = values
                    transitions.append((self._series(db, (model, provider)), *columns))
            db.executemany(_RESULT_INSERT, results)
            db.executemany(_TRANSITION_INSERT, transitions)
            increments = uptime.take()
            for name, _ in PERIODS:
                db.executemany(_ROLLUP_UPSERT.format(name), [
                    (self._ids[key], start // 1000, *cell)
                    for (period, key, start), cell in increments.items() if period == name
                ])
            db.executemany(
                "UPDATE series SET adapter = ?, last_at = ?, last_up = ? WHERE id = ?",
                [(adapter, *uptime.latest[key], self._ids[key]) for key, adapter in adapters.items()],
            )
            db.executemany(
                "UPDATE series SET last_at = ? WHERE id = ?",
                [(uptime.frontiers[m], self._ids[(m, MODEL)]) for m in {m for m, _ in adapters}],
            )
            if now - self._last_prune >= PRUNE_EVERY:
                self._prune(db, now)
            db.execute("COMMIT")
        except BaseException:
            self.close()
            raise
        if self.committed is not None and increments:
            # Minute buckets are the finest: the earliest of them is where the change starts.
            self.committed(min(start for period, _, start in increments if period == "minute") / 1000)

    def _prune(self, db: sqlite3.Connection, now: float) -> None:
        """Delete what is past its retention: a period once it ended before its cutoff."""
        raw, old = now - self.config.raw_retention, now - self.config.rollup_retention
        deletes = (
            ("DELETE FROM results WHERE series = ? AND at < ?", _ms(raw)),
            ("DELETE FROM rollups_minute WHERE series = ? AND start < ?", raw - 60),
            ("DELETE FROM transitions WHERE series = ? AND at < ?", _ms(old)),
            ("DELETE FROM rollups_hour WHERE series = ? AND start < ?", old - 3600),
            ("DELETE FROM rollups_day WHERE series = ? AND start < ?", old - 86400),
        )
        for sql, cutoff in deletes:
            db.executemany(sql, [(series, cutoff) for series in self._ids.values()])
        self._last_prune = now

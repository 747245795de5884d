"""Storage's SQLite schema, its versioned migrations and the stable code tables.

Schema version 1 was rewritten in place before it shipped in a release (the
first draft, on main for a day, kept text per raw row in ``results (model,
provider, ...)`` and had no ``series`` table). A file written by that draft
says version 1 too, so :func:`migrate` recognises it by its tables and
raises :class:`DraftSchema`; the writer then moves it aside
(:func:`move_draft_aside`) and starts a new file. Later changes are new
migrations, appended.

Tables (times are integer ms since the epoch unless said; rollup ``start``
is unix seconds, ``up_ms`` / ``covered_ms`` milliseconds):

* ``series (id, model, provider, adapter, last_at, last_up)``: one row per
  adapter, and per model with provider ``''`` (the model as a whole).
  ``last_at`` / ``last_up`` are the series' latest verdict (for a model:
  its frontier, see :mod:`service.live.uptime`): what the open tail of
  uptime and the restart load start from, without a scan of raw rows.
* ``results``: raw verdicts, ``WITHOUT ROWID`` keyed ``(series, at)``:
  ``status`` / ``reported`` / ``failure`` are small ints (:data:`STATUS_CODES`,
  :data:`FAILURE_CODES`), ``latency_us`` an int, ``error`` only when there is one.
* ``transitions (series, at, previous, current, failure, error)``: changes of
  reported level, status codes as in ``results``.
* ``rollups_minute`` / ``rollups_hour`` / ``rollups_day``: per series and
  period, up and covered ms and counts of raw statuses (healthy, degraded,
  down = unhealthy or timeout, other), maintained by upserts in each write.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from typing import Final

from adapters.base import FailureKind

from ..engine.report import ProbeStatus

__all__ = [
    "FAILURE_CODES",
    "FAILURE_KINDS",
    "SCHEMA_VERSION",
    "STATUSES",
    "STATUS_CODES",
    "DraftSchema",
    "StorageError",
    "check_version",
    "migrate",
    "move_draft_aside",
]

#: The schema this code writes; a database with a newer one is refused.
SCHEMA_VERSION: Final = 1

#: Stored codes: never renumber, only add.
STATUS_CODES: Final[dict[ProbeStatus, int]] = {
    ProbeStatus.HEALTHY: 0,
    ProbeStatus.DEGRADED: 1,
    ProbeStatus.UNHEALTHY: 2,
    ProbeStatus.TIMEOUT: 3,
    ProbeStatus.UNSUPPORTED: 4,
}
FAILURE_CODES: Final[dict[FailureKind, int]] = {
    FailureKind.HTTP_STATUS: 1,
    FailureKind.AUTH: 2,
    FailureKind.RATE_LIMITED: 3,
    FailureKind.BAD_BODY: 4,
    FailureKind.MODEL_MISSING: 5,
    FailureKind.CONNECT: 6,
    FailureKind.BODY_TOO_LARGE: 7,
    FailureKind.EXCEPTION: 8,
    FailureKind.RESOURCE: 9,
    FailureKind.TIMEOUT: 10,
    FailureKind.DEADLINE: 11,
    FailureKind.NOT_STARTED: 12,
    FailureKind.NOT_OPEN: 13,
    FailureKind.UNSUPPORTED: 14,
}
STATUSES: Final[dict[int, ProbeStatus]] = {code: status for status, code in STATUS_CODES.items()}
FAILURE_KINDS: Final[dict[int, FailureKind]] = {
    code: kind for kind, code in FAILURE_CODES.items()
}


def _rollup_table(name: str) -> str:
    return f"""
    CREATE TABLE rollups_{name} (
        series INTEGER NOT NULL, start INTEGER NOT NULL,
        up_ms INTEGER NOT NULL, covered_ms INTEGER NOT NULL,
        healthy INTEGER NOT NULL, degraded INTEGER NOT NULL,
        down INTEGER NOT NULL, other INTEGER NOT NULL,
        PRIMARY KEY (series, start)
    ) WITHOUT ROWID;
    """


_MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE series (
        id INTEGER PRIMARY KEY, model TEXT NOT NULL, provider TEXT NOT NULL,
        adapter TEXT, last_at INTEGER, last_up INTEGER,
        UNIQUE (model, provider)
    );
    CREATE TABLE results (
        series INTEGER NOT NULL, at INTEGER NOT NULL,
        status INTEGER NOT NULL, reported INTEGER NOT NULL,
        latency_us INTEGER, failure INTEGER, http_status INTEGER, error TEXT,
        PRIMARY KEY (series, at)
    ) WITHOUT ROWID;
    CREATE TABLE transitions (
        series INTEGER NOT NULL, at INTEGER NOT NULL,
        previous INTEGER, current INTEGER NOT NULL, failure INTEGER, error TEXT
    );
    CREATE INDEX transitions_series_at ON transitions (series, at);
    """
    + "".join(_rollup_table(name) for name in ("minute", "hour", "day")),
)


class StorageError(Exception):
    """A database this version cannot use, or cannot read now; the message says what to do."""


class DraftSchema(StorageError):
    """The file was written by the unreleased first draft of schema version 1."""


def _is_draft(db: sqlite3.Connection) -> bool:
    """Version 1 as the first draft wrote it: no ``series``, or ``results`` keyed by model."""
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    columns = {row[1] for row in db.execute("PRAGMA table_info(results)")}
    return "series" not in tables or "model" in columns


def migrate(db: sqlite3.Connection, source: str = "<database>") -> int:
    """Bring ``db`` to :data:`SCHEMA_VERSION`; returns the version it had.

    Raises :class:`DraftSchema` (nothing changed) for a file of the unreleased draft.
    """
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    found = int(row[0]) if row and row[0] is not None else 0
    if found == 1 and _is_draft(db):
        raise DraftSchema(f"{source}: written by an unreleased draft of the history schema")
    if found > SCHEMA_VERSION:
        raise StorageError(_newer_message(source, found))
    for version in range(found + 1, SCHEMA_VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _MIGRATIONS[version - 1].split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
    return found


def move_draft_aside(path: str, now: float) -> str:
    """Rename a draft-schema file (and its -wal/-shm) to ``<path>.draft-<UTC time>``; the new name.

    Close every connection to it first. StorageError, saying what to do, if it cannot be moved.
    """
    aside = f"{path}.draft-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}"
    try:
        os.rename(path, aside)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.rename(path + suffix, aside + suffix)
    except OSError as exc:
        raise StorageError(
            f"{path}: written by an unreleased draft of the history schema (version 1 without "
            f"the series table), and it could not be moved aside to {aside} ({exc}): delete it "
            "(with its -wal and -shm files), or set [storage] path to another file"
        ) from exc
    return aside


def _newer_message(source: str, found: int) -> str:
    return (
        f"{source}: written by a newer router-health (schema version {found}; this one "
        f"knows up to {SCHEMA_VERSION}): upgrade router-health, or set [storage] path "
        "to another file"
    )


def check_version(path: str) -> None:
    """Raise :class:`StorageError` now if the file at ``path`` is from a newer version.

    For the command line, before it starts serving: the same refusal would
    otherwise come from inside the server's startup, wrapped in its errors.
    A missing or unreadable file is not refused here (storage reports those
    itself, and keeps the service up).
    """
    if path == ":memory:" or not os.path.isfile(path):
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    except sqlite3.Error:
        return
    found = int(row[0]) if row and row[0] is not None else 0
    if found > SCHEMA_VERSION:
        raise StorageError(_newer_message(path, found))


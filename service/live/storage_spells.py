"""When each restored spell began: :func:`restored_spell_starts`.

Storage restores every adapter's last verdict at start
(:meth:`HealthState.restore`), but a verdict only says what the level was
when it was checked, not since when. The alert channels need the start of an
outage that was going on at the last stop, to announce it ``min_duration``
after it really began and to tell its whole duration when it ends. That start
is the stored transition into the restored level (the ``transitions`` table).

A module of its own, read-only, on a short-lived connection of its own (run
once, after storage has loaded and before the first probe): the storage's
writer and reader are not touched. Nothing found, or a file that cannot be
read, gives no start: callers fall back to the verdict's own ``checked_at``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import trio

from .state import Restored, level
from .storage_schema import STATUSES
from .storage_write import BUSY_TIMEOUT

__all__ = ["restored_spell_starts"]

logger = logging.getLogger("router_health.storage")

Key = tuple[str, str]

_LATEST_TRANSITION = (
    "SELECT t.at, t.current FROM transitions t JOIN series s ON s.id = t.series "
    "WHERE s.model = ? AND s.provider = ? ORDER BY t.at DESC LIMIT 1"
)


async def restored_spell_starts(path: str, restored: Iterable[Restored]) -> dict[Key, float]:
    """(model, provider) -> unix time its restored level (down or degraded) began, from ``path``.

    Only adapters restored down or degraded whose latest stored transition
    went into that very level are in the answer.
    """
    wanted = [
        (r.model, r.provider, level(r.reported))
        for r in restored
        if level(r.reported) != "healthy"
    ]
    if not wanted or path == ":memory:":
        return {}
    try:
        starts: dict[Key, float] = await trio.to_thread.run_sync(_read, path, wanted)
    except Exception as exc:  # storage never stops the service
        logger.warning(
            "storage: cannot read when the restored outages began from %s (%s: %s); "
            "alerts count them from their last verdicts",
            path, type(exc).__name__, exc,
        )
        return {}
    return starts


def _read(path: str, wanted: list[tuple[str, str, str]]) -> dict[Key, float]:
    if not Path(path).is_file():
        return {}  # nothing was ever stored (and connecting would create the file)
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    try:
        db.execute("PRAGMA query_only = 1")
        starts: dict[Key, float] = {}
        for model, provider, kind in wanted:
            row = db.execute(_LATEST_TRANSITION, (model, provider)).fetchone()
            if row is None or row[1] not in STATUSES:
                continue
            if level(STATUSES[row[1]]) == kind:
                starts[(model, provider)] = row[0] / 1000
        return starts
    finally:
        db.close()

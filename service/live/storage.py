"""Results and transitions kept in SQLite across restarts: :class:`Storage`.

One Trio task batches what the live state records into one transaction per
``flush_interval``, run through ``trio.to_thread`` on one connection that
only one worker thread at a time uses (a capacity-1 limiter). Nothing here
is on the probe path: a locked, full or read-only database only makes rows
wait in a bounded buffer (beyond ``max_pending`` they are dropped and
counted), the failure is logged once per change of state, and writing
resumes when it can.

Each write transaction inserts the raw rows and, in the same transaction,
upserts what they add to the minute, hour and day rollups of their adapter
and of its model (:class:`~service.live.uptime.UptimeAccumulator`: a verdict
holds until the next one, at most ``hold_limit`` seconds), so no query ever
re-scans raw rows (:mod:`service.live.storage_write`). Schema and code tables:
:mod:`service.live.storage_schema`.
Queries (:meth:`Storage.uptime`, :meth:`~Storage.daily`,
:meth:`~Storage.incidents`, :meth:`~Storage.history`) run on a second, read
connection in a worker thread of their own (:mod:`service.live.storage_read`);
any error of the database layer there is raised as :class:`StorageError`
(its cause kept), which the routes answer 503 ``storage_failing``.

Size, measured (``dbstat``) on a file of 1,000 adapters checked every 10 s
for 6 h through this writer (2.16 M raw rows): a raw row takes 28.4 bytes
with its share of pages, a minute rollup row 27.3; the whole file 33.3 bytes
per raw row. So 8.64 M raw rows a day are ~245 MB a day, ~490 MB kept at
the default 48 h ``raw_retention``, plus ~40 MB a day of minute rollups
(~80 MB kept) and under 1 MB a day of hour and day rollups.

Retention: raw results and minute rollups ``raw_retention``; transitions,
hour and day rollups ``rollup_retention``. On start, the last verdict of
every configured adapter is loaded into the state with its age
(:meth:`HealthState.restore`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from typing import Any, Final

import trio
from trio_util import AsyncValue  # type: ignore[import-untyped]

from ..config import StorageConfig
from ..engine.report import ProbeResult, ProbeStatus
from .state import HealthState, Transition
from .storage_read import SpanSums, read_daily, read_history, read_incidents, read_uptime
from .storage_schema import FAILURE_CODES, SCHEMA_VERSION, STATUS_CODES, StorageError, migrate
from .storage_write import BUSY_TIMEOUT, Row, Writer
from .uptime import DEGRADED, DOWN, HEALTHY, OTHER, DayUptime, Incident, UptimeReport

__all__ = [
    "HOLD_LIMIT",
    "SCHEMA_VERSION",
    "Storage",
    "StorageError",
    "hold_limit_for",
    "migrate",
    "open_storage",
]

logger = logging.getLogger("router_health.storage")

#: The least ``hold_limit``: a verdict counts for uptime until the next one, never longer.
HOLD_LIMIT: Final = 300.0
#: No verdict is older than this (2000-01-01); nor later than a day from now.
EARLIEST: Final = 946_684_800.0

_KINDS: Final = {
    ProbeStatus.HEALTHY: HEALTHY, ProbeStatus.DEGRADED: DEGRADED,
    ProbeStatus.UNHEALTHY: DOWN, ProbeStatus.TIMEOUT: DOWN,
}


def hold_limit_for(intervals: Iterable[float]) -> float:
    """The ``hold_limit`` of a fleet: 3 x its longest background interval, at least :data:`HOLD_LIMIT`."""
    return max(HOLD_LIMIT, 3 * max(intervals, default=0.0))


def _up(reported: ProbeStatus) -> bool | None:
    """Up for uptime: healthy or degraded; nothing known for a deployment never checked."""
    if reported is ProbeStatus.UNSUPPORTED:
        return None
    return reported in (ProbeStatus.HEALTHY, ProbeStatus.DEGRADED)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class Storage:
    """Writes what ``health`` records to ``config.path`` and answers queries; see the module doc."""

    def __init__(
        self,
        config: StorageConfig,
        health: HealthState,
        *,
        known: Collection[tuple[str, str]],
        wall_clock: Callable[[], float] = time.time,
        hold_limit: float = HOLD_LIMIT,
    ) -> None:
        self.config = config
        self.health = health
        self.known = frozenset(known)
        self.wall_clock = wall_clock
        self.hold_limit = hold_limit
        self._pending: deque[Row] = deque()
        self._limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(1)
        self._spans = SpanSums()
        self._writer = Writer(
            config, hold_limit, committed=self._spans.changed, wall_clock=wall_clock
        )
        self._reader: sqlite3.Connection | None = None
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

    @property
    def _memory(self) -> bool:
        return self.config.path == ":memory:"

    # -- feeding (listeners: must not block or raise) ------------------------------

    def _sane(self, at: float) -> bool:
        """Whether ``at`` can be a verdict's time; other rows are dropped (and counted)."""
        if math.isfinite(at) and EARLIEST <= at <= self.wall_clock() + 86400:
            return True
        self.dropped += 1
        return False

    def recorded(self, result: ProbeResult) -> None:
        """A :attr:`HealthState.record_listeners` entry: queue the result it took in."""
        state = self.health.get(result.model, result.provider)
        if state is None or state.latest is not result:
            return  # ignored by the state (a non-verdict, or older than its latest)
        if not self._sane(result.checked_at):
            return
        latency = result.latency_ms
        self._queue((
            "result",
            (
                result.model, result.provider, result.adapter, _ms(result.checked_at),
                STATUS_CODES[result.status], STATUS_CODES[state.reported],
                round(latency * 1000) if latency is not None and 0 <= latency < 1e9 else None,
                FAILURE_CODES[result.failure] if result.failure else None,
                result.http_status, result.error or None,
                _up(state.reported), _KINDS.get(result.status, OTHER),
            ),
        ))

    def transition(self, transition: Transition) -> None:
        result = transition.result
        if not self._sane(result.checked_at):
            return
        self._queue((
            "transition",
            (
                transition.model, transition.provider, _ms(result.checked_at),
                None if transition.previous is None else STATUS_CODES[transition.previous],
                STATUS_CODES[transition.current],
                FAILURE_CODES[result.failure] if result.failure else None, result.error or None,
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

    # -- the reader thread's side --------------------------------------------------

    def _reading(self, query: Callable[..., Any], arguments: dict[str, Any]) -> Any:
        if self._memory:
            db = self._writer.connect()  # one connection: the writer's limiter serves both
        else:
            if self._reader is None:
                reader = sqlite3.connect(
                    self.config.path, timeout=BUSY_TIMEOUT, check_same_thread=False,
                    isolation_level=None,
                )
                try:
                    reader.execute("PRAGMA query_only = 1")
                except BaseException:
                    reader.close()
                    raise
                self._reader = reader
            db = self._reader
        try:
            db.execute("BEGIN")  # one snapshot for the whole query
            try:
                return query(db, **arguments)
            finally:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("COMMIT")
        except sqlite3.Error:
            if not self._memory:
                self._close_reader()  # the next query opens the file afresh (replaced, repaired)
            raise

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    async def _read(self, query: Callable[..., Any], **arguments: Any) -> Any:
        """``query`` on the read connection; StorageError (from the cause) if the database fails."""
        limiter = self._limiter if self._memory else self._read_limiter
        try:
            return await trio.to_thread.run_sync(self._reading, query, arguments, limiter=limiter)
        except StorageError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(
                f"{self.config.path}: cannot read the history ({type(exc).__name__}: {exc})"
            ) from exc

    # -- queries (StorageError when the database cannot be read) ------------------

    async def uptime(
        self, window: float, *, models: Collection[str] | None = None
    ) -> UptimeReport:
        """Uptime of every configured model and adapter over the last ``window`` seconds."""
        if not window > 0:
            raise ValueError(f"uptime window must be more than 0 seconds, got {window!r}")
        report: UptimeReport = await self._read(
            read_uptime, known=self.known, window=window,
            models=None if models is None else frozenset(models), now=self.wall_clock(),
            hold=_ms(self.hold_limit), raw_retention=self.config.raw_retention,
            cache=self._spans,
        )
        return report

    async def daily(self, model: str, days: int) -> list[DayUptime]:
        """``model``'s uptime per UTC day, the last ``days`` (today included), oldest first."""
        if days < 1:
            raise ValueError(f"days must be at least 1, got {days!r}")
        answer: list[DayUptime] = await self._read(
            read_daily, model=model, days=days, now=self.wall_clock(), hold=_ms(self.hold_limit)
        )
        return answer

    async def incidents(
        self, *, since: float | None = None, model: str | None = None,
        models: Collection[str] | None = None, limit: int = 100,
        open_only: bool = False, resolved_only: bool = False,
    ) -> list[Incident]:
        """Incidents (see :mod:`service.live.incidents`) open or ended since ``since``, newest first.

        ``model``, ``models``, ``open_only`` and ``resolved_only`` filter before
        ``limit``. Without ``since``, from ``rollup_retention`` ago (older
        transitions are pruned). Only transitions from ``since`` on are read,
        and each adapter's last one before it: an incident open at ``since``
        is reported with its true start.
        """
        now = self.wall_clock()
        answer: list[Incident] = await self._read(
            read_incidents, known=self.known,
            since=now - self.config.rollup_retention if since is None else since,
            model=model, models=None if models is None else frozenset(models),
            limit=max(0, limit), open_only=open_only, resolved_only=resolved_only, now=now,
        )
        return answer

    async def history(
        self, model: str, provider: str, *, before: float | None, limit: int
    ) -> list[dict[str, Any]]:
        """Stored verdicts of one adapter before ``before``, newest first (``HistoryEntry`` dicts).

        ``before`` is compared in whole ms (rounded): a ``checked_at`` as
        ``to_dict`` shows it is a cursor that excludes its own entry.
        """
        answer: list[dict[str, Any]] = await self._read(
            read_history, model=model, provider=provider, before=before, limit=max(0, limit)
        )
        return answer

    # -- the Trio side of writing --------------------------------------------------

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def load(self) -> int:
        """Put the last stored verdict of every known adapter into the state; how many."""
        try:
            rows: list[tuple[ProbeResult, ProbeStatus]] = await self._in_thread(self._writer.load)
        except StorageError:
            raise  # a newer schema: the message says what to do
        except Exception as exc:  # storage never stops the service
            self._failed(exc)
            return 0
        now = self.wall_clock()
        loaded = 0
        for result, reported in rows:
            if (result.model, result.provider) not in self.known:
                continue  # no longer configured
            self.health.restore(result, reported, now - result.checked_at)
            loaded += 1
        return loaded

    async def flush(self) -> bool:
        """Write what is pending in one transaction; False (and kept pending) if that failed."""
        batch = list(self._pending)
        self._pending.clear()
        try:
            await self._in_thread(self._writer.write, batch, self.wall_clock())
        except Exception as exc:  # storage never stops the service
            # Back to the front of the queue, as far as the bound allows, when
            # it may go through later (locked, full, read-only); otherwise
            # (corrupt file, a bug) waiting would only block what follows.
            room = self.config.max_pending - len(self._pending)
            if not isinstance(exc, sqlite3.OperationalError | OSError):
                room = 0
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
    wall_clock: Callable[[], float] = time.time, hold_limit: float = HOLD_LIMIT,
) -> AsyncIterator[Storage]:
    """Storage loaded into ``health`` and fed by it; the last flush and close on the way out.

    Close ``health`` inside the block: its transitions end, then the rest is written.
    """
    storage = Storage(config, health, known=known, wall_clock=wall_clock, hold_limit=hold_limit)
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
            await trio.to_thread.run_sync(storage._close_reader, limiter=storage._read_limiter)
            await storage._in_thread(storage._writer.close)

"""Storage's queries (uptime, daily uptime, incidents, history, the restart load).

Plain functions of a :class:`sqlite3.Connection`, run by
:class:`~service.live.storage.Storage` in a worker thread on a read
connection of its own (WAL: a read sees the last commit and never waits
behind a write), each inside one read transaction so that rollups and the
series' latest verdicts agree.

An uptime window is cut into the coarsest rollups that fit it: minutes up to
the first whole hour, hours up to the first whole day, then days; the
current (partial) period's rollup holds only what happened before now. The
window's start is floored to the minute while minute rollups still cover it
(``raw_retention``), else to the hour, and the answer says which start it
used. The open tail of each series (:func:`~service.live.uptime.open_tail`)
is added on top. For 30 days over 1,000 adapters that reads about 60,000
rollup rows through the ``(series, start)`` keys.

:class:`SpanSums` keeps the sums of the whole periods a window covers (all of
it but the current period and the tails), so that the next query of the
same window reads only what changed. The writer tells it the earliest
period each commit touched (:meth:`SpanSums.changed`), and any kept sum
reaching that far is dropped before the next query. Pruning only deletes
periods no window within retention reaches, so it drops nothing.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Collection
from typing import Any

from adapters.base import FailureKind

from ..engine.report import ProbeResult, ProbeStatus
from .incidents import Change, incidents_of
from .state import HistoryEntry
from .storage_schema import FAILURE_KINDS, STATUS_CODES, STATUSES
from .uptime import (
    DAY,
    MODEL,
    DayUptime,
    Incident,
    Uptime,
    UptimeAccumulator,
    UptimeReport,
    open_tail,
    overlap,
)

__all__ = [
    "SpanSums",
    "load_latest",
    "read_daily",
    "read_history",
    "read_incidents",
    "read_uptime",
    "spans",
    "window_start",
    "writer_state",
]

_DOWN = frozenset({STATUS_CODES[ProbeStatus.UNHEALTHY], STATUS_CODES[ProbeStatus.TIMEOUT]})
_UNSUPPORTED = STATUS_CODES[ProbeStatus.UNSUPPORTED]

SeriesRow = tuple[int, str, str, int | None, bool | None]  # id, model, provider, last_at, last_up


def _up(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def writer_state(
    db: sqlite3.Connection, hold: int
) -> tuple[dict[tuple[str, str], int], UptimeAccumulator]:
    """Series ids and the accumulator as last committed (the writer continues from them)."""
    ids: dict[tuple[str, str], int] = {}
    latest: dict[tuple[str, str], tuple[int, bool | None]] = {}
    frontiers: dict[str, int] = {}
    for series, model, provider, last_at, last_up in db.execute(
        "SELECT id, model, provider, last_at, last_up FROM series"
    ):
        ids[(model, provider)] = series
        if last_at is None:
            continue
        if provider == MODEL:
            frontiers[model] = last_at
        else:
            latest[(model, provider)] = (last_at, _up(last_up))
    return ids, UptimeAccumulator(hold, latest, frontiers)


def load_latest(db: sqlite3.Connection) -> list[tuple[ProbeResult, ProbeStatus]]:
    """Every adapter's latest stored verdict and the status it reported (unknown codes skipped)."""
    loaded = []
    for model, provider, adapter, status, reported, latency, at, http, error, failure in db.execute(
        "SELECT s.model, s.provider, s.adapter, r.status, r.reported, r.latency_us, r.at, "
        "r.http_status, r.error, r.failure FROM series s JOIN results r "
        "ON r.series = s.id AND r.at = s.last_at WHERE s.provider != ''"
    ):
        if status not in STATUSES or reported not in STATUSES:
            continue
        if failure is not None and failure not in FAILURE_KINDS:
            continue
        kind: FailureKind | None = None if failure is None else FAILURE_KINDS[failure]
        result = ProbeResult(
            model=model, provider=provider, adapter=adapter or "", status=STATUSES[status],
            latency_ms=None if latency is None else latency / 1000, checked_at=at / 1000,
            http_status=http, error=error, failure=kind,
        )
        loaded.append((result, STATUSES[reported]))
    return loaded


def window_start(now: float, window: float, raw_retention: float) -> int:
    """The start of the window ending ``now``, floored to a period its rollups still cover."""
    start = now - window
    period = 60 if start >= now - raw_retention + 60 else 3600
    return int(start // period * period)


def spans(start: int, end: float) -> list[tuple[str, int, float]]:
    """``[start, end)`` (unix s, ``start`` minute-aligned) as (rollup table, from, to) pieces."""
    pieces: list[tuple[str, int, float]] = []
    at = start
    for name, following in (("minute", 3600), ("hour", 86400)):
        boundary = -(-at // following) * following
        if boundary >= end:
            pieces.append((name, at, end))
            return pieces
        if boundary > at:
            pieces.append((name, at, boundary))
            at = boundary
    pieces.append(("day", at, end))
    return pieces


#: Seconds in each rollup table's period.
_PERIOD_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}

SpanKey = tuple[str, int, int, tuple[str, ...] | None]  # table, from, to, models (None: all)


class SpanSums:
    """Up/covered ms per series of whole rollup spans, kept until a commit reaches into them.

    Used from one reader thread at a time; :meth:`changed` from the writer's.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._sums: dict[SpanKey, dict[int, tuple[int, int]]] = {}
        self._lock = threading.Lock()
        self._changed = math.inf  # the earliest second a commit touched since the last query

    def changed(self, since: float) -> None:
        """A commit added to periods from ``since`` (unix s) on."""
        with self._lock:
            self._changed = min(self._changed, since)

    def get(self, key: SpanKey) -> dict[int, tuple[int, int]] | None:
        return self._sums.get(key)

    def put(self, key: SpanKey, sums: dict[int, tuple[int, int]]) -> None:
        if len(self._sums) >= self.size:
            del self._sums[next(iter(self._sums))]  # the oldest
        self._sums[key] = sums

    def expire(self) -> None:
        """Drop the sums a commit since the last call reached into (call before reading)."""
        with self._lock:
            since, self._changed = self._changed, math.inf
        if since < math.inf:
            for key in [k for k in self._sums if k[2] > since]:
                del self._sums[key]


def _pieces(start: int, now: float) -> list[tuple[str, int, float]]:
    """:func:`spans`, the last one cut where its current (still growing) period starts."""
    pieces = spans(start, now)
    name, lo, hi = pieces[-1]
    period = _PERIOD_SECONDS[name]
    current = int(now // period * period)
    if lo < current < hi:
        pieces[-1:] = [(name, lo, current), (name, current, hi)]
    return pieces


def _span_sums(
    db: sqlite3.Connection, name: str, lo: int, hi: float, models: list[str] | None
) -> dict[int, tuple[int, int]]:
    # Every series in id order (no sort for the GROUP BY), or those of the models asked for.
    where, arguments = ("", ()) if models is None else (
        "WHERE s.model IN (SELECT value FROM json_each(?)) ", (_json(models),)
    )
    return {
        series_id: (up, covered)
        for series_id, up, covered in db.execute(
            f"SELECT s.id, sum(r.up_ms), sum(r.covered_ms) FROM series s "
            f"JOIN rollups_{name} r ON r.series = s.id AND r.start >= ? AND r.start < ? "
            f"{where}GROUP BY s.id",
            (lo, hi, *arguments),
        )
    }


def _series(db: sqlite3.Connection, models: list[str] | None) -> list[SeriesRow]:
    sql = "SELECT id, model, provider, last_at, last_up FROM series"
    rows = (
        db.execute(sql)
        if models is None
        else db.execute(sql + " WHERE model IN (SELECT value FROM json_each(?))", (_json(models),))
    )
    return [(i, m, p, at, _up(up)) for i, m, p, at, up in rows]


def _json(values: list[str]) -> str:
    return json.dumps(values)


def _tails(
    series: list[SeriesRow], hold: int, now: int
) -> dict[int, tuple[tuple[int, int], tuple[int, int]]]:
    """Each series' open (up, covered) intervals at ``now`` (ms)."""
    providers: dict[str, list[tuple[int, bool | None]]] = defaultdict(list)
    for _, model, provider, last_at, last_up in series:
        if provider != MODEL and last_at is not None:
            providers[model].append((last_at, last_up))
    tails = {}
    for series_id, model, provider, last_at, last_up in series:
        if provider == MODEL:
            tails[series_id] = open_tail(last_at, providers[model], hold, now)
        elif last_at is not None and last_up is not None and last_at < now:
            end = min(now, last_at + hold)  # open_tail of one verdict, written out
            tails[series_id] = ((last_at, end if last_up else last_at), (last_at, end))
    return tails


def read_uptime(
    db: sqlite3.Connection, *, known: Collection[tuple[str, str]], window: float,
    models: Collection[str] | None, now: float, hold: int, raw_retention: float,
    cache: SpanSums | None = None,
) -> UptimeReport:
    """Uptime of every configured model and adapter over the ``window`` s ending ``now``."""
    if cache is not None:
        cache.expire()  # before this query's snapshot: see SpanSums
    wanted = sorted({m for m, _ in known if models is None or m in models})
    start = window_start(now, window, raw_retention)
    asked = None if models is None else wanted
    series = _series(db, asked)
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for name, lo, hi in _pieces(start, now):
        key: SpanKey = (name, lo, int(hi), None if asked is None else tuple(asked))
        whole = cache is not None and hi < now  # not the current period: kept
        found = cache.get(key) if whole and cache is not None else None
        if found is None:
            found = _span_sums(db, name, lo, hi, asked)
            if whole and cache is not None:
                cache.put(key, found)
        for series_id, (up, covered) in found.items():
            sums[series_id][0] += up
            sums[series_id][1] += covered
    now_ms, start_ms = round(now * 1000), start * 1000
    for series_id, ((up_lo, up_hi), (cov_lo, cov_hi)) in _tails(series, hold, now_ms).items():
        sums[series_id][0] += overlap(up_lo, up_hi, start_ms, now_ms)
        sums[series_id][1] += overlap(cov_lo, cov_hi, start_ms, now_ms)
    ids = {(m, p): i for i, m, p, _, _ in series}
    span = now - start

    def uptime(key: tuple[str, str]) -> Uptime:
        up, covered = sums.get(ids.get(key, -1), (0, 0))
        return Uptime(up / 1000, covered / 1000, span)

    return UptimeReport(
        window_seconds=span, start=float(start), end=now,
        models={m: uptime((m, MODEL)) for m in wanted},
        adapters={key: uptime(key) for key in sorted(known) if key[0] in wanted},
    )


def read_daily(
    db: sqlite3.Connection, *, model: str, days: int, now: float, hold: int
) -> list[DayUptime]:
    """The model's uptime per UTC day, the last ``days`` days (today included), oldest first."""
    day = DAY // 1000
    today = math.floor(now / day) * day
    first = today - (days - 1) * day
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for start, up, covered in db.execute(
        "SELECT r.start, r.up_ms, r.covered_ms FROM series s JOIN rollups_day r "
        "ON r.series = s.id AND r.start >= ? WHERE s.model = ? AND s.provider = ''",
        (first, model),
    ):
        sums[start] = [up, covered]
    series = _series(db, [model])
    tails = _tails(series, hold, round(now * 1000))
    model_id = next((i for i, _, p, _, _ in series if p == MODEL), None)
    tail = tails.get(model_id, ((0, 0), (0, 0))) if model_id is not None else ((0, 0), (0, 0))
    answer = []
    for start in range(first, today + 1, day):
        lo, hi = start * 1000, (start + day) * 1000
        up, covered = sums.get(start, (0, 0))
        up += overlap(*tail[0], lo, hi)
        covered += overlap(*tail[1], lo, hi)
        length = min(float(start + day), now) - start
        answer.append(DayUptime(float(start), Uptime(up / 1000, covered / 1000, length)))
    return answer


#: The last transition of one series before a time: its level then (the (series, at) index).
_LEVEL_BEFORE = (
    "SELECT at, current, failure FROM transitions WHERE series = ? AND at < ? "
    "ORDER BY at DESC LIMIT 1"
)
#: Seconds of transitions read first for the newest incidents (then 8 times more each time).
FIRST_WINDOW = 3600.0
#: Steps back through overlapping downs to the start of an incident open at ``since``.
WALK_BACK = 100
#: SQLite's INTEGER holds any time as ms clamped to this.
_MS_BOUND = 2**62

TransitionRow = tuple[int, int, int | None]  # at ms, current, failure


def _bounded_ms(seconds: float, rounding: Callable[[float], int] = math.floor) -> int:
    """``seconds`` as ms SQLite can compare, however far (or infinite) it is."""
    if not seconds * 1000 < _MS_BOUND:
        return _MS_BOUND
    if not seconds * 1000 > -_MS_BOUND:
        return -_MS_BOUND
    return rounding(seconds * 1000)


def _change(provider: str, row: TransitionRow) -> Change:
    at, current, failure = row
    kind = FAILURE_KINDS.get(failure) if failure is not None else None
    return Change(
        provider, at / 1000, current in _DOWN, None if kind is None else kind.value,
        checked=current != _UNSUPPORTED,
    )


def _model_changes(db: sqlite3.Connection, members: list[tuple[int, str]], since: int) -> list[Change]:
    """One model's changes from the start of the incident open at ``since`` (if any) on.

    Each adapter's level at the start is its last transition before it; the
    start walks back while some adapter was already down (at most
    :data:`WALK_BACK` steps), so an incident open at ``since`` keeps its start.
    """

    def level_before(series: int, at: int) -> TransitionRow | None:
        row: TransitionRow | None = db.execute(_LEVEL_BEFORE, (series, at)).fetchone()
        return row

    start = since
    levels = {series: level_before(series, since) for series, _ in members}
    for _ in range(WALK_BACK):
        downs = [row[0] for row in levels.values() if row is not None and row[1] in _DOWN]
        if not downs:
            break
        start = min(downs)
        levels = {
            series: row if row is None or row[0] < start else level_before(series, start)
            for series, row in levels.items()
        }
    changes = []
    for series, provider in members:
        row = levels[series]
        if row is not None:
            changes.append(_change(provider, row))
        changes.extend(
            _change(provider, found) for found in db.execute(
                "SELECT at, current, failure FROM transitions WHERE series = ? AND at >= ? "
                "ORDER BY at", (series, start),
            )
        )
    return changes


def read_incidents(
    db: sqlite3.Connection, *, known: Collection[tuple[str, str]], since: float,
    model: str | None, models: Collection[str] | None, limit: int, open_only: bool,
    resolved_only: bool, now: float,
) -> list[Incident]:
    """Incidents of the configured models open or ended since ``since``, newest first.

    Newest first with a limit: the transitions of the last :data:`FIRST_WINDOW`
    seconds are read first (and, per adapter, its last one before, see
    :func:`_model_changes`), then of a window 8 times longer, until ``limit``
    incidents started inside the window (none started earlier can rank
    above them) or the window reaches ``since``; open ones are all found from
    now. See :mod:`service.live.incidents`.
    """
    configured: dict[str, set[str]] = defaultdict(set)
    for m, p in known:
        if (model is None or m == model) and (models is None or m in models):
            configured[m].add(p)
    members: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for series, m, provider in db.execute("SELECT id, model, provider FROM series ORDER BY id"):
        if provider in configured.get(m, ()):
            members[m].append((series, provider))
    firsts = [
        at for model_members in members.values() for series, _ in model_members
        for (at,) in db.execute("SELECT min(at) FROM transitions WHERE series = ?", (series,))
        if at is not None
    ]
    if not firsts:
        return []
    floor = max(since, min(firsts) / 1000)  # nothing is stored before: read from there
    window = 0.0 if open_only else FIRST_WINDOW  # an open incident is open now: found from now
    while True:
        start = max(floor, now - window)
        bound = _bounded_ms(start)
        found = [
            incident
            for m, model_members in members.items()
            for incident in incidents_of(
                m, _model_changes(db, model_members, bound), configured[m], now=now
            )
            if (incident.ended_at is None or incident.ended_at >= since)
            and not (open_only and incident.ended_at is not None)
            and not (resolved_only and incident.ended_at is None)
        ]
        if open_only or start <= floor or sum(i.started_at >= start for i in found) >= limit:
            break
        window *= 8
    found.sort(key=lambda i: (i.started_at, i.model), reverse=True)
    return found[:limit]


def read_history(
    db: sqlite3.Connection, *, model: str, provider: str, before: float | None, limit: int
) -> list[dict[str, Any]]:
    """Stored raw verdicts of one adapter before ``before``, newest first."""
    # Rounded, as the writer rounds checked_at: a to_dict() checked_at excludes its own entry.
    bound = _MS_BOUND if before is None else _bounded_ms(before, round)
    entries = []
    for at, status, latency, failure in db.execute(
        "SELECT r.at, r.status, r.latency_us, r.failure FROM series s JOIN results r "
        "ON r.series = s.id WHERE s.model = ? AND s.provider = ? AND r.at < ? "
        "ORDER BY r.at DESC LIMIT ?",
        (model, provider, bound, limit),
    ):
        if status not in STATUSES:
            continue
        kind = FAILURE_KINDS.get(failure) if failure is not None else None
        entries.append(HistoryEntry(
            checked_at=at / 1000, status=STATUSES[status],
            latency_ms=None if latency is None else latency / 1000,
            failure=None if kind is None else kind.value,
        ).to_dict())
    return entries

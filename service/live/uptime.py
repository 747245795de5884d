"""Time-weighted uptime: the values storage answers with, and the arithmetic behind them.

Pure (no sqlite, no trio) so that it is tested against hand-computed
timelines; :mod:`service.live.storage` feeds it and keeps what it adds up.

Times are integer milliseconds (unix), so sums are exact and upserts never
drift. A verdict of series ``(model, provider)`` at ``at`` holds its state
(up, or down) from ``at`` until the series' next verdict, but at most
``hold`` ms: past that the series is *not covered* (a stopped checker or a
restart is a gap, not downtime). Uptime is up out of covered. A verdict
that says nothing about availability (``up`` None: a deployment that is
never checked, ``unsupported``) ends the previous hold and covers nothing.

The MODEL series ``(model, MODEL)`` is the union of its providers: covered
while any provider's hold runs, up while any *up* provider's hold runs. It
is computed up to a *frontier*, the latest verdict time seen for the model:
every provider's verdict is at or before it, so on ``[frontier, t)`` each
provider's hold is a prefix ``[frontier, at + hold)`` and the union is the
longest of them (:func:`held`). Verdicts reach storage in about the order
they were made (``checked_at`` is when a probe finished, recorded at once),
so a provider's verdict older than the frontier (out of order across
providers) is *clamped*: for the model it starts at the frontier, and the
part ``[at, frontier)`` keeps what was emitted before it arrived. Within one
series a verdict older than its latest is ignored (the live state never
records one); one at the same millisecond replaces the latest's state.

What is still running at query time (each series' latest hold, until
``min(now, at + hold)``) is not in the increments: :func:`open_tail` adds it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "DAY",
    "HOUR",
    "MINUTE",
    "MODEL",
    "PERIODS",
    "DayUptime",
    "Incident",
    "Uptime",
    "UptimeAccumulator",
    "UptimeReport",
    "held",
    "open_tail",
    "overlap",
]

#: The provider of a model's own series (the model as a whole).
MODEL: Final = ""
MINUTE: Final = 60_000
HOUR: Final = 3_600_000
DAY: Final = 86_400_000
#: Rollup table suffix -> its period in ms.
PERIODS: Final[tuple[tuple[str, int], ...]] = (("minute", MINUTE), ("hour", HOUR), ("day", DAY))
_COARSER: Final = PERIODS[1:]
#: Index of a raw status' count in a cell, after up and covered.
HEALTHY, DEGRADED, DOWN, OTHER = 0, 1, 2, 3

Key = tuple[str, str]  # (model, provider); provider MODEL for the model series
#: (period name, series, period start ms) -> [up ms, covered ms, healthy, degraded, down, other]
Increments = dict[tuple[str, Key, int], list[int]]


@dataclass(frozen=True, slots=True)
class Uptime:
    """Seconds up and covered (some verdict held) out of a window's seconds."""

    up_seconds: float
    covered_seconds: float
    window_seconds: float

    @property
    def ratio(self) -> float | None:
        """Up out of covered; None when nothing was covered (no verdict held in the window)."""
        return self.up_seconds / self.covered_seconds if self.covered_seconds > 0 else None

    @property
    def coverage(self) -> float:
        """Covered out of the window (0 for an empty window)."""
        return self.covered_seconds / self.window_seconds if self.window_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "uptime": None if ratio is None else round(ratio, 6),
            "up_seconds": round(self.up_seconds, 3),
            "covered_seconds": round(self.covered_seconds, 3),
            "coverage": round(self.coverage, 6),
        }


@dataclass(frozen=True, slots=True)
class UptimeReport:
    """Uptime over ``[start, end)`` per model (the union of its providers) and per adapter."""

    window_seconds: float
    start: float  # unix
    end: float  # unix
    models: dict[str, Uptime]  # the model series (provider '')
    adapters: dict[tuple[str, str], Uptime]  # (model, provider)


@dataclass(frozen=True, slots=True)
class DayUptime:
    """One UTC day's uptime."""

    start: float  # unix midnight UTC
    uptime: Uptime


@dataclass(frozen=True, slots=True)
class Incident:
    """A stretch of time in which some adapter of a model reported down."""

    model: str
    started_at: float
    ended_at: float | None  # None: still open
    duration_seconds: float  # to ended_at, or to now while open
    severity: str  # "major": every checked provider of the model down at once; else "partial"
    failures: tuple[str, ...]  # failure kinds seen, sorted
    adapters: tuple[str, ...]  # affected providers, sorted

    @property
    def open(self) -> bool:
        return self.ended_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "status": "open" if self.ended_at is None else "resolved",
            "started_at": round(self.started_at, 3),
            "ended_at": None if self.ended_at is None else round(self.ended_at, 3),
            "duration_seconds": round(self.duration_seconds, 3),
            "severity": self.severity,
            "failures": list(self.failures),
            "adapters": list(self.adapters),
        }


def overlap(start: int, end: int, lo: int, hi: int) -> int:
    """Length of ``[start, end)`` inside ``[lo, hi)`` (0 when apart)."""
    return max(0, min(end, hi) - max(start, lo))


def held(
    frontier: int, holds: Iterable[tuple[int, bool | None]], hold: int, until: int
) -> tuple[int, int]:
    """Ends of the up and covered prefixes of ``[frontier, until)``.

    ``holds`` are ``(at, up)`` verdicts all at or before ``frontier``: the
    span is covered up to the latest ``at + hold`` and up to the latest one
    of an up verdict (each capped at ``until``, never before ``frontier``).
    """
    up_end = covered_end = frontier
    for at, up in holds:
        if up is None:
            continue
        end = min(until, at + hold)
        covered_end = max(covered_end, end)
        if up:
            up_end = max(up_end, end)
    return up_end, covered_end


def open_tail(
    frontier: int | None, holds: Iterable[tuple[int, bool | None]], hold: int, now: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The still-running ``(up, covered)`` intervals of a series at ``now``.

    For an adapter series ``frontier`` is its latest verdict's time and
    ``holds`` that verdict; for a model series, its frontier and every
    provider's latest verdict. Empty intervals are ``(x, x)``.
    """
    if frontier is None or now <= frontier:
        return (0, 0), (0, 0)
    up_end, covered_end = held(frontier, holds, hold, now)
    return (frontier, up_end), (frontier, covered_end)


@dataclass(slots=True)
class UptimeAccumulator:
    """Turns verdicts into per-period increments of up/covered ms and status counts.

    ``latest``: each adapter series' latest ``(at, up)``; ``frontiers``: each
    model's frontier (see the module doc). Both come back from storage on a
    restart (or after a write that rolled back), so the accumulation
    continues where it was committed.
    """

    hold: int  # ms
    latest: dict[Key, tuple[int, bool | None]] = field(default_factory=dict)
    frontiers: dict[str, int] = field(default_factory=dict)
    #: (series key, minute start) -> [up ms, covered ms, healthy, degraded, down, other]
    _minutes: dict[tuple[Key, int], list[int]] = field(default_factory=dict)
    _providers: dict[str, dict[str, tuple[int, bool | None]]] = field(default_factory=dict)
    #: Per model, where its up and its covered holds end at the latest (:func:`held`
    #: without a pass over its providers for every verdict).
    _ends: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for (model, provider), verdict in self.latest.items():
            self._providers.setdefault(model, {})[provider] = verdict
        for model, providers in self._providers.items():
            newest = max(at for at, _ in providers.values())
            self.frontiers[model] = max(self.frontiers.get(model, newest), newest)
            self._recount(model)

    def _recount(self, model: str) -> None:
        frontier = self.frontiers[model]
        self._ends[model] = list(held(frontier, self._providers[model].values(), self.hold, 2**62))

    def take(self) -> Increments:
        """The increments added since the last take, for every period.

        Verdicts are accumulated per minute only (the hot path: one cell per
        piece instead of three); hours and days are their minutes summed
        here, once per write. Exact: minutes nest in UTC hours and days.
        """
        minutes, self._minutes = self._minutes, {}
        increments: Increments = {}
        for (key, start), cell in minutes.items():
            increments[("minute", key, start)] = cell
            for name, period in _COARSER:
                coarse = increments.get((name, key, start - start % period))
                if coarse is None:
                    increments[(name, key, start - start % period)] = cell.copy()
                else:
                    for index, value in enumerate(cell):
                        coarse[index] += value
        return increments

    def feed(
        self, model: str, provider: str, at: int, up: bool | None, kind: int = OTHER
    ) -> None:
        """Take in one verdict of adapter ``(model, provider)`` at ``at`` ms.

        ``kind`` is the raw status' count column (:data:`HEALTHY` ...),
        counted in the periods containing ``at``.
        """
        key = (model, provider)
        previous = self.latest.get(key)
        if previous is not None and at < previous[0]:
            return  # older than its series' latest: see the module doc
        providers = self._providers.setdefault(model, {})
        frontier = self.frontiers.get(model)
        ends = self._ends.setdefault(model, [at, at])
        if frontier is not None and at > frontier:
            self._add(
                (model, MODEL), frontier, min(at, max(frontier, ends[0])),
                min(at, max(frontier, ends[1])),
            )
        if previous is not None and at > previous[0] and previous[1] is not None:
            start, was_up = previous
            end = min(at, start + self.hold)
            self._add(key, start, end if was_up else start, end)
        self.latest[key] = providers[provider] = (at, up)
        self.frontiers[model] = at if frontier is None else max(frontier, at)
        # A provider's hold only ever ends later, unless it stops being up or covered.
        if previous is not None and (
            (previous[1] is True and up is not True) or (previous[1] is not None and up is None)
        ):
            self._recount(model)
        else:
            if up:
                ends[0] = max(ends[0], at + self.hold)
            if up is not None:
                ends[1] = max(ends[1], at + self.hold)
        self._count(key, at, kind)
        self._count((model, MODEL), at, kind)

    def _add(self, key: Key, start: int, up_end: int, covered_end: int) -> None:
        """Add ``[start, up_end)`` up and ``[start, covered_end)`` covered to its minutes."""
        if covered_end <= start:
            return
        minutes = self._minutes
        bucket = start - start % MINUTE
        if covered_end <= bucket + MINUTE:  # the usual case: within one minute
            cell = minutes.get((key, bucket))
            if cell is None:
                cell = minutes[(key, bucket)] = [0, 0, 0, 0, 0, 0]
            cell[0] += up_end - start
            cell[1] += covered_end - start
            return
        while bucket < covered_end:
            following = bucket + MINUTE
            cell = minutes.get((key, bucket))
            if cell is None:
                cell = minutes[(key, bucket)] = [0, 0, 0, 0, 0, 0]
            cell[0] += overlap(start, up_end, bucket, following)
            cell[1] += overlap(start, covered_end, bucket, following)
            bucket = following

    def _count(self, key: Key, at: int, kind: int) -> None:
        bucket = at - at % MINUTE
        cell = self._minutes.get((key, bucket))
        if cell is None:
            cell = self._minutes[(key, bucket)] = [0, 0, 0, 0, 0, 0]
        cell[2 + kind] += 1

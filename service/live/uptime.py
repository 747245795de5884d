"""Time-weighted uptime: the values storage answers with, and the arithmetic behind them.

Pure (no sqlite, no trio) so that it can be tested against hand-computed
timelines. See :class:`~service.live.storage.Storage` for where it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DayUptime", "Incident", "Uptime", "UptimeReport"]


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

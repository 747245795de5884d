"""Finished check runs kept a few seconds for anonymous callers (``[server] anonymous_min_interval``).

See :mod:`service.api.runs`: a finished run's report answers anonymous
callers of the same selection for ``anonymous_min_interval`` seconds instead
of a new run, each result marked ``cached`` with its age, as ``min_interval``
marks a remembered verdict.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Hashable
from typing import Final

import trio

from ..engine.report import HealthReport, ModelReport

__all__ = ["MAX_RECENT_RUNS", "RecentRuns"]

#: The most finished runs kept (one per selection asked for); the oldest go first.
MAX_RECENT_RUNS: Final = 256


class RecentRuns:
    """Finished runs' reports by run key, kept ``interval`` seconds for anonymous callers."""

    def __init__(self, interval: float, capacity: int = MAX_RECENT_RUNS) -> None:
        self.interval = interval
        self.capacity = capacity
        # key -> (Trio clock when it finished, the trio.run it finished in, report)
        self._reports: OrderedDict[Hashable, tuple[float, object, HealthReport]] = OrderedDict()

    def __repr__(self) -> str:
        return f"RecentRuns(interval={self.interval:g}, kept={len(self._reports)})"

    def __len__(self) -> int:
        return len(self._reports)

    def put(self, key: Hashable, report: HealthReport) -> None:
        if self.interval <= 0:
            return
        now = trio.current_time()
        self._reports[key] = (now, trio.lowlevel.current_trio_token(), report)
        self._reports.move_to_end(key)
        # Oldest first: drop what has expired, and the oldest beyond capacity.
        while self._reports:
            at, _, _ = next(iter(self._reports.values()))
            if now - at < self.interval and len(self._reports) <= self.capacity:
                break
            self._reports.popitem(last=False)

    def get(self, key: Hashable) -> HealthReport | None:
        """The report finished less than ``interval`` s ago, its results marked with their age."""
        entry = self._reports.get(key)
        if entry is None:
            return None
        at, token, report = entry
        age = trio.current_time() - at
        if token is not trio.lowlevel.current_trio_token() or not 0 <= age < self.interval:
            del self._reports[key]
            return None
        return _aged(report, age)


def _aged(report: HealthReport, age: float) -> HealthReport:
    """``report`` served ``age`` seconds after its run: every result ``cached``, with its age."""
    models = {
        name: ModelReport(
            name,
            {
                provider: dataclasses.replace(r, cached_age=(r.cached_age or 0.0) + age)
                for provider, r in model.results.items()
            },
        )
        for name, model in report.models.items()
    }
    return dataclasses.replace(report, models=models)

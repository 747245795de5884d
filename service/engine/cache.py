"""Recent results: serve a young verdict instead of probing the provider again.

``[checks] min_interval`` (seconds, default 0 = off) and the per-provider
``min_interval`` override set how old an adapter's last result may be and
still be served. Within that interval a check returns the remembered result,
marked ``cached`` with its ``age``, and sends nothing upstream, so a
dashboard polling every second, or several replicas' worth of requests,
costs one probe per adapter per interval.

What is remembered: every verdict the adapter itself earned (healthy,
unhealthy for any reason, or its own timeout). What is not: outcomes that say
more about the caller or this process than about the provider (the run's or
the model's budget ran out, the probe never started, local resource
exhaustion, no open HTTP client, or it never got a probe slot) — those would
otherwise be served to callers with bigger budgets. Nothing is remembered
from a probe that was cancelled.

**Retry-After holds**: a 429 or 503 carrying ``Retry-After`` asks us not to
come back before then. :meth:`RecentResults.hold` keeps that result for the
adapter until the time is up (capped at :data:`MAX_RETRY_AFTER` seconds, so a
hostile or buggy header cannot silence an adapter for ever), and every check
meanwhile reports it instead of probing, marked ``"source": "retry_after"``
with its age — whatever ``min_interval`` says, and even for the performance
measurement: hammering a provider that asked for a pause is how a health
checker gets an account rate-limited.

Ages are measured on the Trio clock (monotonic): a wall-clock jump neither
expires nor revives a result. Entries are keyed by (model, provider) and
belong to one adapter object: replacing an adapter forgets its result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import trio

from adapters.base import Adapter, FailureKind

from .report import ProbeResult

__all__ = ["MAX_RETRY_AFTER", "RecentResults", "says_about_provider"]

#: The longest Retry-After honoured (seconds).
MAX_RETRY_AFTER = 300.0

#: Outcomes about the caller's budget or this process, not about the provider.
_NOT_REMEMBERED = frozenset(
    {FailureKind.DEADLINE, FailureKind.NOT_STARTED, FailureKind.RESOURCE, FailureKind.NOT_OPEN}
)


def says_about_provider(result: ProbeResult) -> bool:
    """Whether ``result`` is a verdict the provider earned (see the module doc)."""
    return result.failure not in _NOT_REMEMBERED


@dataclass(frozen=True, slots=True)
class _Entry:
    adapter: Adapter
    result: ProbeResult
    at: float  # trio clock when the result was made
    run: object  # the trio.run it was made in: another run's clock is not comparable
    until: float = 0.0  # holds only: trio clock when the Retry-After ends


class RecentResults:
    """Per-adapter last results, served while younger than the adapter's ``min_interval``."""

    def __init__(
        self,
        min_interval: float = 0.0,
        overrides: Mapping[tuple[str, str], float] | None = None,
    ) -> None:
        self.min_interval = min_interval
        # (model, provider) -> seconds; 0 turns caching off for that adapter.
        self.overrides = dict(overrides or {})
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._holds: dict[tuple[str, str], _Entry] = {}

    def __repr__(self) -> str:
        return (
            f"RecentResults(min_interval={self.min_interval:g}, overrides={len(self.overrides)}, "
            f"entries={len(self._entries)})"
        )

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enabled(self) -> bool:
        return self.min_interval > 0 or any(v > 0 for v in self.overrides.values())

    def interval(self, model: str, provider: str) -> float:
        return self.overrides.get((model, provider), self.min_interval)

    def fresh(self, model: str, adapter: Adapter) -> ProbeResult | None:
        """The remembered result, marked cached with its age, if young enough; else None."""
        key = (model, adapter.provider)
        entry = self._entries.get(key)
        if entry is None or entry.adapter is not adapter:
            return None
        if entry.run is not trio.lowlevel.current_trio_token():
            return None  # made under another trio.run, whose clock had another origin
        age = trio.current_time() - entry.at
        if not 0 <= age < self.interval(*key):
            return None
        return dataclasses.replace(entry.result, cached_age=max(age, 0.0))

    def hold(self, model: str, adapter: Adapter, result: ProbeResult, seconds: float) -> None:
        """Serve ``result`` instead of probing for ``seconds`` (a Retry-After; capped)."""
        seconds = min(seconds, MAX_RETRY_AFTER)
        if not seconds > 0:
            return
        now = trio.current_time()
        self._holds[(model, adapter.provider)] = _Entry(
            adapter, result, now, trio.lowlevel.current_trio_token(), until=now + seconds
        )

    def held(self, model: str, adapter: Adapter) -> ProbeResult | None:
        """The held result while its Retry-After lasts, marked with its age; else None."""
        key = (model, adapter.provider)
        entry = self._holds.get(key)
        if entry is None:
            return None
        now = trio.current_time()
        if (
            entry.adapter is not adapter
            or entry.run is not trio.lowlevel.current_trio_token()
            or now >= entry.until
        ):
            del self._holds[key]
            return None
        note = f"not probed: honouring Retry-After for {entry.until - now:.1f} s more"
        error = f"{entry.result.error}; {note}" if entry.result.error else note
        return dataclasses.replace(
            entry.result, cached_age=max(now - entry.at, 0.0), source="retry_after", error=error
        )

    def remember(self, model: str, adapter: Adapter, result: ProbeResult) -> None:
        """Keep ``result`` if it is a verdict about the provider (see the module doc)."""
        if result.cached_age is not None or self.interval(model, adapter.provider) <= 0:
            return
        if not says_about_provider(result):
            return
        self._entries[(model, adapter.provider)] = _Entry(
            adapter, result, trio.current_time(), trio.lowlevel.current_trio_token()
        )

    def clear(self) -> None:
        self._entries.clear()
        self._holds.clear()

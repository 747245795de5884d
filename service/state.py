"""The live health state: every adapter's latest result, its reported status and history.

One :class:`HealthState` per app holds, per adapter (model, provider):

* the latest result that says something about the provider (results served
  from ``min_interval``, and outcomes about the caller's budget or this
  process, are left out: :func:`service.cache.says_about_provider`);
* the *reported* status after hysteresis: the first result sets it; after
  that a flip to healthy needs ``healthy_threshold`` consecutive healthy
  results, a flip to not-healthy ``unhealthy_threshold`` consecutive
  not-healthy ones (``unhealthy`` and ``timeout`` both count), so one blip
  does not flap a provider. While it stays on the not-healthy side the
  reported status follows the results (``unhealthy`` / ``timeout``);
* the last :data:`HISTORY_LENGTH` results (``checked_at``, raw ``status``,
  ``latency_ms``, ``failure``).

Readers (request handlers) only read memory; writers are the background
checker and live runs. Entries are immutable and replaced whole; ``changes``
(a ``trio_util.AsyncValue`` counting updates) lets a task wait for the state
to move without polling. Ages are measured on the Trio clock.

Embedders follow status changes with :meth:`HealthState.subscribe`: a memory
channel of :class:`Transition` (an async iterator). A transition is an
adapter's first result and every flip of its reported status between
healthy and not healthy. The writer never waits for a subscriber: one whose
buffer is full is dropped (its channel closes, a warning is logged).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import trio
from trio_util import AsyncValue  # type: ignore[import-untyped]

from adapters.base import Adapter

from .cache import says_about_provider
from .config import CheckSchedule
from .report import HealthReport, ModelReport, ProbeResult, ProbeStatus

__all__ = ["HISTORY_LENGTH", "AdapterState", "HealthState", "HistoryEntry", "Transition"]

logger = logging.getLogger("router_health.state")

#: Results kept per adapter for ``GET /v1/health/history``.
HISTORY_LENGTH: Final = 50

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    checked_at: float  # unix time
    status: ProbeStatus  # the probe's own verdict, before hysteresis
    latency_ms: float | None
    failure: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked_at": round(self.checked_at, 3),
            "status": self.status.value,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "failure": self.failure,
        }


@dataclass(frozen=True, slots=True)
class Transition:
    """An adapter's reported status changed (``previous`` is None for its first result)."""

    model: str
    provider: str
    previous: ProbeStatus | None
    current: ProbeStatus
    result: ProbeResult  # the result that made the change


@dataclass(frozen=True, slots=True)
class AdapterState:
    """One adapter's latest result and reported status."""

    latest: ProbeResult
    at: float  # trio clock when ``latest`` was recorded
    reported: ProbeStatus  # after hysteresis
    streak: int = 0  # consecutive results disagreeing with ``reported``

    @property
    def reported_healthy(self) -> bool:
        return self.reported is ProbeStatus.HEALTHY

    @property
    def changing(self) -> bool:
        """Some results disagree with the reported status, not yet enough to flip it."""
        return self.streak > 0

    def next(self, result: ProbeResult, schedule: CheckSchedule) -> AdapterState:
        """The state after ``result`` (the hysteresis rule, see the module doc)."""
        now = trio.current_time()
        if result.healthy == self.reported_healthy:
            return AdapterState(result, now, result.status)
        streak = self.streak + 1
        needed = schedule.healthy_threshold if result.healthy else schedule.unhealthy_threshold
        if streak >= needed:
            return AdapterState(result, now, result.status)
        return AdapterState(result, now, self.reported, streak)


class HealthState:
    """Every adapter's live state; ``schedule_for(model, provider)`` gives thresholds and max_age."""

    def __init__(self, schedule_for: Callable[[str, str], CheckSchedule]) -> None:
        self.schedule_for = schedule_for
        self._states: dict[Key, AdapterState] = {}
        self._history: dict[Key, deque[HistoryEntry]] = {}
        #: Bumped on every recorded result: ``await state.changes.wait_value(lambda n: n >= k)``.
        self.changes: AsyncValue = AsyncValue(0)
        self._subscribers: list[trio.MemorySendChannel[Transition]] = []

    def __repr__(self) -> str:
        return f"HealthState(adapters={len(self._states)}, changes={self.changes.value})"

    def subscribe(self, buffer: int = 100) -> trio.MemoryReceiveChannel[Transition]:
        """A channel of every :class:`Transition` from now on; iterate it with ``async for``.

        At most ``buffer`` transitions wait unread; one more drops the
        subscriber (the channel ends). Close the channel to unsubscribe.
        """
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1, got {buffer!r}")
        send, receive = trio.open_memory_channel[Transition](buffer)
        self._subscribers.append(send)
        return receive

    def close(self) -> None:
        """End every subscriber's channel (the app calls it at shutdown)."""
        subscribers, self._subscribers = self._subscribers, []
        for send in subscribers:
            send.close()

    def _publish(self, transition: Transition) -> None:
        kept: list[trio.MemorySendChannel[Transition]] = []
        for send in self._subscribers:
            try:
                send.send_nowait(transition)
            except trio.WouldBlock:
                logger.warning(
                    "dropping a status subscriber: %d transitions unread",
                    send.statistics().current_buffer_used,
                )
                send.close()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                send.close()  # the subscriber closed its end
            else:
                kept.append(send)
        self._subscribers = kept

    def get(self, model: str, provider: str) -> AdapterState | None:
        return self._states.get((model, provider))

    def history(self, model: str, provider: str) -> list[HistoryEntry]:
        return list(self._history.get((model, provider), ()))

    def record(self, result: ProbeResult) -> None:
        """Take a result in (a :data:`~service.checker.ResultCallback`); ignores non-verdicts."""
        if result.cached or not says_about_provider(result):
            return
        key = (result.model, result.provider)
        previous = self._states.get(key)
        if previous is None:
            state = AdapterState(result, trio.current_time(), result.status)
        else:
            state = previous.next(result, self.schedule_for(*key))
        self._states[key] = state
        history = self._history.setdefault(key, deque(maxlen=HISTORY_LENGTH))
        history.append(
            HistoryEntry(
                checked_at=result.checked_at,
                status=result.status,
                latency_ms=result.latency_ms,
                failure=result.failure.value if result.failure else None,
            )
        )
        self.changes.value = self.changes.value + 1
        if previous is None or previous.reported_healthy != state.reported_healthy:
            self._publish(
                Transition(
                    model=result.model,
                    provider=result.provider,
                    previous=None if previous is None else previous.reported,
                    current=state.reported,
                    result=result,
                )
            )

    def report(
        self,
        plan: Mapping[str, Sequence[Adapter]],
        *,
        timeout: float,
        concurrent: bool,
    ) -> HealthReport | None:
        """``plan``'s report from memory, or None if any adapter's result is missing or too old.

        Each result carries the reported status and its age (``age_s``); the
        report says ``"source": "background"``.
        """
        now = trio.current_time()
        models: dict[str, ModelReport] = {}
        for model, adapters in plan.items():
            results: dict[str, ProbeResult] = {}
            for adapter in adapters:
                state = self._states.get((model, adapter.provider))
                if state is None:
                    return None
                age = max(now - state.at, 0.0)
                if age >= self.schedule_for(model, adapter.provider).served_max_age:
                    return None
                results[adapter.provider] = dataclasses.replace(
                    state.latest, status=state.reported, cached_age=age
                )
            models[model] = ModelReport(model, results)
        return HealthReport(
            models=models,
            timestamp=time.time(),
            execution_time=0.0,
            concurrent=concurrent,
            timeout=timeout,
            extra={"source": "background"},
        )

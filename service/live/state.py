"""The live health state: every adapter's latest result, its reported status and history.

One :class:`HealthState` per app holds, per adapter (model, provider):

* the latest result that says something about the provider (results served
  from ``min_interval``, and outcomes about the caller's budget or this
  process, are left out: :func:`service.engine.cache.says_about_provider`);
* the *reported* status after hysteresis. Statuses fall on two sides: *up*
  (``healthy``, ``degraded``: still serving) and *down* (``unhealthy``,
  ``timeout``). The first result sets the status; after that crossing to up
  needs ``healthy_threshold`` consecutive up results, crossing to down
  ``unhealthy_threshold`` consecutive down ones, so one blip does not flap a
  provider. Within a side the reported status follows the latest result;
* **transient** failures (``[checks] transient``: a 429, the probe's own
  timeout) arrive ``degraded`` from the checker and count as up, until
  ``transient_limit`` of them in a row (0 = never): from then on they count
  as what they are (``unhealthy`` / ``timeout``), because a provider that
  has timed out five times running is down, not busy;
* the **latency SLO** (``latency_slo_ms``): while up, an adapter whose
  ``slo_percentile`` latency over its last ``slo_window`` answered probes
  (at least :data:`SLO_MIN_SAMPLES`, or the whole window if smaller) is
  above the SLO is reported ``degraded``, with the measured percentile in
  its ``error``;
* the last :data:`HISTORY_LENGTH` results (``checked_at``, raw ``status``,
  ``latency_ms``, ``failure``).

Served results (:meth:`HealthState.report`) are fresh while younger than the
adapter's ``max_age``; with ``allow_stale`` a result up to
``stale_while_revalidate`` seconds older is still served, marked ``stale``
(the caller starts a refresh: stale-while-revalidate); older than that, or
missing, and the caller must check live.

Readers (request handlers) only read memory; writers are the background
checker and live runs. Entries are immutable and replaced whole; ``changes``
(a ``trio_util.AsyncValue`` counting updates) lets a task wait for the state
to move without polling. Ages are measured on the Trio clock.

Embedders follow status changes with :meth:`HealthState.subscribe`: a memory
channel of :class:`Transition` (an async iterator). A transition is an
adapter's first result and every change of its reported *level*: healthy,
degraded, or down (``unhealthy`` and ``timeout`` are one level). The writer never waits for a subscriber: one whose
buffer is full is dropped (its channel closes, a warning is logged).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import trio
from trio_util import AsyncValue  # type: ignore[import-untyped]

from adapters.base import Adapter, FailureKind

from ..config import HISTORY_LENGTH, CheckSchedule
from ..engine.cache import says_about_provider
from ..engine.report import HealthReport, ModelReport, ProbeResult, ProbeStatus

__all__ = [
    "HISTORY_LENGTH",
    "SLO_MIN_SAMPLES",
    "AdapterState",
    "HealthState",
    "HistoryEntry",
    "Restored",
    "Transition",
    "level",
]

logger = logging.getLogger("router_health.state")

#: Results kept per adapter for ``GET /v1/health/history``.
#: Answered probes needed before a latency SLO can make an adapter degraded.
SLO_MIN_SAMPLES: Final = 5


def level(status: ProbeStatus) -> str:
    """``healthy``, ``degraded`` or ``down``: what a transition is a change of."""
    if status.usable:
        return status.value
    return "down"


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank ``pct`` percentile of ``values`` (non-empty)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]

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
class Restored:
    """A verdict from before a restart that :meth:`HealthState.restore` took in (no transition told of it)."""

    model: str
    provider: str
    reported: ProbeStatus  # the status it reported then
    result: ProbeResult  # the stored verdict itself
    at: float  # trio clock matching ``result.checked_at`` (now minus its age at restore)


@dataclass(frozen=True, slots=True)
class AdapterState:
    """One adapter's latest result and reported status."""

    latest: ProbeResult
    at: float  # trio clock when ``latest`` was recorded
    reported: ProbeStatus  # after hysteresis, transient escalation and the SLO
    streak: int = 0  # consecutive results on the other side from ``reported``
    transient_streak: int = 0  # consecutive transient (degraded) failures
    note: str | None = None  # why it is degraded when ``latest`` does not say (the SLO)

    @property
    def reported_healthy(self) -> bool:
        return self.reported is ProbeStatus.HEALTHY

    @property
    def up(self) -> bool:
        return self.reported.usable

    @property
    def changing(self) -> bool:
        """Some results disagree with the reported side, not yet enough to flip it."""
        return self.streak > 0

    @staticmethod
    def first(result: ProbeResult, schedule: CheckSchedule) -> AdapterState:
        status, transient = _effective(result, 0, schedule)
        return AdapterState(result, trio.current_time(), status, 0, transient)

    def next(self, result: ProbeResult, schedule: CheckSchedule) -> AdapterState:
        """The state after ``result`` (the hysteresis rule, see the module doc)."""
        now = trio.current_time()
        status, transient = _effective(result, self.transient_streak, schedule)
        if status is ProbeStatus.DEGRADED and result.failure is not None and not self.up:
            # A transient failure keeps an up adapter degraded; it never brings
            # a down one back (a black-holed provider's timeouts are not "up").
            status = _down(result.failure)
        if status.usable == self.up:
            return AdapterState(result, now, status, 0, transient)
        streak = self.streak + 1
        needed = schedule.healthy_threshold if status.usable else schedule.unhealthy_threshold
        if streak >= needed:
            return AdapterState(result, now, status, 0, transient)
        # Not flipped yet: the reported status, and its reason, carry over.
        return AdapterState(result, now, self.reported, streak, transient, self.note)


def _effective(
    result: ProbeResult, transient_streak: int, schedule: CheckSchedule
) -> tuple[ProbeStatus, int]:
    """``result``'s status once transient escalation applies, and the new transient streak."""
    if result.status is not ProbeStatus.DEGRADED or result.failure is None:
        return result.status, 0
    streak = transient_streak + 1
    if schedule.transient_limit and streak >= schedule.transient_limit:
        return _down(result.failure), streak
    return ProbeStatus.DEGRADED, streak


def _down(failure: FailureKind) -> ProbeStatus:
    """What a transient failure is when it does not count as transient."""
    return ProbeStatus.TIMEOUT if failure is FailureKind.TIMEOUT else ProbeStatus.UNHEALTHY


class HealthState:
    """Every adapter's live state; ``schedule_for(model, provider)`` gives thresholds and max_age."""

    def __init__(self, schedule_for: Callable[[str, str], CheckSchedule]) -> None:
        self.schedule_for = schedule_for
        self._states: dict[Key, AdapterState] = {}
        self._history: dict[Key, deque[HistoryEntry]] = {}
        #: Bumped on every recorded result: ``await state.changes.wait_value(lambda n: n >= k)``.
        self.changes: AsyncValue = AsyncValue(0)
        self._subscribers: list[trio.MemorySendChannel[Transition]] = []
        self._restored: list[Restored] = []
        #: Called with every result the state takes in, once it has (the stream's
        #: ``route`` events). They must not block or raise.
        self.record_listeners: list[Callable[[ProbeResult], None]] = []

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

    def restore(self, result: ProbeResult, reported: ProbeStatus, age: float) -> None:
        """Take in a verdict from before a restart, ``age`` seconds old (storage's load).

        Only for an adapter with no state yet; no transition, no listeners:
        nothing changed, the process did. The next result continues its
        hysteresis from ``reported``. Subscribers that follow spells across a
        restart (the alert channels) read what was restored with :meth:`restored`.
        """
        key = (result.model, result.provider)
        if key in self._states:
            return
        at = trio.current_time() - max(age, 0.0)
        self._states[key] = AdapterState(result, at, reported)
        self._restored.append(Restored(result.model, result.provider, reported, result, at))
        self._history.setdefault(key, deque(maxlen=HISTORY_LENGTH)).append(
            HistoryEntry(
                checked_at=result.checked_at,
                status=result.status,
                latency_ms=result.latency_ms,
                failure=result.failure.value if result.failure else None,
            )
        )
        self.changes.value = self.changes.value + 1

    def restored(self) -> list[Restored]:
        """Every verdict :meth:`restore` took in, in order (kept: later results do not remove them)."""
        return list(self._restored)

    def record(self, result: ProbeResult) -> None:
        """Take a result in (a :data:`~service.engine.checker.ResultCallback`); ignores non-verdicts."""
        if result.cached or not says_about_provider(result):
            return
        key = (result.model, result.provider)
        previous = self._states.get(key)
        if previous is not None and result.checked_at < previous.latest.checked_at:
            # An older probe finishing late (a live run overlapping a background
            # one) must not move the status backwards.
            return
        schedule = self.schedule_for(*key)
        if previous is None:
            state = AdapterState.first(result, schedule)
        else:
            state = previous.next(result, schedule)
        history = self._history.setdefault(key, deque(maxlen=HISTORY_LENGTH))
        history.append(
            HistoryEntry(
                checked_at=result.checked_at,
                status=result.status,
                latency_ms=result.latency_ms,
                failure=result.failure.value if result.failure else None,
            )
        )
        state = _apply_slo(state, history, schedule)
        self._states[key] = state
        self.changes.value = self.changes.value + 1
        if previous is None or level(previous.reported) != level(state.reported):
            self._publish(
                Transition(
                    model=result.model,
                    provider=result.provider,
                    previous=None if previous is None else previous.reported,
                    current=state.reported,
                    result=result,
                )
            )
        for listener in self.record_listeners:
            listener(result)

    def report(
        self,
        plan: Mapping[str, Sequence[Adapter]],
        *,
        timeout: float,
        concurrent: bool,
        allow_stale: bool = False,
    ) -> HealthReport | None:
        """``plan``'s report from memory, or None if any adapter's result is missing or too old.

        Each result carries the reported status and its age (``age_s``); the
        report says ``"source": "background"``. With ``allow_stale``, results
        past ``max_age`` but within ``stale_while_revalidate`` are served
        marked ``stale`` (and the report's ``"stale"`` counts them): the
        caller refreshes them (:func:`stale_results`).
        """
        now = trio.current_time()
        models: dict[str, ModelReport] = {}
        stale = 0
        for model, adapters in plan.items():
            results: dict[str, ProbeResult] = {}
            for adapter in adapters:
                state = self._states.get((model, adapter.provider))
                if state is None:
                    return None
                age = max(now - state.at, 0.0)
                schedule = self.schedule_for(model, adapter.provider)
                is_stale = age >= schedule.served_max_age
                if is_stale and not (
                    allow_stale and age < schedule.served_max_age + schedule.stale_for
                ):
                    return None
                stale += is_stale
                error = state.latest.error
                if state.note is not None:
                    error = state.note if error is None else f"{error}; {state.note}"
                results[adapter.provider] = dataclasses.replace(
                    state.latest, status=state.reported, cached_age=age, stale=is_stale, error=error
                )
            models[model] = ModelReport(model, results)
        return HealthReport(
            models=models,
            timestamp=time.time(),
            execution_time=0.0,
            concurrent=concurrent,
            timeout=timeout,
            extra={"source": "background", "stale": stale} if stale else {"source": "background"},
        )


def stale_results(report: HealthReport) -> list[tuple[str, str]]:
    """(model, provider) of every result ``report`` served stale."""
    return [(r.model, r.provider) for r in report.results() if r.stale]


def _apply_slo(
    state: AdapterState, history: Sequence[HistoryEntry], schedule: CheckSchedule
) -> AdapterState:
    """``state`` degraded (with a note) if it is healthy but its latency breaks the SLO."""
    slo = schedule.latency_slo_ms
    if slo is None or state.reported is not ProbeStatus.HEALTHY:
        return state
    window = [
        e.latency_ms
        for e in list(history)[-schedule.slo_window :]
        # Answered probes only: a timeout's latency is its deadline, and a
        # fast 429 would pull the percentile down.
        if e.latency_ms is not None and e.failure is None
    ]
    if len(window) < min(SLO_MIN_SAMPLES, schedule.slo_window):
        return state
    measured = percentile(window, schedule.slo_percentile)
    if measured <= slo:
        return state
    note = (
        f"p{schedule.slo_percentile:g} latency {measured:.0f} ms over the last {len(window)} "
        f"answered probes is above the SLO of {slo:g} ms"
    )
    return dataclasses.replace(state, reported=ProbeStatus.DEGRADED, note=note)

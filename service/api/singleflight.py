"""Single-flight: concurrent identical calls share one run in flight.

A dashboard polling every second, a burst of retries or an attacker calling
``/v1/health/`` in a loop would otherwise turn every request into a call to
every provider, a paid API. With a :class:`SingleFlight`, a caller that
arrives while a run for the same key is in flight joins that run and gets its
result; only a caller arriving after it finished starts a new one.

The run lives in a nursery the owner passes in (the app's lifetime nursery),
not in any caller's task, so:

* a caller that is cancelled (its client disconnected) leaves; the run goes on
  for the others;
* when the *last* caller leaves before the run is done, nobody wants the
  result: the run is cancelled (and a caller arriving after that starts a
  fresh run instead of joining the dying one, even while it unwinds) —
  unless a caller said ``finish_if_deserted``: its owner keeps finished
  results for later callers, so a client that hangs up in a loop would
  otherwise restart the run, and resend its probes, every time;
* a caller may bring its own ``deadline``: when it passes first, the caller
  stops waiting and gets ``at_deadline(work)`` (what the run has done so far)
  instead; the run goes on for the others, and to its own end even if that
  caller was the last (its probes are out already: cancelling them would
  only make the next caller send them again);
* :meth:`SingleFlight.cancel_all` (at shutdown) cancels every run, and
  :meth:`SingleFlight.wait_idle` waits until they have all unwound.

Nothing outlives its callers by more than its own unwinding.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import trio

__all__ = [
    "FlightCancelled",
    "FlightFailed",
    "SingleFlight",
    "SingleFlightStatistics",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class FlightFailed(Exception):
    """The shared run raised; ``__cause__`` is what it raised (the same for every caller)."""


class FlightCancelled(Exception):
    """The shared run ended without a result: it was cancelled (shutdown) under this caller."""


@dataclass(frozen=True, slots=True)
class SingleFlightStatistics:
    """What a :class:`SingleFlight` is doing (trio's ``statistics()`` convention)."""

    runs_in_flight: int  # runs started and not yet unwound (cancelled ones included)
    callers_waiting: int  # callers currently waiting on a run
    runs_started: int  # since creation
    callers_joined: int  # callers that shared a run someone else started, since creation


@dataclass(eq=False)
class _Flight(Generic[V]):
    work: Callable[[], Awaitable[V]]  # the starting caller's
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    waiters: int = 0
    # A caller left at its own deadline with what the run had done so far:
    # the run then goes on to its end, whoever else leaves.
    kept: bool = False
    has_value: bool = False
    value: V | None = None
    error: Exception | None = None


class SingleFlight(Generic[K, V]):
    """At most one run in flight per key; callers of the same key share it."""

    def __init__(self, name: str = "single-flight") -> None:
        self.name = name
        self._current: dict[K, _Flight[V]] = {}  # the joinable run per key, if any
        self._running: set[_Flight[V]] = set()  # every run not yet unwound
        self._idle = trio.Event()
        self._idle.set()
        self._started = 0
        self._joined = 0

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"SingleFlight({self.name!r}, runs_in_flight={stats.runs_in_flight}, "
            f"callers_waiting={stats.callers_waiting})"
        )

    def statistics(self) -> SingleFlightStatistics:
        return SingleFlightStatistics(
            runs_in_flight=len(self._running),
            callers_waiting=sum(f.waiters for f in self._running),
            runs_started=self._started,
            callers_joined=self._joined,
        )

    async def run(
        self,
        key: K,
        work: Callable[[], Awaitable[V]],
        *,
        nursery: trio.Nursery,
        deadline: float = math.inf,
        at_deadline: Callable[[Callable[[], Awaitable[V]]], V] | None = None,
        finish_if_deserted: bool = False,
    ) -> V:
        """Return ``await work()``, shared with every concurrent caller of ``key``.

        ``work`` runs in ``nursery``; only the caller that starts a run has
        its ``work`` called. Raises :class:`FlightFailed` (from the original
        exception) if the run raised, :class:`FlightCancelled` if it was
        cancelled from outside (:meth:`cancel_all`, or ``nursery`` closing).
        If this caller is cancelled, it leaves; if it was the last one, the
        run is cancelled too (unless a caller already left at its deadline).

        With ``at_deadline``: if the run is not done by ``deadline`` (Trio
        clock), return ``at_deadline(w)`` instead, where ``w`` is the ``work``
        of the caller that started the run (so it can say what the run has
        done so far); the run goes on.

        ``finish_if_deserted``: if this caller is cancelled, the run goes on to
        its end even when nobody else waits (its result is wanted later).
        """
        flight = self._current.get(key)
        if flight is None or not self._joinable(flight):
            flight = _Flight(work)
            # Start first: if the nursery is closed this raises, and no caller
            # is left joining a run that never began.
            nursery.start_soon(self._fly, key, flight)
            self._current[key] = flight
            self._running.add(flight)
            if self._idle.is_set():  # a fresh event only after idling, so waiters are kept
                self._idle = trio.Event()
            self._started += 1
        else:
            self._joined += 1
        if at_deadline is None:
            deadline = math.inf
        flight.waiters += 1
        try:
            with trio.move_on_at(deadline):
                await flight.done.wait()
            if not flight.done.is_set():
                flight.kept = True  # this caller had an answer: the run finishes for it
        except trio.Cancelled:
            if finish_if_deserted:
                flight.kept = True
            raise
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.done.is_set() and not flight.kept:
                flight.cancel_scope.cancel()  # nobody wants the result any more
        if not flight.done.is_set() and at_deadline is not None:
            return at_deadline(flight.work)  # the deadline passed first
        if flight.error is not None:
            raise FlightFailed(f"the shared {self.name} run failed") from flight.error
        if not flight.has_value:
            raise FlightCancelled(f"the shared {self.name} run was cancelled")
        return flight.value  # type: ignore[return-value]

    @staticmethod
    def _joinable(flight: _Flight[V]) -> bool:
        """Still running and not cancelled: a cancelled run may take a while to unwind."""
        return not (flight.done.is_set() or flight.cancel_scope.cancel_called)

    def cancel_all(self) -> None:
        """Cancel every run in flight (they unwind asynchronously: see :meth:`wait_idle`)."""
        for flight in self._running:
            flight.cancel_scope.cancel()

    async def wait_idle(self) -> None:
        """Return once no run is in flight (cancelled runs included, once unwound)."""
        await self._idle.wait()

    async def _fly(self, key: K, flight: _Flight[V]) -> None:
        try:
            with flight.cancel_scope:
                value = await flight.work()
                flight.value, flight.has_value = value, True
        except Exception as exc:
            # Kept for the callers; raising it here would take down the
            # owner's nursery (the whole app) for one failed run.
            flight.error = exc
        finally:
            flight.done.set()
            if self._current.get(key) is flight:
                del self._current[key]
            self._running.discard(flight)
            if not self._running:
                self._idle.set()

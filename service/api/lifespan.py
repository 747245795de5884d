"""The app's serving lifetime: HTTP clients, shared runs, metrics and the live parts, nested.

Quart runs ``before_serving`` and ``after_serving`` as two separate calls:
from the same lifespan task, but each in an app context of its own and with
the ASGI lifespan's send and receive in between, so no ``async with`` can
stay open across them. The nesting therefore lives in one task of the
lifespan nursery (``app.nursery``), which ends it when :meth:`Lifetime.stop`
asks and which that call waits for.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import trio

from ..live.lifecycle import UNWIND_SECONDS, Live, open_live
from .metrics import Metrics
from .state import ServiceState

__all__ = ["Lifetime"]



class Lifetime:
    """One serving of the app: :meth:`start` before serving, :meth:`stop` after."""

    def __init__(self, state: ServiceState) -> None:
        self._state = state
        self._stop: trio.Event | None = None
        self._done = trio.Event()

    async def start(self) -> None:
        """Open everything (a failure fails the startup); returns once it is open."""
        self._stop, self._done = trio.Event(), trio.Event()
        try:
            await self._state.app.nursery.start(self._run, self._stop, self._done)
        except ExceptionGroup as group:
            # The nesting wraps a failing part in a group per layer; the
            # server reports the startup failure by its message, so give it
            # the one error rather than "Exceptions from Trio nursery".
            leaf = _only_error(group)
            if leaf is None:
                raise
            raise leaf from group

    async def stop(self) -> None:
        """Close everything, in the reverse order, and return once it is closed."""
        if self._stop is None:
            return  # never started
        self._stop.set()
        # Shielded: Quart-Trio gives the lifespan nursery a deadline before it
        # calls after_serving, and every wait of the teardown is bounded.
        with trio.CancelScope(shield=True):
            await self._done.wait()

    async def _run(
        self, stop: trio.Event, done: trio.Event, *, task_status: trio.TaskStatus[None]
    ) -> None:
        state = self._state
        try:
            async with (
                _clients_open(state),
                _runs_cancelled_at_end(state),
                open_live(state.config, state.manager, state.events, state.health) as live,
            ):
                with _metrics_attached(state.metrics), _serving(state, live):
                    task_status.started()
                    await stop.wait()
        finally:
            done.set()


@contextlib.asynccontextmanager
async def _clients_open(state: ServiceState) -> AsyncIterator[None]:
    """The manager's HTTP clients open; closed at the end only if opened here."""
    if state.manager.is_open:
        state.owns_manager = False  # its owner closes it
    else:
        await state.manager.__aenter__()
        state.owns_manager = True
    try:
        yield
    finally:
        if state.owns_manager:
            await state.manager.aclose()


@contextlib.asynccontextmanager
async def _runs_cancelled_at_end(state: ServiceState) -> AsyncIterator[None]:
    """At the end, every shared run cancelled and unwound before the clients close."""
    try:
        yield
    finally:
        for flights in state.flights():
            flights.cancel_all()
        # Shielded but bounded: the runs must be gone before their clients close.
        with trio.move_on_after(UNWIND_SECONDS, shield=True):
            await state.wait_idle()


@contextlib.contextmanager
def _metrics_attached(metrics: Metrics | None) -> Iterator[None]:
    if metrics is not None:
        metrics.attach()
    try:
        yield
    finally:
        if metrics is not None:
            metrics.detach()


@contextlib.contextmanager
def _serving(state: ServiceState, live: Live) -> Iterator[None]:
    """What the routes see while the app serves: the runs' nursery and the live parts."""
    state.nursery = state.app.nursery  # shared runs live there, not in a request
    state.background, state.cluster, state.webhook = live.background, live.cluster, live.webhook
    state.storage = live.storage
    state.alerts = live.alerts
    try:
        yield
    finally:
        state.nursery = None  # no new shared runs
        state.background = None  # no more refreshes
        state.storage = None


def _only_error(group: BaseExceptionGroup[Exception]) -> Exception | None:
    """The single error inside nested one-error groups, or None if there are several."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error if isinstance(error, Exception) and not isinstance(error, ExceptionGroup) else None

"""Single-flight never hands a caller a run that is already being cancelled.

When the last caller of a run leaves, the run is cancelled; while it unwinds
(closing its probes' connections can take a while), a caller arriving for the
same key must start a fresh run, not join the dying one and get
``FlightCancelled`` (which the app answers as a 503 "shutting down"). Each
test holds the dying run in its unwinding with an event, so the new caller
arrives exactly in that window: no sleeps, no luck.
"""

from __future__ import annotations

import functools
from typing import Any

import trio
import trio.testing

from service.api.app import EXTENSION_KEY
from service.api.singleflight import SingleFlight
from tests.support.app import get_json, make_app, request_then_disconnect, serving
from tests.support.fakes import adapter
from tests.support.served import GUARD


async def held_until(release: trio.Event) -> None:
    """Wait for ``release`` whatever cancels us (a slow unwinding), but at most GUARD seconds."""
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + GUARD
        await release.wait()


class SlowToUnwind:
    """A check that waits on ``gate``; cancelled, it unwinds only once ``release`` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = trio.Event()
        self.unwinding = trio.Event()
        self.release = trio.Event()
        self.gate = trio.Event()

    async def __call__(self) -> bool:
        self.calls += 1
        if self.calls > 1:
            return True  # a fresh run answers at once
        self.entered.set()
        try:
            await self.gate.wait()
        except trio.Cancelled:
            self.unwinding.set()
            await held_until(self.release)
            raise
        return True


async def test_a_caller_arriving_while_a_deserted_run_unwinds_starts_a_fresh_run() -> None:
    flights: SingleFlight[str, str] = SingleFlight("test")
    unwinding, release = trio.Event(), trio.Event()

    async def first() -> str:
        try:
            await trio.sleep_forever()
        finally:
            unwinding.set()
            await held_until(release)
        raise AssertionError("unreachable")

    async def second() -> str:
        return "fresh"

    with trio.fail_after(GUARD * 2):
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as callers:
                callers.start_soon(functools.partial(flights.run, "k", first, nursery=nursery))
                await trio.testing.wait_all_tasks_blocked()
                callers.cancel_scope.cancel()  # the only caller leaves: the run is cancelled
            await unwinding.wait()  # ... and is still unwinding
            assert flights.statistics().runs_in_flight == 1
            assert await flights.run("k", second, nursery=nursery) == "fresh"
            stats = flights.statistics()
            assert (stats.runs_started, stats.callers_joined) == (2, 0)
            release.set()
        await flights.wait_idle()


async def test_a_request_arriving_while_a_deserted_check_unwinds_gets_a_fresh_answer() -> None:
    check = SlowToUnwind()
    # No finished runs kept for anonymous callers: a deserted run is cancelled.
    app, _ = make_app(
        {"gpt-4": [adapter("openai", check)]},
        checks={"adapter_timeout": 60},
        server={"anonymous_min_interval": 0},
    )
    hang_up = trio.Event()
    answers: list[tuple[int, dict[str, Any]]] = []
    async with serving(app) as client:
        state = app.extensions[EXTENSION_KEY]
        with trio.fail_after(GUARD * 2):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    request_then_disconnect, app, "/v1/health/", "timeout=60", check.entered, hang_up
                )
                await check.entered.wait()
                hang_up.set()  # the run's only caller hangs up ...
            await check.unwinding.wait()  # ... and its run is being cancelled
            answers.append(await get_json(client, "/v1/health/?timeout=60"))
            check.release.set()
            await state.wait_idle()
    [(status, body)] = answers
    assert status == 200, body
    assert body["status"] == "healthy"
    assert check.calls == 2

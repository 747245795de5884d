"""SingleFlight details a mutation-testing pass (issue 13) found untested.

A finished run is forgotten (nothing outlives its callers), a run that is
still unwinding never takes its successor's place with it, a caller with a
deadline gets the value when the run beats it, and errors name the flight.
Module-level only: every wait is on an event, never on time.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import trio
import trio.testing

from service.api.singleflight import FlightCancelled, FlightFailed, SingleFlight
from tests.support.served import GUARD


class Answer:
    """A run's value that a weak reference can watch."""


async def test_a_finished_run_keeps_no_reference_to_its_value() -> None:
    flights: SingleFlight[str, Answer] = SingleFlight("test")

    async def work() -> Answer:
        return Answer()

    async with trio.open_nursery() as nursery:
        answer = weakref.ref(await flights.run("k", work, nursery=nursery))
    gc.collect()
    assert answer() is None


async def test_a_cancelled_run_unwinding_late_leaves_its_successor_joinable() -> None:
    flights: SingleFlight[str, int] = SingleFlight("test")
    unwinding, finish_unwinding, gate = trio.Event(), trio.Event(), trio.Event()

    async def slow_to_unwind() -> int:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                unwinding.set()
                await finish_unwinding.wait()
        raise AssertionError("unreachable")

    async def fresh() -> int:
        await gate.wait()
        return 7

    values: list[int] = []

    async def caller() -> None:
        values.append(await flights.run("k", fresh, nursery=nursery))

    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as first_caller:
            first_caller.cancel()  # its only caller leaves at once: the run is cancelled
            await flights.run("k", slow_to_unwind, nursery=nursery)
        with trio.fail_after(GUARD):
            await unwinding.wait()
        nursery.start_soon(caller)  # a new run, while the old one unwinds
        await trio.testing.wait_all_tasks_blocked()
        finish_unwinding.set()  # the old run ends after its successor started
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(caller)  # joins the successor, starts no third run
        await trio.testing.wait_all_tasks_blocked()
        stats = flights.statistics()
        assert (stats.runs_started, stats.callers_joined) == (2, 1)
        gate.set()
    assert values == [7, 7]


async def test_a_caller_with_a_deadline_gets_the_value_when_the_run_beats_it() -> None:
    flights: SingleFlight[str, str] = SingleFlight("test")

    async def work() -> str:
        return "whole"

    async with trio.open_nursery() as nursery:
        value = await flights.run(
            "k", work, nursery=nursery, deadline=trio.current_time() + GUARD,
            at_deadline=lambda started: "partial",
        )
    assert value == "whole"


async def test_errors_and_repr_name_the_flight() -> None:
    assert repr(SingleFlight()) == "SingleFlight('single-flight', runs_in_flight=0, callers_waiting=0)"
    flights: SingleFlight[str, int] = SingleFlight("health")

    async def fails() -> int:
        raise ValueError("upstream exploded")

    async with trio.open_nursery() as nursery:
        with pytest.raises(FlightFailed, match=r"^the shared health run failed$"):
            await flights.run("k", fails, nursery=nursery)

        async def cancelled_by_the_owner() -> int:
            flights.cancel_all()
            await trio.sleep_forever()
            raise AssertionError("unreachable")

        with pytest.raises(FlightCancelled, match=r"^the shared health run was cancelled$"):
            await flights.run("k", cancelled_by_the_owner, nursery=nursery)

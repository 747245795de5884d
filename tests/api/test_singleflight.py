"""Single-flight: identical concurrent requests share one run.

Every probe may be a billed call, so a burst of identical requests causes one
run, not one per caller; a caller hanging up leaves the run to the others,
and the last one leaving cancels it. The module itself first, then the
routes with gated in-memory adapters, then the simulator over the wire.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest
import trio
import trio.testing

from service.api.app import EXTENSION_KEY
from service.api.singleflight import FlightCancelled, FlightFailed, SingleFlight
from tests.support.app import get_json, make_app, request_then_disconnect, serving
from tests.support.fakes import Probe, adapter, hang
from tests.support.served import GUARD, PROVIDERS, running_service

# -- single-flight, the module ----------------------------------------------------------------


async def test_single_flight_shares_one_run_per_key_and_counts_it() -> None:
    flights: SingleFlight[str, int] = SingleFlight("test")
    gate = trio.Event()
    calls: list[str] = []
    results: list[int] = []

    async def work(key: str) -> int:
        calls.append(key)
        await gate.wait()
        return len(calls)

    async with trio.open_nursery() as nursery:

        async def caller(key: str) -> None:
            results.append(await flights.run(key, lambda: work(key), nursery=nursery))

        async with trio.open_nursery() as callers:
            for key in ["a", "a", "b", "a"]:
                callers.start_soon(caller, key)
            await trio.testing.wait_all_tasks_blocked()
            stats = flights.statistics()
            assert (stats.runs_in_flight, stats.callers_waiting, stats.runs_started, stats.callers_joined) == (2, 4, 2, 2)
            gate.set()
    assert sorted(calls) == ["a", "b"]
    assert sorted(results) == [2, 2, 2, 2]
    assert flights.statistics().runs_in_flight == 0


async def test_single_flight_errors_reach_every_caller_and_spare_the_nursery() -> None:
    flights: SingleFlight[str, int] = SingleFlight("test")
    gate = trio.Event()

    async def work() -> int:
        await gate.wait()
        raise ValueError("upstream exploded")

    errors: list[BaseException] = []
    async with trio.open_nursery() as nursery:

        async def caller() -> None:
            try:
                await flights.run("k", work, nursery=nursery)
            except FlightFailed as exc:
                errors.append(exc)

        nursery.start_soon(caller)
        nursery.start_soon(caller)
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
    assert len(errors) == 2
    assert all(isinstance(e.__cause__, ValueError) for e in errors)


async def test_single_flight_last_caller_leaving_cancels_and_cancel_all_unblocks_callers() -> None:
    flights: SingleFlight[str, int] = SingleFlight("test")
    cancelled = trio.Event()

    async def work() -> int:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    async with trio.open_nursery() as nursery:
        with trio.move_on_after(0) as leave:  # a caller that is gone at once
            leave.cancel()
            await flights.run("k", work, nursery=nursery)
        with trio.fail_after(GUARD):
            await cancelled.wait()
            await flights.wait_idle()

        # A caller still waiting when the owner cancels everything gets FlightCancelled.
        outcome: list[str] = []

        async def caller() -> None:
            try:
                await flights.run("k", hang, nursery=nursery)
            except FlightCancelled:
                outcome.append("cancelled")

        nursery.start_soon(caller)
        await trio.testing.wait_all_tasks_blocked()
        flights.cancel_all()
    assert outcome == ["cancelled"]


# -- single-flight, the routes ------------------------------------------------------------------


async def test_a_hundred_concurrent_health_requests_probe_each_adapter_once() -> None:
    gate = trio.Event()
    probes = {name: Probe(gate=gate) for name in ["openai", "azure", "ollama"]}
    app, _ = make_app(
        {"gpt-4": [adapter("openai", probes["openai"]), adapter("azure", probes["azure"])],
         "llama3": [adapter("ollama", probes["ollama"])]}
    )
    answers: list[tuple[int, dict[str, Any]]] = []
    paths = ["/v1/health/", "/v1/health/models", "/v1/health/?details=false"]

    async with serving(app) as client:
        state = app.extensions[EXTENSION_KEY]
        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(lambda i=i: _append(answers, get_json(client, paths[i % 3])))
            await trio.testing.wait_all_tasks_blocked()
            stats = state.health_runs.statistics()
            assert (stats.runs_started, stats.callers_waiting) == (1, 100)
            gate.set()
    assert [p.calls for p in probes.values()] == [1, 1, 1]
    assert len(answers) == 100
    assert all(status == 200 for status, _ in answers)
    bodies = [body for _, body in answers if "details" in body and isinstance(body["models"], dict)]
    assert all(body["timestamp"] == bodies[0]["timestamp"] for body in bodies)  # one run


async def _append(answers: list[Any], call: Awaitable[Any]) -> None:
    answers.append(await call)


@pytest.mark.parametrize(
    ("first", "second", "runs"),
    [
        # A run is shared per selection whatever the caller's budget (issue 13):
        # each caller waits on it up to its own deadline.
        ("/v1/health/?timeout=5", "/v1/health/?timeout=6", 1),
        ("/v1/health/", "/v1/health/?use_concurrent=false", 2),
        ("/v1/health/models/gpt-4", "/v1/health/models/llama3", 2),
        ("/v1/health/models/gpt-4", "/v1/health/", 2),
    ],
    ids=["budget-shares", "strategy", "selection", "route"],
)
async def test_requests_that_differ_in_selection_or_strategy_do_not_share_but_budgets_do(
    first: str, second: str, runs: int
) -> None:
    gate = trio.Event()
    openai, ollama = Probe(gate=gate), Probe(gate=gate)
    app, _ = make_app({"gpt-4": [adapter("openai", openai)], "llama3": [adapter("ollama", ollama)]})
    async with serving(app) as client, trio.open_nursery() as nursery:
        nursery.start_soon(get_json, client, first)
        nursery.start_soon(get_json, client, second)
        await trio.testing.wait_all_tasks_blocked()
        state = app.extensions[EXTENSION_KEY]
        started = state.health_runs.statistics().runs_started + state.model_runs.statistics().runs_started
        assert started == runs
        gate.set()


@pytest.mark.parametrize("path", ["/v1/health/", "/v1/health/models", "/v1/health/models/gpt-4"])
async def test_a_caller_hanging_up_leaves_the_shared_check_to_the_others(path: str) -> None:
    gate = trio.Event()
    probe = Probe(gate=gate)
    app, _ = make_app({"gpt-4": [adapter("openai", probe)]}, checks={"adapter_timeout": 60})
    hang_up = trio.Event()
    answers: list[tuple[int, dict[str, Any]]] = []
    async with serving(app) as client, trio.open_nursery() as nursery:
        nursery.start_soon(request_then_disconnect, app, path, "timeout=60", probe.entered, hang_up)
        await probe.entered.wait()
        nursery.start_soon(_append, answers, get_json(client, f"{path}?timeout=60"))
        await trio.testing.wait_all_tasks_blocked()
        hang_up.set()
        await trio.testing.wait_all_tasks_blocked()
        assert not probe.cancelled.is_set()
        gate.set()
    assert probe.calls == 1
    assert answers and answers[0][0] == 200


@pytest.mark.parametrize("path", ["/v1/health/", "/v1/health/models/gpt-4"])
async def test_the_shared_check_is_cancelled_when_its_last_caller_hangs_up(path: str) -> None:
    probe = Probe(gate=trio.Event())  # never opened
    # No finished runs kept for anonymous callers: nobody else wants the run.
    app, _ = make_app(
        {"gpt-4": [adapter("openai", probe)]},
        checks={"adapter_timeout": 60},
        server={"anonymous_min_interval": 0},
    )
    hang_up = trio.Event()
    async with serving(app):
        state = app.extensions[EXTENSION_KEY]
        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(
                        request_then_disconnect, app, path, "timeout=60", probe.entered, hang_up
                    )
                await probe.entered.wait()
                await trio.testing.wait_all_tasks_blocked()
                hang_up.set()
            await probe.cancelled.wait()
            await state.wait_idle()
    assert probe.calls == 1


async def test_a_hundred_concurrent_requests_over_the_wire_probe_each_upstream_once() -> None:
    # "openai" hangs, so the run stays in flight until every client has joined it
    # (and, with no finished runs kept for anonymous callers, goes when they do).
    async with running_service(
        checks={"adapter_timeout": 60, "model_timeout": 60},
        server={"anonymous_min_interval": 0},
    ) as service:
        sim = service.sim
        sim.set_behavior("openai", mode="hang")
        state = service.app.extensions[EXTENSION_KEY]
        async with trio.open_nursery() as clients:
            for _ in range(100):
                clients.start_soon(service.client.get, "/v1/health/?timeout=60")
            with trio.fail_after(GUARD * 2):
                while state.health_runs.statistics().callers_waiting < 100:
                    await trio.testing.wait_all_tasks_blocked(cushion=0.01)
            assert state.health_runs.statistics().runs_started == 1
            assert {name: sim.stats(name).requests for name in PROVIDERS} == dict.fromkeys(PROVIDERS, 1)
            clients.cancel_scope.cancel()  # all hang up: the run goes with them
        with trio.fail_after(GUARD):
            await sim.wait_idle()
            await state.wait_idle()
        assert sim.stats("openai").disconnected == 1

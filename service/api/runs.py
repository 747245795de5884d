"""Where a check route's report comes from: the live state, or one run shared per selection.

Runs live in the app's lifetime nursery, not in a request: a caller that
hangs up leaves the others' run alone, and the last one leaving cancels it
— unless an anonymous caller started or joined it while their finished runs
are kept (see below): then it runs to its end, so a client that connects,
asks and hangs up in a loop costs one run per interval, not one per request.
Without that nursery (the app served without its lifespan) a route runs in
its request and shares nothing.

One run per selection, whatever the callers' ``timeout``: a shared run works
to the largest budget any request may ask for (``[server] max_timeout``;
each adapter still has its own timeout and each model its budget), and every
caller waits on it up to *its own* deadline. A caller whose deadline comes
first gets what the run has found by then: adapters without a verdict are
reported the way the checker reports unfinished ones (``timeout`` with
failure ``deadline``, or ``not_started`` for a sequential run's later turns),
while the run goes on for the others — and to its end even if that caller was
the last, so its verdicts are not thrown away. Only callers hanging up (as
above) or a shutdown cancel a run.

A finished run's report then keeps answering *anonymous* callers of the same
selection for ``[server] anonymous_min_interval`` seconds (callers without
the token while auth is on; everyone while it is off), its results marked
``cached`` with their age: whatever they send, anonymous callers cost at most
one run per selection per interval. Only finished runs are kept: one caller's
short deadline never becomes another caller's answer.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

import trio

from adapters.base import Adapter, FailureKind

from ..engine.checker import HealthChecker, ResultCallback
from ..engine.manager import AdapterManager
from ..engine.report import HealthReport, ModelReport, ProbeResult, ProbeStatus
from ..live.state import HealthState, stale_results
from .errors import not_ready
from .params import CheckParams, Selection, plan_for
from .singleflight import FlightCancelled, SingleFlight
from .state import ServiceState
from .views import performance_body

__all__ = ["SharedRun", "measure", "ready_manager", "run_selection", "shared"]

_T = TypeVar("_T")


def ready_manager(state: ServiceState) -> AdapterManager:
    """The manager, once its HTTP clients are open (else 503)."""
    if not state.manager.is_open:
        raise not_ready("the service is starting or shutting down; retry shortly")
    return state.manager


async def shared(
    state: ServiceState,
    flights: SingleFlight[Hashable, _T],
    key: Hashable,
    work: Callable[[], Awaitable[_T]],
    *,
    deadline: float = math.inf,
    at_deadline: Callable[[Callable[[], Awaitable[_T]]], _T] | None = None,
    finish_if_deserted: bool = False,
) -> _T:
    """``await work()``, shared with identical requests in flight when serving.

    With ``at_deadline``, see :meth:`SingleFlight.run`: past ``deadline`` the
    caller gets ``at_deadline(work of the run's starter)``; with
    ``finish_if_deserted``, the run outlives this caller hanging up.
    """
    if state.nursery is None:
        return await work()  # no lifespan: nothing to share with
    try:
        return await flights.run(
            key,
            work,
            nursery=state.nursery,
            deadline=deadline,
            at_deadline=at_deadline,
            finish_if_deserted=finish_if_deserted,
        )
    except FlightCancelled:
        raise not_ready("the service is shutting down") from None


class SharedRun:
    """One check run over a plan, and what it has found so far (for callers that cannot wait)."""

    def __init__(
        self,
        checker: HealthChecker,
        plan: Mapping[str, Sequence[Adapter]],
        *,
        concurrent: bool,
        timeout: float,
        model_timeout: float | None = None,
        forward: ResultCallback | None = None,
        on_done: Callable[[HealthReport], None] | None = None,
    ) -> None:
        self.checker = checker
        self.plan = plan
        self.concurrent = concurrent
        self.timeout = timeout
        self.model_timeout = model_timeout
        self.forward = forward
        self.on_done = on_done
        self.results: dict[tuple[str, str], ProbeResult] = {}
        self.started: float | None = None  # Trio clock
        self.timestamp = time.time()
        self._turn_started = 0.0  # Trio clock: when the latest verdict came in

    def __repr__(self) -> str:
        return f"SharedRun(adapters={sum(map(len, self.plan.values()))}, done={len(self.results)})"

    async def __call__(self) -> HealthReport:
        self.started = self._turn_started = trio.current_time()
        self.timestamp = time.time()
        if self.model_timeout is None:  # the v1 entry point, as embedders know it
            report = await self.checker.check_all_models_with_timeout(
                list(self.plan),
                self.plan,
                timeout=self.timeout,
                use_concurrent=self.concurrent,
                on_result=self._record,
            )
        else:
            report = await self.checker.run(
                self.plan,
                timeout=self.timeout,
                concurrent=self.concurrent,
                model_timeout=self.model_timeout,
                on_result=self._record,
            )
        if self.on_done is not None:
            self.on_done(report)
        return report

    def _record(self, result: ProbeResult) -> None:
        self.results[(result.model, result.provider)] = result  # a re-check replaces the first
        self._turn_started = trio.current_time()
        if self.forward is not None:
            self.forward(result)

    def so_far(self, timeout: float) -> HealthReport:
        """The report of a caller whose ``timeout`` ran out before the run ended.

        Every verdict in so far; the rest as the checker reports adapters
        left without one at a deadline.
        """
        now = trio.current_time()
        started = now if self.started is None else self.started
        probing = self.started is not None  # a sequential run probes one adapter at a time
        models: dict[str, ModelReport] = {}
        for model, adapters in self.plan.items():
            results: dict[str, ProbeResult] = {}
            for adapter in adapters:
                result = self.results.get((model, adapter.provider))
                if result is None:
                    since = started if self.concurrent else self._turn_started
                    result = _unfinished(model, adapter, now - since if probing else None)
                    probing = probing and self.concurrent
                results[adapter.provider] = result
            models[model] = ModelReport(model, results)
        rechecked = sum(r.fallback for r in self.results.values())
        return HealthReport(
            models=models,
            timestamp=self.timestamp,
            execution_time=now - started,
            concurrent=self.concurrent,
            timeout=timeout,
            fallback=rechecked > 0,
            fallback_reason=(
                f"{rechecked} adapter(s) re-checked one by one so far" if rechecked else None
            ),
        )


def _unfinished(model: str, adapter: Adapter, waited: float | None) -> ProbeResult:
    """An adapter without a verdict at a caller's deadline: probed for ``waited`` s, or not yet."""
    if waited is None:
        return ProbeResult.not_started(model, adapter.provider, adapter.adapter_name)
    return ProbeResult(
        model=model,
        provider=adapter.provider,
        adapter=adapter.adapter_name,
        status=ProbeStatus.TIMEOUT,
        latency_ms=max(waited, 0.0) * 1000.0,
        checked_at=time.time(),
        error=f"no answer within {max(waited, 0.0):.2f} s (the request's deadline)",
        failure=FailureKind.DEADLINE,
    )


def _from_state(
    state: ServiceState,
    health: HealthState,
    plan: Mapping[str, Sequence[Adapter]],
    params: CheckParams,
) -> HealthReport | None:
    """The report from the live state, refreshing stale results behind it (or None: go live)."""
    served = health.report(
        plan, timeout=params.timeout, concurrent=params.use_concurrent, allow_stale=True
    )
    if served is not None and state.background is not None:
        stale = stale_results(served)
        if stale:
            state.background.refresh(stale)
    return served


async def run_selection(
    state: ServiceState,
    params: CheckParams,
    selection: Selection,
    *,
    model: str | None = None,
    anonymous: bool = False,
) -> HealthReport:
    """The report over ``selection``: from the live state if fresh enough, else one shared run.

    ``model``: the one-model route's run, over that model alone; ``timeout`` is
    then the model's whole budget, and its runs are shared among themselves.
    ``anonymous``: the caller may be answered by a run that finished less
    than ``[server] anonymous_min_interval`` seconds ago (see the module doc).
    """
    deadline = trio.current_time() + params.timeout
    manager = ready_manager(state)
    plan = plan_for(manager, selection)
    health = state.health
    if health is not None and not params.fresh:
        served = _from_state(state, health, plan, params)
        if served is not None:
            return served
    checker = manager.health_checker
    on_result = None if health is None else health.record
    # The one-model route gives the model its whole timeout as its budget.
    route: tuple[str, ...] = ("all",) if model is None else ("model", model)
    key = (*route, selection, params.use_concurrent)
    report: HealthReport | None = state.recent_runs.get(key) if anonymous else None
    if report is None:
        if state.nursery is None:  # no lifespan: the caller's own run, to its own deadline
            run = SharedRun(
                checker,
                plan,
                concurrent=params.use_concurrent,
                timeout=params.timeout,
                model_timeout=None if model is None else params.timeout,
                forward=on_result,
            )
            report = await run()
        else:
            budget = state.config.server.max_timeout  # the longest any caller may wait
            run = SharedRun(
                checker,
                plan,
                concurrent=params.use_concurrent,
                timeout=budget,
                model_timeout=None if model is None else budget,
                forward=on_result,
                on_done=functools.partial(state.recent_runs.put, key),
            )
            flights = state.health_runs if model is None else state.model_runs
            report = await shared(
                state,
                flights,
                key,
                run,
                deadline=deadline,
                at_deadline=functools.partial(_so_far, timeout=params.timeout),
                # Its report will answer anonymous callers: an anonymous
                # client hanging up in a loop costs one run, not one each.
                finish_if_deserted=anonymous and state.recent_runs.interval > 0,
            )
    report = dataclasses.replace(report, timeout=params.timeout)
    if health is not None:
        report = dataclasses.replace(report, extra={**report.extra, "source": "live"})
    return report


def _so_far(work: Callable[[], Awaitable[HealthReport]], *, timeout: float) -> HealthReport:
    """A caller's report at its deadline, from the run it waited on (its starter's ``work``)."""
    if not isinstance(work, SharedRun):
        raise TypeError(f"a shared check run is a SharedRun, got {type(work).__name__}")
    return work.so_far(timeout)


async def measure(manager: AdapterManager, budget: float) -> dict[str, Any]:
    """Both strategies over every adapter, fresh probes only: the performance body."""
    checker = manager.health_checker
    timestamp = time.time()
    names = manager.get_available_models()
    concurrent = await checker.check_all_models_with_timeout(
        names, manager.model_adapters, budget, use_concurrent=True, use_cache=False
    )
    sequential = await checker.check_all_models_sequential(
        names, manager.model_adapters, budget, use_cache=False
    )
    limits = {"adaptive": checker.slots.adaptive, "current": checker.slots.statistics()}
    return performance_body(
        concurrent, sequential, timestamp=timestamp, timeout=budget, limits=limits
    )

"""Where a check route's report comes from: the live state, or one run shared by identical requests.

Runs live in the app's lifetime nursery, not in a request: a caller that
hangs up leaves the others' run alone, and the last one leaving cancels it.
Without that nursery (the app served without its lifespan) a route runs in
its request and shares nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

from adapters.base import Adapter

from ..engine.manager import AdapterManager
from ..engine.report import HealthReport
from ..live.state import HealthState, stale_results
from .errors import not_ready
from .params import CheckParams, Selection, plan_for
from .singleflight import FlightCancelled, SingleFlight
from .state import ServiceState
from .views import performance_body

__all__ = ["measure", "ready_manager", "run_selection", "shared"]

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
) -> _T:
    """``await work()``, shared with identical requests in flight when serving."""
    if state.nursery is None:
        return await work()  # no lifespan: nothing to share with
    try:
        return await flights.run(key, work, nursery=state.nursery)
    except FlightCancelled:
        raise not_ready("the service is shutting down") from None


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
    state: ServiceState, params: CheckParams, selection: Selection, *, model: str | None = None
) -> HealthReport:
    """The report over ``selection``: from the live state if fresh enough, else one shared run.

    ``model``: the one-model route's run, over that model alone; ``timeout`` is
    then the model's whole budget, and its runs are shared among themselves.
    """
    manager = ready_manager(state)
    plan = plan_for(manager, selection)
    health = state.health
    if health is not None and not params.fresh:
        served = _from_state(state, health, plan, params)
        if served is not None:
            return served
    checker = manager.health_checker
    on_result = None if health is None else health.record
    work: Callable[[], Awaitable[HealthReport]]
    if model is None:
        flights = state.health_runs
        work = functools.partial(
            checker.check_all_models_with_timeout,
            model_names=list(plan),
            model_adapters=plan,
            timeout=params.timeout,
            use_concurrent=params.use_concurrent,
            on_result=on_result,
        )
    else:
        flights = state.model_runs
        # check_model_health_with_timeout's run, kept whole: the model's budget is the run's.
        work = functools.partial(
            checker.run,
            plan,
            timeout=params.timeout,
            concurrent=params.use_concurrent,
            model_timeout=params.timeout,
            on_result=on_result,
        )
    key = ("all" if model is None else model, selection, params.timeout, params.use_concurrent)
    report = await shared(state, flights, key, work)
    if health is not None:
        report = dataclasses.replace(report, extra={**report.extra, "source": "live"})
    return report


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

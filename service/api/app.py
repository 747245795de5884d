"""The HTTP service: the seed's health API on a Quart-Trio app, served by hypercorn.

Build the app with :func:`create_app` and run it with :func:`serve` (or mount it
in any ASGI server running Trio). The app owns its :class:`AdapterManager` for
its whole lifetime: the HTTP clients open when serving starts and close when it
stops, and every request shares them.

Routes (every body is JSON, errors included; ``HEAD`` works wherever ``GET`` does):

``GET /v1/health/`` (also ``/v1/health``) ``?timeout=&use_concurrent=&details=``
    Every model. Body: the seed's shape exactly (``status, timestamp, models,
    healthy_models, total_models, execution_time, concurrent, timeout``), then
    ``fallback`` (and ``fallback_reason`` when it happened) and, unless
    ``details=false`` (or auth withholds them), ``details``: model ->
    provider -> ``{status, adapter, latency_ms, http_status, error, failure,
    checked_at, fallback}``, plus ``retry_after``, ``queued_ms`` and
    ``cached``/``age_s`` when they apply.

``GET /v1/health/models`` (also with a trailing slash), same parameters
    Every model, as a list of per-model objects (same run, same status code)::

        {"status", "timestamp", "models": [{"model", "status", "providers",
          "healthy_providers", "total_providers", "details"?}, ...],
         "healthy_models", "total_models", "execution_time", "concurrent",
         "timeout", "fallback", "fallback_reason"?}

``GET /v1/health/models/<name>``, same parameters, ``timeout`` defaults to ``model_timeout``
    One model: ``{"model", "status", "providers", "healthy_providers",
    "total_providers", "timestamp", "execution_time", "concurrent", "timeout",
    "fallback", "fallback_reason"?, "details"?}``. The name is everything after
    ``/models/``, percent-decoded, so ``llama3:latest``, ``gpt-4.1`` and
    ``org/model`` (sent as ``org%2Fmodel`` or plainly) all work. Unknown name:
    404 ``{"error": "unknown_model", "message", "available": [...]}``.

Filters (every check route above): ``?tags=a,b`` keeps the adapters whose
effective tags (model's plus provider's, see the config) include *all* of
them; ``?exclude=c,d`` drops those having *any* of them. Only the selected
adapters are probed and models left without any are dropped; when nothing
is left: 404 ``{"error": "empty_selection", "message", "selection"}``.
The selection → adapters mapping is :meth:`AdapterManager.select`.

``POST /v1/health/batch`` with a JSON object (``Content-Type:
application/json``, at most 64 KB), every field optional: ``models``,
``providers`` (non-empty lists of names), ``tags``, ``exclude`` (non-empty
lists of tags), ``timeout``, ``use_concurrent``, ``details``. Answers the
``/v1/health/`` report for that subset, with its status codes, auth and
sharing rules. Unknown names: 404 ``unknown_model`` / ``unknown_provider``
with ``available``; a bad body: 400 ``{"error": "invalid_body", "field",
"message", "accepted"}``; another content type: 415.

``GET /v1/health/performance?timeout=``
    Runs the concurrent strategy, then the sequential one, over every adapter,
    each bounded by ``timeout``. Body: the seed's ``timestamp,
    performance_metrics{concurrent_time, sequential_time, speedup,
    improvement_percent, total_models, total_adapters},
    concurrent_result_count, sequential_result_count``, then ``timeout``,
    ``concurrent_status``, ``sequential_status`` and ``agreement: {"agreed",
    "mismatches": [{"model", "provider", "concurrent", "sequential"}]}``.
    A result count counts adapters that reached a verdict (everything but
    ``not_started``); a verdict is a probe status, or ``not_started``.
    ``speedup`` (2 decimals) and ``improvement_percent`` (1 decimal) are
    ``null`` when a run took no measurable time. Always 200 once measured: the
    verdicts are in the body, this endpoint is a measurement, not a probe.

    Single-flight: at most one measurement is in flight. A caller arriving
    while one runs joins it and gets its result, *whatever timeout it asked
    for* (the body's ``timeout`` says which budget was used), so a burst of
    callers cannot multiply the upstream load. It always probes (never
    serves ``min_interval`` results: a measurement must measure). With auth
    on, it needs the token (401 otherwise).

``GET /v1/health/history?model=&provider=``
    With background checks on: ``{"adapters": [{"model", "provider", "status",
    "history": [{"checked_at", "status", "latency_ms", "failure"}, ...]}]}``,
    the last 50 results per selected adapter (``status`` is the reported one,
    null before the first result). 404 ``unknown_model`` / ``unknown_provider``
    / ``empty_selection`` for filters that match nothing; 404
    ``background_checks_off`` when background checks are off. With auth on,
    it needs the token.

Background checks (``[checks] interval`` > 0, :mod:`service.live.background`):
the check routes answer from the live state (:mod:`service.live.state`) when
every selected adapter's latest result is younger than its ``max_age``,
marked ``"source": "background"`` (details carry ``cached``/``age_s``), and
run live otherwise, marked ``"source": "live"``; ``?fresh=true`` (batch:
``"fresh": true``) always runs live. Live results feed the state.

``GET /livez``
    ``{"status": "ok"}``; no upstream calls, always fast.

``GET /readyz``
    200 ``{"status": "ready", "models": n, "adapters": n}`` when the config is
    loaded and the HTTP clients are open, else 503 ``{"status": "not_ready",
    "reason"}``. It never probes upstream: a Kubernetes readiness probe runs
    every few seconds on every replica, and making each of them call every
    provider is the cost users of other routers complain about most.
    "Ready only with at least one healthy model" belongs with background
    checks (a cached last result), a later feature.

Sharing runs (single-flight, :mod:`service.api.singleflight`): concurrent
requests for the same selection (every model — ``/v1/health/``,
``/v1/health/models`` and a batch of ``{}`` share — or one model by name,
with the same filters, models and providers) with the same
``timeout`` and ``use_concurrent`` share one run in flight; ``details`` only
shapes each answer. So 100 concurrent ``GET /v1/health/`` probe each adapter
once. Runs live in the app's lifetime nursery, not in any request: a caller
that disconnects leaves the others' run alone; when the last caller leaves,
the run is cancelled (its probes with it); when the app stops, every run is
cancelled before the HTTP clients close. (Served without the app's lifespan,
e.g. by an ASGI server that skips it, check routes run in the request and
share nothing; ``/performance`` answers 503.)

Recent results and caps (``[checks] min_interval``, ``max_concurrent_probes``,
a provider's ``min_interval`` / ``max_concurrent``) live in the checker: see
:mod:`service.engine.checker`. A result served from ``min_interval`` carries
``"cached": true`` and ``"age_s"`` in its details; with a cap configured,
details carry ``queued_ms``.

Auth (optional, :mod:`service.api.auth`): with ``[server] auth_token_env`` (or
``auth_token``) set, ``/performance`` needs ``Authorization: Bearer <token>``
(401 ``{"error": "unauthorized"}`` with ``WWW-Authenticate: Bearer``
otherwise); check routes answer without the token but leave out ``details``
and ``fallback_reason``; a *wrong* token is a 401 everywhere but ``/livez``
and ``/readyz``, which stay open.

Status codes: check routes answer 200 when healthy or degraded and 503 when
unhealthy; 400 for a bad parameter, 401 for missing or wrong credentials
(see auth), 404 for an unknown path or model, 405 for a wrong method (with
``Allow``), 503 while the service is not ready, and 500
``{"error": "internal_error", "message", "error_id"}`` for anything unexpected
(logged with the same id, keys redacted; no traceback or detail leaves the
process).

Query parameters (one parser, :func:`parse_check_params`, for every check route;
the performance route validates them all but only uses ``timeout``):
``tags`` and ``exclude`` are comma-separated tags (``[A-Za-z0-9_.:-]+``, at
most 32, spaces around commas allowed);
``timeout`` is a plain decimal number of seconds, finite, > 0 and <=
``[server] max_timeout``; ``use_concurrent`` and ``details`` take
true/false/1/0/yes/no in any case, surrounding whitespace allowed. An empty
value is a 400, and so is a parameter given twice (``timeout=1&timeout=60``
has no obvious meaning, and guessing one would hide the client's bug).
Unknown parameters are ignored. Defaults come from ``[checks]``.

Cancellation: a client that disconnects cancels its request's checks. Hypercorn
turns the closed connection into an ASGI ``http.disconnect``, and Quart-Trio
runs each request in a nursery next to a task that waits for that message and
then cancels the nursery, so the handler — and every probe the checker started
under it — gets ``trio.Cancelled`` and its upstream connections are closed
(the end-to-end tests observe it at the simulated upstream). The app narrows
that by one case (see ``_HTTPConnection``): once the response is being sent, a
disconnect cancels nothing, because hypercorn sends one at the end of every
response and Quart-Trio's cancel would interrupt the connection's close.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import logging
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import quote_from_bytes

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable
from quart import Quart, Request, Response, current_app, jsonify, request
from quart.asgi import ASGIHTTPConnection
from quart.json.provider import DefaultJSONProvider
from quart.typing import ResponseTypes
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from adapters.base import Adapter, FailureKind, redact

from ..config import Config
from ..engine.manager import AdapterManager, UnknownModelError
from ..engine.report import HealthReport, HealthStatus, ModelHealthReport, ProbeResult
from ..live.background import BackgroundChecker
from ..live.cluster import ClusterCoordinator
from ..live.state import HealthState, percentile, stale_results
from ..live.stream import EventHub
from ..live.webhook import WebhookNotifier
from .auth import Access, BearerAuth
from .healthjson import HEALTH_JSON, health_json, model_health_json, wants_health_json
from .healthjson import http_status as health_json_status
from .metrics import Metrics
from .openapi import openapi_spec
from .params import (
    BODY_ACCEPTED,
    MAX_BATCH_BYTES,
    ApiError,
    CheckParams,
    InvalidBody,
    InvalidParameter,
    Selection,
    parse_batch_body,
    parse_check_params,
    plan_for,
    show_value,
    single_param,
)
from .singleflight import FlightCancelled, SingleFlight

__all__ = [
    "EXTENSION_KEY",
    "ApiError",
    "CheckParams",
    "Selection",
    "create_app",
    "get_health_state",
    "get_manager",
    "parse_check_params",
    "serve",
]

logger = logging.getLogger("router_health.app")

#: Where the app keeps its state in ``app.extensions``.
EXTENSION_KEY: Final = "router_health"

_ENDPOINTS: Final = (
    "GET /v1/health/",
    "GET /v1/health/models",
    "GET /v1/health/models/<name>",
    "GET /v1/health/performance",
    "GET /v1/health/history",
    "POST /v1/health/batch",
    "GET /v1/health/stream",
    "GET /livez",
    "GET /readyz",
    "GET /metrics",
    "GET /openapi.json",
    "GET /docs",
    "GET / (the dashboard)",
)

# How long shutdown waits for cancelled shared runs to unwind.
_RUN_UNWIND_SECONDS: Final = 5.0

_T = TypeVar("_T")


# -- app state --------------------------------------------------------------------


@dataclass(eq=False)
class _ServiceState:
    app: QuartTrio
    config: Config
    manager: AdapterManager
    auth: BearerAuth
    # Whether serving opened the manager (and so must close it); a manager
    # that was already open belongs to whoever opened it.
    owns_manager: bool = False
    # The app's lifetime nursery while it serves (shared runs live there).
    nursery: trio.Nursery | None = None
    # Shared runs, keyed by what makes two requests identical.
    health_runs: SingleFlight[Hashable, HealthReport] = field(
        default_factory=lambda: SingleFlight("health check")
    )
    model_runs: SingleFlight[Hashable, ModelHealthReport] = field(
        default_factory=lambda: SingleFlight("model health check")
    )
    performance: SingleFlight[Hashable, dict[str, Any]] = field(
        default_factory=lambda: SingleFlight("performance measurement")
    )
    # With background checks on (some adapter's ``interval`` > 0): the live
    # state, and the checker feeding it while the app serves.
    health: HealthState | None = None
    background: BackgroundChecker | None = None
    webhook: WebhookNotifier | None = None  # with [webhook]: POSTs the state's transitions
    cluster: ClusterCoordinator | None = None  # with [cluster]: leases and shared results
    # Every result, transition and run, for GET /v1/health/stream.
    events: EventHub = field(default_factory=EventHub)
    metrics: Metrics | None = None  # GET /metrics; made with the app

    def flights(self) -> list[SingleFlight[Hashable, Any]]:
        return [self.health_runs, self.model_runs, self.performance]

    async def wait_idle(self) -> None:
        """Return once no shared run is in flight (cancelled ones unwound)."""
        for flight in self.flights():
            await flight.wait_idle()

    def secrets(self) -> list[Any]:
        """Every key this app knows, for redacting text that leaves the process."""
        keys = [getattr(a, "api_key", None) for _, a in self.manager.all_adapters()]
        hook = [] if self.config.webhook is None else self.config.webhook.secrets()
        return [*keys, self.config.server.auth_token, *hook]


def _state_of(app: Quart) -> _ServiceState:
    state = app.extensions.get(EXTENSION_KEY)
    if not isinstance(state, _ServiceState):
        raise RuntimeError("not a router-health app: build it with service.api.app.create_app()")
    return state


def _state() -> _ServiceState:
    return _state_of(current_app)


def get_health_state(app: Quart) -> HealthState | None:
    """The live :class:`HealthState` of an app with background checks on, else None."""
    return _state_of(app).health


def get_manager(app: Quart) -> AdapterManager:
    """The :class:`AdapterManager` an app made by :func:`create_app` uses."""
    return _state_of(app).manager


def _ready_manager(state: _ServiceState) -> AdapterManager:
    if not state.manager.is_open:
        raise ApiError(
            503,
            {
                "error": "not_ready",
                "message": "the service is starting or shutting down; retry shortly",
            },
        )
    return state.manager


# -- responses ----------------------------------------------------------------------


class _SeedOrderJSONProvider(DefaultJSONProvider):
    # Keep the seed's key order (status first) instead of sorting keys.
    sort_keys = False


def _json(body: Mapping[str, Any], status: int = 200) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def _status_code(status: HealthStatus) -> int:
    # Load balancers and Kubernetes read the code: degraded still serves.
    return 503 if status is HealthStatus.UNHEALTHY else 200


def _models_view(report: HealthReport, *, details: bool) -> dict[str, Any]:
    data = report.to_dict(details=False)
    data["models"] = [
        {"model": name, **model.to_dict(), **({"details": model.details()} if details else {})}
        for name, model in report.models.items()
    ]
    return data


def _verdict(result: ProbeResult) -> str:
    return "not_started" if result.failure is FailureKind.NOT_STARTED else result.status.value


def _agreement(concurrent: HealthReport, sequential: HealthReport) -> dict[str, Any]:
    mismatches: list[dict[str, str]] = []
    for name, model in concurrent.models.items():
        for provider, result in model.results.items():
            other = sequential.models[name].results[provider]
            if _verdict(result) != _verdict(other):
                mismatches.append(
                    {
                        "model": name,
                        "provider": provider,
                        "concurrent": _verdict(result),
                        "sequential": _verdict(other),
                    }
                )
    return {"agreed": not mismatches, "mismatches": mismatches}


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"total": 0.0, "p50": None, "p95": None, "max": None}
    return {
        "total": round(sum(values), 1),
        "p50": round(percentile(values, 50), 1),
        "p95": round(percentile(values, 95), 1),
        "max": round(max(values), 1),
    }


def _time_breakdown(report: HealthReport) -> dict[str, Any]:
    """Per probe sent: time queued for a slot vs time the provider took (ms)."""
    probed = [r for r in report.results() if r.sent]
    queued = [r.queued_ms or 0.0 for r in probed]
    took = [(r.latency_ms or 0.0) - q for r, q in zip(probed, queued, strict=True)]
    return {"probes": len(probed), "queue_wait_ms": _spread(queued), "execution_ms": _spread(took)}


def _performance_body(
    concurrent: HealthReport,
    sequential: HealthReport,
    *,
    timestamp: float,
    timeout: float,
    limits: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    c_time, s_time = concurrent.execution_time, sequential.execution_time

    def reached(report: HealthReport) -> int:
        return sum(_verdict(r) != "not_started" for r in report.results())

    return {
        "timestamp": round(timestamp, 3),
        "performance_metrics": {
            "concurrent_time": round(c_time, 3),
            "sequential_time": round(s_time, 3),
            "speedup": round(s_time / c_time, 2) if c_time > 0 else None,
            "improvement_percent": round((1 - c_time / s_time) * 100, 1) if s_time > 0 else None,
            "total_models": concurrent.total_models,
            "total_adapters": len(concurrent.results()),
        },
        "concurrent_result_count": reached(concurrent),
        "sequential_result_count": reached(sequential),
        "timeout": timeout,
        "concurrent_status": concurrent.status.value,
        "sequential_status": sequential.status.value,
        "agreement": _agreement(concurrent, sequential),
        "time_breakdown": {
            "concurrent": _time_breakdown(concurrent),
            "sequential": _time_breakdown(sequential),
        },
        "limits": dict(limits or {}),
    }


# -- routes ---------------------------------------------------------------------------


def _unauthorized(access: Access) -> ApiError:
    message = (
        "the bearer token is not valid"
        if access is Access.DENIED
        else "this endpoint needs a bearer token: send 'Authorization: Bearer <token>'"
    )
    return ApiError(
        401,
        {"error": "unauthorized", "message": message},
        {"WWW-Authenticate": BearerAuth.challenge(access)},
    )


def _access(state: _ServiceState) -> Access:
    """The request's access; a wrong credential is a 401 right away."""
    access = state.auth.check(request.headers.getlist("Authorization"))
    if access is Access.DENIED:
        raise _unauthorized(access)
    return access


def _shape(data: dict[str, Any], access: Access) -> dict[str, Any]:
    if access is not Access.GRANTED:
        data.pop("fallback_reason", None)  # internal detail, like ``details``
    cluster = _state().cluster
    if cluster is not None:
        # Say whether these results are shared or this instance's own (Redis down).
        status = cluster.status()
        data["cluster"] = status if access is Access.GRANTED else {"status": status["status"]}
    return data


async def _shared(
    state: _ServiceState,
    flights: SingleFlight[Hashable, _T],
    key: Hashable,
    work: Callable[[], Awaitable[_T]],
) -> _T:
    """``await work()``, shared with identical requests in flight when serving."""
    if state.nursery is None:
        return await work()  # no lifespan (see the module doc): nothing to share with
    try:
        return await flights.run(key, work, nursery=state.nursery)
    except FlightCancelled:
        raise ApiError(
            503, {"error": "not_ready", "message": "the service is shutting down"}
        ) from None


def _from_state(
    state: _ServiceState,
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


async def _run_selection(
    state: _ServiceState, params: CheckParams, selection: Selection
) -> HealthReport:
    """One shared run over ``selection`` (the ``/v1/health/`` report shape)."""
    manager = _ready_manager(state)
    plan = plan_for(manager, selection)
    health = state.health
    if health is not None and not params.fresh:
        served = _from_state(state, health, plan, params)
        if served is not None:
            return served
    work = functools.partial(
        manager.health_checker.check_all_models_with_timeout,
        model_names=list(plan),
        model_adapters=plan,
        timeout=params.timeout,
        use_concurrent=params.use_concurrent,
        on_result=None if health is None else health.record,
    )
    key = ("all", selection, params.timeout, params.use_concurrent)
    report = await _shared(state, state.health_runs, key, work)
    if health is not None:
        report = dataclasses.replace(report, extra={**report.extra, "source": "live"})
    return report


async def _check_all() -> tuple[HealthReport, CheckParams, Access]:
    state = _state()
    access = _access(state)
    params = parse_check_params(
        request.args, state.config, default_timeout=state.config.checks.timeout
    )
    report = await _run_selection(state, params, Selection.of(params))
    return report, params, access


_FORMAT_ACCEPTED: Final = "json or health+json (the IETF health check format)"


def _wants_health_json() -> bool:
    """``?format=`` or the Accept header asks for application/health+json (400 if unknown)."""
    fmt = single_param(request.args, "format", _FORMAT_ACCEPTED)
    try:
        return wants_health_json(request.headers.get("Accept"), fmt)
    except ValueError as exc:
        raise InvalidParameter("format", str(exc)[:300], _FORMAT_ACCEPTED) from None


def _health_json(body: Mapping[str, Any], status: int) -> Response:
    response = _json(body, status)
    response.mimetype = HEALTH_JSON
    return response


async def health_all() -> Response:
    as_health_json = _wants_health_json()  # before probing: a bad format costs nothing
    report, params, access = await _check_all()
    details = params.details and access is Access.GRANTED
    if as_health_json:
        return _health_json(health_json(report, details=details), health_json_status(report))
    return _json(_shape(report.to_dict(details=details), access), _status_code(report.status))


async def health_models() -> Response:
    report, params, access = await _check_all()
    details = params.details and access is Access.GRANTED
    return _json(
        _shape(_models_view(report, details=details), access), _status_code(report.status)
    )


async def health_model(name: str) -> Response:
    state = _state()
    access = _access(state)
    as_health_json = _wants_health_json()
    params = parse_check_params(
        request.args, state.config, default_timeout=state.config.checks.model_timeout
    )
    manager = _ready_manager(state)
    try:
        manager.get_model_adapters(name)
    except UnknownModelError as exc:
        raise ApiError(
            404,
            {
                "error": "unknown_model",
                "message": f"unknown model {show_value(name)}; 'available' lists the configured models",
                "available": exc.available,
            },
        ) from None
    selection = Selection.of(params, models=[name])
    plan = plan_for(manager, selection)
    details = params.details and access is Access.GRANTED
    health = state.health
    if health is not None and not params.fresh:
        served = _from_state(state, health, plan, params)
        if served is not None:
            one = ModelHealthReport(
                model=served.models[name],
                timestamp=served.timestamp,
                execution_time=served.execution_time,
                concurrent=served.concurrent,
                timeout=served.timeout,
            )
            if as_health_json:
                return _health_json(
                    model_health_json(one, details=details), health_json_status(one)
                )
            data = one.to_dict(details=details)
            data.update(served.extra)
            return _json(_shape(data, access), _status_code(served.status))
    checker = manager.health_checker
    work = functools.partial(
        checker.check_model_health_with_timeout,
        name,
        plan[name],
        params.timeout,
        use_concurrent=params.use_concurrent,
        on_result=None if health is None else health.record,
    )
    key = (name, selection, params.timeout, params.use_concurrent)
    report = await _shared(state, state.model_runs, key, work)
    if as_health_json:
        return _health_json(model_health_json(report, details=details), health_json_status(report))
    data = report.to_dict(details=details)
    if health is not None:
        data["source"] = "live"
    return _json(_shape(data, access), _status_code(report.status))


async def health_history() -> Response:
    state = _state()
    access = state.auth.check(request.headers.getlist("Authorization"))
    if access is not Access.GRANTED:
        raise _unauthorized(access)
    accepted = "a configured name, e.g. model=gpt-4"
    model = single_param(request.args, "model", accepted)
    provider = single_param(request.args, "provider", accepted)
    health = state.health
    if health is None:
        raise ApiError(
            404,
            {
                "error": "background_checks_off",
                "message": "history is kept by background checks; set [checks] interval > 0",
            },
        )
    selection = Selection(
        models=None if model is None else (model,),
        providers=None if provider is None else (provider,),
    )
    plan = plan_for(state.manager, selection)
    adapters: list[dict[str, Any]] = []
    for name, members in plan.items():
        for each in members:
            current = health.get(name, each.provider)
            adapters.append(
                {
                    "model": name,
                    "provider": each.provider,
                    "status": None if current is None else current.reported.value,
                    "history": [e.to_dict() for e in health.history(name, each.provider)],
                }
            )
    return _json({"adapters": adapters})


async def health_stream() -> Response:
    state = _state()
    access = state.auth.check(request.headers.getlist("Authorization"))
    if access is not Access.GRANTED:
        raise _unauthorized(access)  # results carry error details
    _ready_manager(state)
    if request.method == "HEAD":  # the headers only: no subscription, no endless body
        return Response(b"", mimetype="text/event-stream")
    hello = {"background": state.health is not None}

    async def body() -> AsyncIterator[bytes]:
        async with contextlib.aclosing(state.events.stream(hello)) as events:
            async for chunk in events:
                yield chunk
        _stream_ended()

    response = _StreamResponse(body(), mimetype="text/event-stream")
    response.headers["X-Accel-Buffering"] = "no"  # proxies: do not buffer the stream
    response.timeout = None  # a stream has no end to wait for
    return response


async def _forward_transitions(
    health: HealthState,
    events: EventHub,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Copy the state's transitions into the event hub until the state closes."""
    with health.subscribe(buffer=10_000) as transitions:
        task_status.started()
        async for transition in transitions:
            events.publish_transition(transition)


def _remove(listeners: list[Any], listener: Any) -> None:
    with contextlib.suppress(ValueError):
        listeners.remove(listener)


_BODY_READ_TIMEOUT = 10.0  # seconds for a whole batch body (at most 64 KB)


async def _read_body(limit: int) -> bytes:
    """The request body, refusing (400) past ``limit`` bytes without reading it all."""
    too_large = InvalidBody(
        "body", f"the body is larger than {limit // 1024} KB", BODY_ACCEPTED
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    data = bytearray()
    # A client that announces a body and never sends it must not hold a
    # handler (and a socket) for ever: the whole body gets a deadline.
    with trio.move_on_after(_BODY_READ_TIMEOUT) as scope:
        try:
            async for chunk in request.body:
                data += chunk
                if len(data) > limit:
                    raise too_large
        except RequestEntityTooLarge:
            raise too_large from None
    if scope.cancelled_caught:
        raise InvalidBody(
            "body", f"the body did not arrive within {_BODY_READ_TIMEOUT:g} s", BODY_ACCEPTED
        )
    return bytes(data)


async def health_batch() -> Response:
    state = _state()
    access = _access(state)
    if request.mimetype != "application/json":
        shown = show_value(request.content_type) if request.content_type else "none"
        raise ApiError(
            415,
            {
                "error": "unsupported_media_type",
                "message": f"the body must be JSON (Content-Type: application/json), got {shown}",
                "accepted": "application/json",
            },
        )
    params, models, providers = parse_batch_body(
        await _read_body(MAX_BATCH_BYTES), state.config
    )
    selection = Selection.of(params, models=models, providers=providers)
    as_health_json = _wants_health_json()
    report = await _run_selection(state, params, selection)
    details = params.details and access is Access.GRANTED
    if as_health_json:
        return _health_json(health_json(report, details=details), health_json_status(report))
    return _json(_shape(report.to_dict(details=details), access), _status_code(report.status))


async def _measure(manager: AdapterManager, budget: float) -> dict[str, Any]:
    """Both strategies over every adapter, fresh probes only."""
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
    return _performance_body(
        concurrent, sequential, timestamp=timestamp, timeout=budget, limits=limits
    )


async def health_performance() -> Response:
    state = _state()
    access = state.auth.check(request.headers.getlist("Authorization"))
    if access is not Access.GRANTED:
        raise _unauthorized(access)  # before anything that costs
    params = parse_check_params(
        request.args, state.config, default_timeout=state.config.checks.timeout
    )
    manager = _ready_manager(state)
    # The app's lifetime nursery exists only while the app serves (ASGI
    # lifespan); a manager opened by its owner does not imply that, and this
    # route must not run unshared.
    if state.nursery is None:
        raise ApiError(503, {"error": "not_ready", "message": "the app is not serving"})
    # One key: at most one measurement in flight, whatever budget callers ask for.
    payload = await _shared(
        state, state.performance, "performance", functools.partial(_measure, manager, params.timeout)
    )
    return _json(payload)


#: The dashboard's files (service/static), served by the app itself: no CDN.
_STATIC_DIR: Final = Path(__file__).parent / "static"
_STATIC_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _static(name: str) -> Response:
    path = _STATIC_DIR / name
    kind = _STATIC_TYPES.get(path.suffix)
    # Only plain file names of known types: nothing outside the directory.
    if "/" in name or "\\" in name or name.startswith(".") or kind is None or not path.is_file():
        raise NotFound()
    return Response(path.read_bytes(), content_type=kind)


async def dashboard() -> Response:
    """The dashboard page (``GET /``): it reads the API and the stream like any client."""
    return _static("dashboard.html")


async def static_file(name: str) -> Response:
    return _static(name)


async def openapi_document() -> Response:
    """This API's OpenAPI 3.1 description (service/openapi.py)."""
    return _json(openapi_spec(max_timeout=_state().config.server.max_timeout))


async def docs() -> Response:
    """A readable reference rendered from /openapi.json by the page itself (no CDN)."""
    return _static("docs.html")


async def livez() -> Response:
    return _json({"status": "ok"})


async def metrics() -> Response:
    """Prometheus exposition (OpenMetrics when the scraper asks for it)."""
    state = _state()
    access = state.auth.check(request.headers.getlist("Authorization"))
    if access is not Access.GRANTED:
        raise _unauthorized(access)  # failure kinds and latencies per adapter are details
    if state.metrics is None:
        raise NotFound()
    body, content_type = state.metrics.render(request.headers.get("Accept"))
    return Response(body, content_type=content_type)


async def readyz() -> Response:
    state = _state()
    manager = state.manager
    if not manager.is_open:
        return _json(
            {
                "status": "not_ready",
                "reason": "HTTP clients are not open: the service is starting or shutting down",
            },
            503,
        )
    body: dict[str, Any] = {
        "status": "ready",
        "models": len(manager.model_adapters),
        "adapters": len(manager.all_adapters()),
    }
    if state.cluster is not None:
        # Still ready without Redis (checks go local), but say so.
        body["cluster"] = {"status": state.cluster.status()["status"]}
    return _json(body)


# -- error handlers ---------------------------------------------------------------------


async def _api_error(error: ApiError) -> Response:
    response = _json(error.body, error.status)
    response.headers.update(error.headers)
    return response


async def _http_error(error: HTTPException) -> Response:
    code = error.code or 500
    if code == 404:
        body: dict[str, Any] = {
            "error": "not_found",
            "message": f"no endpoint at {show_value(request.path)}",
            "endpoints": list(_ENDPOINTS),
        }
    elif code == 405:
        body = {
            "error": "method_not_allowed",
            "message": f"{request.method} is not allowed on {show_value(request.path)}",
        }
    elif code >= 500:
        body = _internal_body(error)
    else:
        body = {
            "error": (error.name or "error").lower().replace(" ", "_"),
            "message": error.description or error.name,
        }
    response = _json(body, code)
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        allowed = sorted(error.valid_methods)
        body["allowed"] = allowed
        response = _json(body, code)
        response.headers["Allow"] = ", ".join(allowed)
    return response


def _internal_body(error: BaseException) -> dict[str, Any]:
    error_id = uuid.uuid4().hex[:12]
    original = getattr(error, "original_exception", None) or error
    # Formatted here rather than with exc_info, so that a key quoted in any
    # message of the chain is redacted before it reaches a log handler.
    trace = "".join(traceback.format_exception(original)).rstrip()
    secrets = _state().secrets() if EXTENSION_KEY in current_app.extensions else []
    logger.error(
        "internal error %s on %s %s\n%s",
        error_id,
        request.method,
        show_value(request.path),
        redact(trace, secrets),
    )
    return {
        "error": "internal_error",
        "message": f"internal error; the server log has the details under id {error_id}",
        "error_id": error_id,
    }


async def _unexpected_error(error: Exception) -> Response:
    return _json(_internal_body(error), 500)


async def _no_store(response: Response) -> Response:
    # A health answer is only true when it is made: no proxy may cache one.
    response.headers["Cache-Control"] = "no-store"
    response.vary.add("Accept")  # JSON or health+json, by Accept
    return response


# -- the factory and the server -----------------------------------------------------------


class _HTTPConnection(TrioASGIHTTPConnection):
    """Quart-Trio's per-request ASGI driver, minus one cancellation.

    Quart-Trio cancels a request's nursery as soon as ``http.disconnect``
    arrives; that is what cancels the checks of a client that went away, and
    it stays. But hypercorn also sends ``http.disconnect`` at the *end* of
    every response, from inside the app's last ``send()``, and then closes or
    recycles the connection in that same call: cancelling there interrupts
    the close half-way. The connection stays open, hypercorn's keep-alive
    timer is never re-armed, and a graceful shutdown with a request in flight
    waits out the whole grace period for a connection nobody uses. So once
    the response is being sent, a disconnect no longer cancels anything (the
    send cannot block on a vanished client: hypercorn drops it).

    Except for event streams: their "response" is open-ended and waits for
    events, so it is exactly what a disconnect must cancel (that is how a
    closed dashboard unsubscribes at once instead of at its next event),
    until the stream ends by itself (shutdown): then its last send must
    finish like any other response's (:func:`_stream_ended`).
    """

    _responding = False

    async def handle_messages(  # type: ignore[override]
        self, nursery: trio.Nursery, request: Request, receive: ASGIReceiveCallable
    ) -> None:
        await ASGIHTTPConnection.handle_messages(self, request, receive)
        if not self._responding:
            nursery.cancel_scope.cancel()

    async def _send_response(self, send: ASGISendCallable, response: ResponseTypes) -> None:
        self._responding = not isinstance(response, _StreamResponse)
        # The body is iterated in this task: the stream finds its connection here.
        _RESPONDING.set(self)
        await super()._send_response(send, response)

    def stream_ended(self) -> None:
        self._responding = True


class _StreamResponse(Response):
    """An open-ended event stream (a GET of /v1/health/stream; HEAD is a plain response)."""


_RESPONDING: contextvars.ContextVar[_HTTPConnection] = contextvars.ContextVar("responding")


def _stream_ended() -> None:
    """The current event stream is ending by itself: let its last send complete."""
    connection = _RESPONDING.get(None)
    if connection is not None:
        connection.stream_ended()


#: Bytes of a query string kept as they are; anything else is percent-encoded.
_QUERY_SAFE: Final = bytes(range(0x20, 0x7F)).decode("ascii")


def _ascii_query(scope: Any) -> Any:
    """The scope with non-ASCII query bytes percent-encoded (what a browser would send).

    Quart decodes the raw query string as UTF-8 while it builds the request,
    before any error handler exists, so invalid bytes there (which some ASGI
    servers pass through) would end in a bare 500. Percent-encoded, they
    reach the parameter parser like any other bad value: a 400.
    """
    query = scope.get("query_string", b"")
    if query.isascii():
        return scope
    return {**scope, "query_string": quote_from_bytes(query, safe=_QUERY_SAFE).encode("ascii")}


class _RouterHealthApp(QuartTrio):
    asgi_http_class = _HTTPConnection

    async def __call__(
        self, scope: Any, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope.get("type") == "http":
            scope = _ascii_query(scope)
        await super().__call__(scope, receive, send)


def create_app(config: Config, *, manager: AdapterManager | None = None) -> QuartTrio:
    """Build the app for ``config``; it opens ``manager`` (or its own) while it serves.

    A manager that is already open when serving starts is left open at the
    end: its owner closes it. Otherwise the app opens it at startup and
    closes it at shutdown.
    """
    # static_folder=None: no framework static route next to our own /static/<name>
    # (it would serve any file under the working directory's static/).
    app = _RouterHealthApp("router_health", static_folder=None)
    app.json = _SeedOrderJSONProvider(app)
    # Match paths literally: model names are not paths to normalise, and a
    # redirect would be the one non-JSON answer.
    app.url_map.merge_slashes = False
    state = _ServiceState(
        app=app,
        config=config,
        manager=manager or AdapterManager(config),
        auth=BearerAuth(config.server.auth_token),
    )
    app.extensions[EXTENSION_KEY] = state

    if config.checks.background_enabled:
        state.health = HealthState(config.checks.schedule_for)
    state.metrics = Metrics(state.manager.health_checker, state.health)

    checker = state.manager.health_checker

    async def open_clients() -> None:
        # Quart-Trio runs startup inside the lifespan nursery it exposes.
        state.nursery = app.nursery
        if state.manager.is_open:
            state.owns_manager = False
        else:
            await state.manager.__aenter__()
            state.owns_manager = True
        state.events.open()
        checker.result_listeners.append(state.events.publish_result)
        checker.run_listeners.append(state.events.publish_run)
        if state.metrics is not None:
            state.metrics.attach()
        if state.health is not None:
            await app.nursery.start(_forward_transitions, state.health, state.events)
            if config.cluster is not None:
                state.cluster = ClusterCoordinator(
                    config.cluster,
                    state.health,
                    known={(m, a.provider) for m, a in state.manager.all_adapters()},
                )
            state.background = BackgroundChecker(
                state.manager.health_checker,
                state.manager.all_adapters(),
                state.health,
                cluster=state.cluster,
            )
            if config.webhook is not None:
                # Subscribed before the first probe, so no first result is missed;
                # it ends by itself once the state closes at shutdown (one last POST).
                state.webhook = WebhookNotifier(config.webhook, state.health)
                await app.nursery.start(state.webhook.run)
            if state.cluster is not None:
                # Loads the results other instances stored; never waits for Redis.
                await app.nursery.start(state.cluster.run)
            await app.nursery.start(state.background.run)

    async def close_clients() -> None:
        state.nursery = None  # no new shared runs
        state.events.close()
        _remove(checker.result_listeners, state.events.publish_result)
        _remove(checker.run_listeners, state.events.publish_run)
        if state.metrics is not None:
            state.metrics.detach()
        background, state.background = state.background, None
        if background is not None:
            background.stop()
            with trio.move_on_after(_RUN_UNWIND_SECONDS, shield=True):
                await background.wait_stopped()
        if state.cluster is not None:
            state.cluster.stop()
        if state.health is not None:
            state.health.close()
        if state.webhook is not None:
            # Closing the state ends the notifier after one last POST; wait for
            # it (bounded), or the server's shutdown would cancel that POST.
            bound = 2 * state.webhook.config.timeout + 1
            with trio.move_on_after(bound, shield=True):
                await state.webhook.wait_stopped()
        for flights in state.flights():
            flights.cancel_all()
        # Shielded but bounded: the runs must be gone before their clients close.
        with trio.move_on_after(_RUN_UNWIND_SECONDS, shield=True):
            await state.wait_idle()
        if state.owns_manager:
            await state.manager.aclose()

    app.before_serving(open_clients)
    app.after_serving(close_clients)
    app.after_request(_no_store)

    routes: list[tuple[str, str, Callable[..., Awaitable[Response]]]] = [
        ("/v1/health/", "health_all", health_all),
        ("/v1/health/models", "health_models", health_models),
        ("/v1/health/models/<path:name>", "health_model", health_model),
        ("/v1/health/performance", "health_performance", health_performance),
        ("/v1/health/batch", "health_batch", health_batch),
        ("/v1/health/history", "health_history", health_history),
        ("/v1/health/stream", "health_stream", health_stream),
        ("/livez", "livez", livez),
        ("/metrics", "metrics", metrics),
        ("/", "dashboard", dashboard),
        ("/openapi.json", "openapi", openapi_document),
        ("/docs", "docs", docs),
        ("/static/<name>", "static_file", static_file),
        ("/readyz", "readyz", readyz),
    ]
    for rule, endpoint, view in routes:
        # strict_slashes=False: "/v1/health" and "/v1/health/models/" match
        # directly instead of redirecting.
        # No automatic OPTIONS: its empty non-JSON answer would be the odd one
        # out, and nothing here needs CORS preflights.
        app.add_url_rule(
            rule,
            endpoint,
            view,
            methods=["POST"] if view is health_batch else ["GET"],
            strict_slashes=False,
            provide_automatic_options=False,
        )

    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def _bind(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"{host}:{port}"


async def serve(
    app: QuartTrio,
    *,
    host: str | None = None,
    port: int | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    access_log: bool = False,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` with hypercorn's Trio worker until ``shutdown_trigger`` returns.

    ``host``/``port`` default to the app config's ``[server]`` section; port 0
    picks a free port. Start it with ``await nursery.start(serve, app)`` (use
    ``functools.partial`` for the keyword arguments) to get the bound URLs,
    e.g. ``["http://127.0.0.1:8000"]``, once the app has started and the
    sockets listen.

    Idle client connections close after ``[server] keep_alive_timeout``
    seconds; hypercorn also keeps the socket of a client that hung up
    mid-request until then, so that timeout bounds what dead clients hold.

    Shutdown (the trigger returned, or hypercorn's own signal): stop
    accepting, give in-flight requests ``[server] shutdown_grace`` seconds,
    cancel the rest (their probes with them), then close the HTTP clients.
    If this call is cancelled instead, the clients are closed all the same.
    """
    state = _state_of(app)
    server = state.config.server
    config = HypercornConfig()
    config.bind = [_bind(host or server.host, server.port if port is None else port)]
    config.graceful_timeout = server.shutdown_grace
    config.keep_alive_timeout = server.keep_alive_timeout
    config.accesslog = "-" if access_log else None
    # Through the logging tree (one format, one handler) rather than
    # hypercorn's own stderr handler, which would print every line twice.
    config.errorlog = logging.getLogger("hypercorn.error")
    trigger = shutdown_trigger
    if shutdown_trigger is not None:
        requested = shutdown_trigger

        async def trigger() -> None:
            await requested()
            # Streams never end by themselves: end them now, or the graceful
            # shutdown would wait the whole grace period for them.
            state.events.close()

    try:
        await hypercorn_serve(app, config, shutdown_trigger=trigger, task_status=task_status)
    finally:
        # Cancelled from outside, hypercorn never runs the app's shutdown.
        if state.owns_manager and state.manager.is_open:
            await state.manager.aclose()

"""The health check routes: ``/v1/health/...`` (checks, batch, performance, history, stream)."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
from collections.abc import AsyncIterator
from typing import Any, Final

from quart import Response, request

from ..engine.report import HealthReport
from ..live.stream import StreamsFull
from .auth import Access, request_access
from .caps import stream_caps
from .compat import StreamResponse, stream_ended
from .errors import not_ready
from .healthjson import health_json, model_health_json, wants_health_json
from .healthjson import http_status as health_json_status
from .params import (
    BODY_ACCEPTED,
    MAX_BATCH_BYTES,
    ApiError,
    CheckParams,
    InvalidParameter,
    Selection,
    batch_too_large,
    parse_batch_body,
    parse_check_params,
    plan_for,
    read_json_body,
    single_param,
)
from .routes_history import history_page, parse_paging
from .runs import measure, ready_manager, run_selection, shared
from .state import ServiceState, current_state
from .views import (
    health_json_response,
    json_response,
    models_view,
    shape,
    status_code,
)

__all__ = [
    "health_all",
    "health_batch",
    "health_history",
    "health_model",
    "health_models",
    "health_performance",
    "health_stream",
]

_FORMAT_ACCEPTED: Final = "json or health+json (the IETF health check format)"


def _wants_health_json() -> bool:
    """``?format=`` or the Accept header asks for application/health+json (400 if unknown)."""
    fmt = single_param(request.args, "format", _FORMAT_ACCEPTED)
    try:
        return wants_health_json(request.headers.get("Accept"), fmt)
    except ValueError as exc:
        raise InvalidParameter("format", str(exc)[:300], _FORMAT_ACCEPTED) from None


def _check_params(state: ServiceState, *, default_timeout: float) -> CheckParams:
    return parse_check_params(request.args, state.config, default_timeout=default_timeout)


async def _answer(
    state: ServiceState,
    params: CheckParams,
    access: Access,
    selection: Selection,
    *,
    as_health_json: bool,
) -> Response:
    """The ``/v1/health/`` answer (JSON or health+json) for ``selection``."""
    report = await run_selection(
        state, params, selection, anonymous=state.auth.anonymous(access)
    )
    details = params.details and access is Access.GRANTED

    def render(report: HealthReport) -> Response:
        if as_health_json:
            return health_json_response(
                health_json(report, details=details), health_json_status(report)
            )
        body = shape(report.to_dict(details=details), access, state.cluster)
        return json_response(body, status_code(report.status))

    await state.answers.keep(state, access, report, render)
    return render(report)


async def health_all() -> Response:
    as_health_json = _wants_health_json()  # before probing: a bad format costs nothing
    state = current_state()
    access = request_access(state.auth)
    params = _check_params(state, default_timeout=state.config.checks.timeout)
    return await _answer(state, params, access, Selection.of(params), as_health_json=as_health_json)


async def health_models() -> Response:
    state = current_state()
    access = request_access(state.auth)
    params = _check_params(state, default_timeout=state.config.checks.timeout)
    report = await run_selection(
        state, params, Selection.of(params), anonymous=state.auth.anonymous(access)
    )
    details = params.details and access is Access.GRANTED

    def render(report: HealthReport) -> Response:
        body = shape(models_view(report, details=details), access, state.cluster)
        return json_response(body, status_code(report.status))

    await state.answers.keep(state, access, report, render)
    return render(report)


async def health_model(name: str) -> Response:
    state = current_state()
    access = request_access(state.auth)
    as_health_json = _wants_health_json()
    params = _check_params(state, default_timeout=state.config.checks.model_timeout)
    report = await run_selection(
        state,
        params,
        Selection.of(params, models=[name]),
        model=name,
        anonymous=state.auth.anonymous(access),
    )
    details = params.details and access is Access.GRANTED

    def render(report: HealthReport) -> Response:
        one = report.model_report(name)
        if as_health_json:
            return health_json_response(
                model_health_json(one, details=details), health_json_status(one)
            )
        data = one.to_dict(details=details)
        data.update(report.extra)  # "source" (and "stale") with background checks on
        return json_response(shape(data, access, state.cluster), status_code(report.status))

    await state.answers.keep(state, access, report, render)
    return render(report)


async def health_batch() -> Response:
    state = current_state()
    access = request_access(state.auth)
    raw = await read_json_body(MAX_BATCH_BYTES, batch_too_large(), BODY_ACCEPTED)
    params, models, providers = parse_batch_body(raw, state.config)
    selection = Selection.of(params, models=models, providers=providers)
    as_health_json = _wants_health_json()
    return await _answer(state, params, access, selection, as_health_json=as_health_json)


async def health_performance() -> Response:
    state = current_state()
    request_access(state.auth, token_required=True)  # before anything that costs
    params = _check_params(state, default_timeout=state.config.checks.timeout)
    manager = ready_manager(state)
    # The app's lifetime nursery exists only while the app serves (ASGI
    # lifespan); a manager opened by its owner does not imply that, and this
    # route must not run unshared.
    if state.nursery is None:
        raise not_ready("the app is not serving")
    # One key: at most one measurement in flight, whatever budget callers ask for.
    payload = await shared(
        state, state.performance, "performance", functools.partial(measure, manager, params.timeout)
    )
    # What probes have cost so far, this measurement's included, as of this
    # answer (a shared measurement's callers each get the state they see).
    return json_response({**payload, "cost": manager.health_checker.cost.to_dict()})


async def health_history() -> Response:
    state = current_state()
    request_access(state.auth, token_required=True)
    accepted = "a configured name, e.g. model=gpt-4"
    model = single_param(request.args, "model", accepted)
    provider = single_param(request.args, "provider", accepted)
    before, limit = parse_paging(request.args)
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
    if before is not None or limit is not None:  # a page of the stored history
        return await history_page(state, health, plan, before=before, limit=limit)
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
    return json_response({"adapters": adapters})


#: Seconds a client refused a stream is told to wait (``Retry-After``).
_STREAM_RETRY_AFTER: Final = "5"


def _client_key(address: str | None) -> str:
    """Whose streams count together: the client's address, an IPv6 /64 as one client."""
    if not address:
        return ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # a Unix socket path, or whatever the ASGI server gives
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _streams_full(full: StreamsFull) -> ApiError:
    """The answer to a stream past a cap: 503 for the server's, 429 for one client's."""
    plural = "" if full.limit == 1 else "s"
    if full.per_client:
        status, error = 429, "too_many_streams_from_client"
        message = (
            f"at most {full.limit} event stream{plural} may be open from one client address "
            "([server] max_streams_per_client); close one or retry later"
        )
    else:
        status, error = 503, "too_many_streams"
        message = (
            f"at most {full.limit} event stream{plural} may be open at once "
            "([server] max_streams); retry later"
        )
    # Connection: close gives the connection back at once, not after the keep-alive timeout.
    headers = {"Retry-After": _STREAM_RETRY_AFTER, "Connection": "close"}
    return ApiError(status, {"error": error, "message": message}, headers)


async def health_stream() -> Response:
    state = current_state()
    request_access(state.auth, token_required=True)  # results carry error details
    ready_manager(state)
    if request.method == "HEAD":  # the headers only: no subscription, no endless body
        return Response(b"", mimetype="text/event-stream")
    hello = {"background": state.health is not None}
    hub = state.events
    if hub.max_streams is None:  # not set by serve(): the configured caps, else the defaults
        hub.limit(*stream_caps(state.config.server))
    try:
        # Admitted here, before any byte: a refused stream gets a JSON answer.
        events = hub.stream(hello, client=_client_key(request.remote_addr))
    except StreamsFull as full:
        raise _streams_full(full) from None

    async def body() -> AsyncIterator[bytes]:
        async with contextlib.aclosing(events):
            async for chunk in events:
                yield chunk
        stream_ended()

    response = StreamResponse(body(), mimetype="text/event-stream")
    response.headers["X-Accel-Buffering"] = "no"  # proxies: do not buffer the stream
    response.timeout = None  # a stream has no end to wait for
    return response

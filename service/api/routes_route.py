"""``GET /v1/route/{model}``: the deployments a router should use now, with weights.

The set itself (order, weights, panic, ETag) is :mod:`service.live.route`'s;
this route only finds the model's report the way ``/v1/health/models/{name}``
does (the live state when fresh, else one shared run, which it shares with
that route), and answers ``304`` when ``If-None-Match`` holds its ETag.
With background checks on, its answers are kept as bytes per state change,
the 304s included (:mod:`service.api.answers`).
"""

from __future__ import annotations

from quart import Response, request
from werkzeug.datastructures import Headers, MultiDict

from ..engine.report import HealthReport
from ..live.route import etag_matches, set_from_report
from .answers import NOT_MODIFIED_DROPS
from .auth import request_access
from .params import CheckParams, Selection, parse_check_params
from .runs import run_selection
from .state import ServiceState, current_state
from .views import json_response

__all__ = ["route_model"]


def _params(state: ServiceState) -> CheckParams:
    """``?timeout=`` (a live check's deadline; default ``[checks] model_timeout``), nothing else."""
    args = MultiDict([("timeout", value) for value in request.args.getlist("timeout")])
    return parse_check_params(args, state.config, default_timeout=state.config.checks.model_timeout)


def _not_modified(response: Response) -> Response:
    """The 304 for ``response``: its headers but the representation's, and no body."""
    drops = {name.decode("ascii") for name in NOT_MODIFIED_DROPS}
    headers = Headers([(k, v) for k, v in response.headers.items() if k.lower() not in drops])
    not_modified = Response(b"", status=304, headers=headers)
    for name in drops:  # Quart's defaults for an empty body
        not_modified.headers.pop(name, None)
    return not_modified


async def route_model(model: str) -> Response:
    state = current_state()
    access = request_access(state.auth)  # a wrong token is a 401; no token is fine
    params = _params(state)
    report = await run_selection(
        state,
        params,
        Selection(models=(model,)),  # as /v1/health/models/{name}: their runs are shared
        model=model,
        anonymous=state.auth.anonymous(access),
    )
    health = state.health
    threshold = state.config.server.route_panic_threshold
    source = str(report.extra.get("source", "live"))

    def render(report: HealthReport) -> Response:
        routable = set_from_report(report.models[model], health, panic_threshold=threshold)
        response = json_response(routable.to_dict(source))
        response.headers["ETag"] = routable.etag
        return response

    await state.answers.keep(state, access, report, render)
    response = render(report)
    if etag_matches(request.headers.getlist("If-None-Match"), response.headers["ETag"]):
        return _not_modified(response)
    return response

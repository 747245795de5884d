"""Every error answer, in one JSON shape: ``{"error", "message", ...}``.

Routes raise :class:`~service.api.params.ApiError` (or werkzeug's HTTP
errors); the handlers registered by :func:`register_error_handlers` turn those,
and anything unexpected, into JSON. No traceback or detail of an unexpected
error leaves the process: it is logged (keys redacted) under an id.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from typing import Any, Final

from quart import Quart, Response, current_app, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from adapters.base import redact

from .params import ApiError, show_value
from .state import EXTENSION_KEY, current_state
from .views import json_response

__all__ = ["ENDPOINTS", "not_ready", "register_error_handlers"]

logger = logging.getLogger("router_health.app")

#: Listed in the 404 body, so a client that mistyped a path sees what exists.
ENDPOINTS: Final = (
    "GET /v1/health/",
    "GET /v1/health/models",
    "GET /v1/health/models/<name>",
    "GET /v1/health/performance",
    "GET /v1/health/history",
    "GET /v1/health/uptime",
    "GET /v1/health/incidents",
    "POST /v1/health/batch",
    "POST /v1/health/observations",
    "GET /v1/health/stream",
    "GET /v1/route/<model>",
    "GET /livez",
    "GET /readyz",
    "GET /metrics",
    "GET /openapi.json",
    "GET /docs",
    "GET / (the dashboard)",
)


def not_ready(message: str) -> ApiError:
    """A 503 ``not_ready``: the service is starting, stopping or not serving."""
    return ApiError(503, {"error": "not_ready", "message": message})


def register_error_handlers(app: Quart) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


async def _api_error(error: ApiError) -> Response:
    response = json_response(error.body, error.status)
    response.headers.update(error.headers)
    return response


async def _http_error(error: HTTPException) -> Response:
    code = error.code or 500
    if code == 404:
        body: dict[str, Any] = {
            "error": "not_found",
            "message": f"no endpoint at {show_value(request.path)}",
            "endpoints": list(ENDPOINTS),
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
    response = json_response(body, code)
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        allowed = sorted(error.valid_methods)
        body["allowed"] = allowed
        response = json_response(body, code)
        response.headers["Allow"] = ", ".join(allowed)
    return response


def _internal_body(error: BaseException) -> dict[str, Any]:
    error_id = uuid.uuid4().hex[:12]
    original = getattr(error, "original_exception", None) or error
    # Formatted here rather than with exc_info, so that a key quoted in any
    # message of the chain is redacted before it reaches a log handler.
    trace = "".join(traceback.format_exception(original)).rstrip()
    secrets = current_state().secrets() if EXTENSION_KEY in current_app.extensions else []
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
    return json_response(_internal_body(error), 500)

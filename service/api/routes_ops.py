"""The operational routes: liveness, readiness, metrics, the dashboard and the API reference.

None of them probes upstream: orchestrators and scrapers call them often,
and every probe costs the providers something.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from quart import Response, request
from werkzeug.exceptions import NotFound

from .auth import request_access
from .openapi import openapi_spec
from .state import current_state
from .views import json_response

__all__ = [
    "dashboard",
    "docs",
    "livez",
    "metrics",
    "openapi_document",
    "readyz",
    "static_file",
]

#: The dashboard's files (service/api/static), served by the app itself: no CDN.
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
    """This API's OpenAPI 3.1 description (service/api/openapi.py)."""
    return json_response(openapi_spec(max_timeout=current_state().config.server.max_timeout))


async def docs() -> Response:
    """A readable reference rendered from /openapi.json by the page itself (no CDN)."""
    return _static("docs.html")


def _alive() -> Response:
    return json_response({"status": "ok"})


async def livez() -> Response:
    """Always ``{"status": "ok"}``: after the first, sent as bytes (:mod:`service.api.answers`)."""
    await current_state().answers.keep_constant(_alive)
    return _alive()


async def readyz() -> Response:
    """Ready once the config is loaded and the HTTP clients are open; never probes upstream.

    A readiness probe runs every few seconds on every replica: making each
    of them call every provider is the cost users of other routers complain
    about most.
    """
    state = current_state()
    manager = state.manager
    if not manager.is_open:
        return json_response(
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
        cluster = state.cluster.status()
        body["cluster"] = {"status": cluster["status"], "rejected": cluster["rejected"]}
    if state.storage is not None:
        # Still ready while the database fails (checks go on), but say so.
        stats = state.storage.stats()
        body["storage"] = {k: stats[k] for k in ("status", "pending", "dropped", "last_error")}
    return json_response(body)


async def metrics() -> Response:
    """Prometheus exposition (OpenMetrics when the scraper asks for it)."""
    state = current_state()
    # Failure kinds and latencies per adapter are details: the token is needed.
    request_access(state.auth, token_required=True)
    if state.metrics is None:
        raise NotFound()
    body, content_type = state.metrics.render(request.headers.get("Accept"))
    return Response(body, content_type=content_type)

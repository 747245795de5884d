"""The HTTP service: the v1 health API on a Quart-Trio app, served by hypercorn.

:func:`create_app` builds the app (routes, error handlers, serving lifetime)
and :func:`serve` runs it with hypercorn's Trio worker; any ASGI server
running Trio can mount it instead. The app opens its :class:`AdapterManager`
when serving starts and closes it when serving stops (unless it was already
open), and every request shares it. The API itself is described by
``GET /openapi.json`` and in docs/.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from quart import Response
from quart_trio import QuartTrio

from ..config import Config
from ..engine.manager import AdapterManager
from ..live.state import HealthState
from .auth import BearerAuth
from .caps import serving_caps
from .compat import CONNECTIONS_KEY, RouterHealthApp, limit_connections
from .errors import register_error_handlers
from .headers import harden
from .lifespan import Lifetime
from .metrics import Metrics
from .recent import RecentRuns
from .routes_health import (
    health_all,
    health_batch,
    health_history,
    health_model,
    health_models,
    health_performance,
    health_stream,
)
from .routes_history import health_incidents, health_uptime
from .routes_observe import health_observations
from .routes_ops import dashboard, docs, livez, metrics, openapi_document, readyz, static_file
from .routes_route import route_model
from .routes_status import badge, status_page
from .state import EXTENSION_KEY, ServiceState, get_health_state, get_manager, state_of
from .views import InsertionOrderJSONProvider

__all__ = ["EXTENSION_KEY", "create_app", "get_health_state", "get_manager", "serve"]

_ROUTES: list[tuple[str, str, Callable[..., Awaitable[Response]]]] = [
    ("/v1/health/", "health_all", health_all),
    ("/v1/health/models", "health_models", health_models),
    ("/v1/health/models/<path:name>", "health_model", health_model),
    ("/v1/health/performance", "health_performance", health_performance),
    ("/v1/health/batch", "health_batch", health_batch),
    ("/v1/health/observations", "health_observations", health_observations),
    ("/v1/health/history", "health_history", health_history),
    ("/v1/health/uptime", "health_uptime", health_uptime),
    ("/v1/health/incidents", "health_incidents", health_incidents),
    ("/v1/health/stream", "health_stream", health_stream),
    ("/v1/route/<path:model>", "route_model", route_model),
    ("/livez", "livez", livez),
    ("/metrics", "metrics", metrics),
    ("/", "dashboard", dashboard),
    ("/openapi.json", "openapi", openapi_document),
    ("/docs", "docs", docs),
    ("/static/<name>", "static_file", static_file),
    ("/readyz", "readyz", readyz),
    ("/status", "status_page", status_page),
    ("/badge/<path:model>.svg", "badge", badge),
]


def create_app(config: Config, *, manager: AdapterManager | None = None) -> QuartTrio:
    """Build the app for ``config``; it opens ``manager`` (or its own) while it serves.

    A manager that is already open when serving starts is left open at the
    end: its owner closes it. Otherwise the app opens it at startup and
    closes it at shutdown.
    """
    # static_folder=None: no framework static route next to our own /static/<name>
    # (it would serve any file under the working directory's static/).
    app = RouterHealthApp("router_health", static_folder=None)
    app.json = InsertionOrderJSONProvider(app)
    # Match paths literally: model names are not paths to normalise, and a
    # redirect would be the one non-JSON answer.
    app.url_map.merge_slashes = False
    state = ServiceState(
        app=app,
        config=config,
        manager=manager or AdapterManager(config),
        auth=BearerAuth(config.server.auth_token),
        recent_runs=RecentRuns(config.server.anonymous_min_interval),
    )
    if config.checks.background_enabled:
        state.health = HealthState(config.checks.schedule_for)
    state.metrics = Metrics(
        state.manager.health_checker, state.health, state.refusals, state.storage_stats,
        alerts=state.alert_stats,
    )
    app.extensions[EXTENSION_KEY] = state
    # Answers from the live state, sent as bytes while the state has not changed.
    app.quick_answer = functools.partial(state.answers.lookup, state)
    # A run a traced request starts is a child of the caller's span (service.engine.telemetry).
    app.tracing = state.manager.health_checker.tracing

    lifetime = Lifetime(state)
    app.before_serving(lifetime.start)
    app.after_serving(lifetime.stop)
    app.after_request(harden)  # no-store, CSP and the other hardening headers
    for rule, endpoint, view in _ROUTES:
        # strict_slashes=False: "/v1/health" and "/v1/health/models/" match
        # directly instead of redirecting.
        # No automatic OPTIONS: its empty non-JSON answer would be the odd one
        # out, and nothing here needs CORS preflights.
        app.add_url_rule(
            rule,
            endpoint,
            view,
            methods=["POST"] if view in (health_batch, health_observations) else ["GET"],
            strict_slashes=False,
            provide_automatic_options=False,
        )
    register_error_handlers(app)
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
    Connections and event streams are capped (``[server] max_connections``,
    ``max_streams``, ``max_streams_per_client``; unset, derived from the
    open-file limit now: :mod:`service.api.caps`); the connections' count is
    ``app.extensions[CONNECTIONS_KEY]`` while serving.

    Shutdown (the trigger returned, or hypercorn's own signal): stop
    accepting, give in-flight requests ``[server] shutdown_grace`` seconds,
    cancel the rest (their probes with them), then close the HTTP clients.
    Shortly before the grace period ends (:func:`_answer_before_the_end`),
    the shared runs still going are cancelled, so the requests waiting on
    them answer 503 ``not_ready`` instead of being cut off without an answer.
    If this call is cancelled instead, the clients are closed all the same.
    """
    state = state_of(app)
    server = state.config.server
    config = HypercornConfig()
    config.bind = [_bind(host or server.host, server.port if port is None else port)]
    config.graceful_timeout = server.shutdown_grace
    config.keep_alive_timeout = server.keep_alive_timeout
    config.accesslog = "-" if access_log else None
    # Through the logging tree (one format, one handler) rather than
    # hypercorn's own stderr handler, which would print every line twice.
    config.errorlog = logging.getLogger("hypercorn.error")
    # Connections and event streams capped (file descriptors are finite):
    # configured, or derived from the open-file limit as it is now.
    caps = serving_caps(server, adapters=len(state.manager.all_adapters()))
    app.extensions[CONNECTIONS_KEY] = limit_connections(config, caps.connections)
    state.events.limit(caps.streams, caps.streams_per_client)
    try:
        async with trio.open_nursery() as timers:
            trigger = shutdown_trigger
            if shutdown_trigger is not None:
                requested = shutdown_trigger

                async def trigger() -> None:
                    await requested()
                    # Streams never end by themselves: end them now, or the graceful
                    # shutdown would wait the whole grace period for them.
                    state.events.close()
                    timers.start_soon(_answer_before_the_end, state, server.shutdown_grace)

            await hypercorn_serve(app, config, shutdown_trigger=trigger, task_status=task_status)
            timers.cancel_scope.cancel()  # served and shut down: no timer is needed any more
    finally:
        # Cancelled from outside, hypercorn never runs the app's shutdown.
        if state.owns_manager and state.manager.is_open:
            await state.manager.aclose()


async def _answer_before_the_end(state: ServiceState, grace: float) -> None:
    """Cancel the shared runs shortly before the grace period ends: their callers answer 503.

    At the end of the grace period hypercorn cancels every request still
    running, and a request cancelled there gets no answer at all. A request
    waiting on a cancelled shared run answers 503 ``not_ready`` ("the service
    is shutting down") instead, so the runs are cancelled early enough for
    that answer to be written: ``min(0.5 s, grace / 2)`` before the end.
    The timer lives in :func:`serve`'s own nursery (not the app's, whose
    shutdown would wait for it), cancelled once hypercorn has returned.
    """
    await trio.sleep(grace - min(0.5, grace / 2))
    for flights in state.flights():
        flights.cancel_all()

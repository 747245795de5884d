"""The public routes: the status page (``GET /status``) and badges (``GET /badge/{model}.svg``).

Public whatever ``[server] auth_token`` says (a status page and a README
badge are read by people without the token), so they show only what
``[status_page]`` chooses, and nothing a detail would: no error text, no
provider, no URL (:mod:`.status_page` decides what is shown).

Neither probes anything: the current status comes from the live state
(background checks; without them it is unknown), the uptime and incidents
from storage. Storage is read at most once per :data:`HISTORY_TTL` seconds
for every visitor together (a public page must not let anyone make the
database work at will); a failing read shows the page without history.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Final

import trio
from quart import Response
from werkzeug.exceptions import NotFound

from ..config import Config
from ..engine.report import ProbeStatus
from ..live.state import HealthState
from ..live.storage import Storage, StorageError
from .badge import status_badge, unknown_badge
from .state import ServiceState, current_state
from .status_page import (
    HISTORY_DAYS,
    UPTIME_DAYS,
    History,
    ModelRow,
    PublicStatus,
    StatusView,
    render_status_page,
)

__all__ = ["BADGE_CACHE_CONTROL", "HISTORY_TTL", "badge", "public_status", "status_page"]

logger = logging.getLogger("router_health.status_page")

#: Seconds one read of storage serves the page and the badges.
HISTORY_TTL: Final = 30.0
#: Badges are embedded in READMEs and dashboards: caches may keep one a minute.
BADGE_CACHE_CONTROL: Final = "max-age=60"
#: Incidents read at most per refresh (the page lists the newest ones).
_INCIDENTS_READ: Final = 1000
_DAY: Final = 86_400.0
#: Where the app keeps the cache (``app.extensions``).
_CACHE_KEY: Final = "router_health.status_page"


class _HistoryCache:
    """Storage's answers for the public routes, read again once :data:`HISTORY_TTL` has passed.

    One reader at a time (a lock): visitors arriving during a read wait for
    it instead of starting their own. A failed read is kept as ``None`` for
    the same time, so a failing database is not asked on every visit.
    """

    def __init__(self) -> None:
        self._lock = trio.Lock()
        self._history: History | None = None
        self._until = -math.inf

    async def get(self, storage: Storage, config: Config, shown: Sequence[str]) -> History | None:
        async with self._lock:
            if trio.current_time() >= self._until:
                self._history = await _read(storage, config, shown)
                self._until = trio.current_time() + HISTORY_TTL
            return self._history


async def _read(storage: Storage, config: Config, shown: Sequence[str]) -> History | None:
    now = time.time()
    try:
        month = await storage.uptime(UPTIME_DAYS * _DAY, models=shown)
        days = {model: await storage.daily(model, HISTORY_DAYS) for model in shown}
        since = now - config.status_page.incident_days * _DAY
        incidents = await storage.incidents(since=since, models=shown, limit=_INCIDENTS_READ)
    except StorageError as exc:
        # The page still answers with the current status; the operator reads why here.
        logger.warning("status page: could not read the history: %s", exc)
        return None
    return History(read_at=now, days=days, month=dict(month.models), incidents=incidents)


def public_status(health: HealthState | None, config: Config, model: str) -> PublicStatus:
    """``model``'s status for the public: up, degraded, down, or unknown (nothing checked yet).

    From the reported statuses (after hysteresis) of its checked providers:
    up when all are healthy, degraded while some still serve, down when none
    does. Providers not checked yet, or never (``unsupported``), are left out.
    """
    if health is None:
        return "unknown"
    statuses = []
    for provider in config.model(model).providers:
        adapter = health.get(model, provider.name)
        if adapter is not None and adapter.reported is not ProbeStatus.UNSUPPORTED:
            statuses.append(adapter.reported)
    if not statuses:
        return "unknown"
    if all(status is ProbeStatus.HEALTHY for status in statuses):
        return "up"
    if any(status.usable for status in statuses):
        return "degraded"
    return "down"


def _shown(state: ServiceState) -> tuple[str, ...]:
    config = state.config
    return config.status_page.shown([model.name for model in config.models])


async def _history(state: ServiceState, shown: Sequence[str]) -> History | None:
    """Storage's history of ``shown`` (cached); None when it could not be read."""
    assert state.storage is not None
    cache = state.app.extensions.setdefault(_CACHE_KEY, _HistoryCache())
    assert isinstance(cache, _HistoryCache)
    return await cache.get(state.storage, state.config, shown)


async def status_page() -> Response:
    """``GET /status``: one row per shown model, its uptime bar, and recent incidents."""
    state = current_state()
    page = state.config.status_page
    if not page.enabled:
        raise NotFound()
    shown = _shown(state)
    history = None if state.storage is None else await _history(state, shown)
    rows = [
        ModelRow(
            name=model,
            status=public_status(state.health, state.config, model),
            month=None if history is None else history.month.get(model),
            days=() if history is None else history.days.get(model, ()),
        )
        for model in shown
    ]
    view = StatusView(
        title=page.title,
        now=time.time(),
        rows=rows,
        incident_days=page.incident_days,
        history="off" if state.storage is None else ("failing" if history is None else "on"),
        incidents=() if history is None else history.incidents,
    )
    return Response(render_status_page(view), content_type="text/html; charset=utf-8")


def _svg(body: str, status: int = 200) -> Response:
    response = Response(body, status=status, content_type="image/svg+xml")
    response.headers["Cache-Control"] = BADGE_CACHE_CONTROL
    return response


async def badge(model: str) -> Response:
    """``GET /badge/{model}.svg``: status and 30-day uptime; 404 with an "unknown" badge."""
    state = current_state()
    page = state.config.status_page
    shown = _shown(state)
    if not page.enabled or model not in shown:
        return _svg(unknown_badge(), 404)
    history = None if state.storage is None else await _history(state, shown)
    month = None if history is None else history.month.get(model)
    ratio = None if month is None else month.ratio
    return _svg(status_badge(model, public_status(state.health, state.config, model), ratio))

"""What the stored history says: ``/v1/health/uptime``, ``/v1/health/incidents``, history pages.

These answers come from :class:`~service.live.storage.Storage` (``[storage]``
on, with background checks), never from probing: their queries run in
storage's read thread, so a request here costs a database read and nothing
upstream. Without storage they are a 404 ``storage_off`` saying how to turn
it on; a database that cannot be read is a 503 ``storage_failing`` (checks go
on regardless). Every parameter is checked before the database is touched.

``GET /v1/health/history`` reads its pages here too (``before``/``limit``,
newest first, one ``next_before`` cursor for the whole selection); without
them it answers from memory as before (:mod:`service.api.routes_health`).
The reference is docs/http-api.md.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Collection, Mapping
from typing import Any, Final, TypeVar

from quart import Response, request
from werkzeug.datastructures import MultiDict

from adapters.base import Adapter

from ..live.state import HealthState
from ..live.storage import Storage, StorageError
from ..live.uptime import Uptime
from .auth import request_access
from .errors import not_ready
from .params import (
    _NUMBER,
    ApiError,
    InvalidParameter,
    Selection,
    plan_for,
    show_value,
    single_param,
)
from .state import ServiceState, current_state
from .views import json_response

__all__ = [
    "DEFAULT_INCIDENTS",
    "DEFAULT_PAGE",
    "DEFAULT_WINDOW",
    "MAX_LIMIT",
    "STATUSES",
    "WINDOWS",
    "health_incidents",
    "health_uptime",
    "history_page",
    "parse_paging",
]

#: ``?window=`` -> seconds.
WINDOWS: Final = {
    "1h": 3600.0,
    "24h": 86_400.0,
    "7d": 7 * 86_400.0,
    "30d": 30 * 86_400.0,
    "90d": 90 * 86_400.0,
}
DEFAULT_WINDOW: Final = "24h"
#: The most incidents, or history entries per adapter, one answer holds.
MAX_LIMIT: Final = 1000
DEFAULT_INCIDENTS: Final = 100
#: History entries per adapter in a page that gives ``before`` without ``limit``.
DEFAULT_PAGE: Final = 100
STATUSES: Final = ("open", "resolved")

_WINDOWS_LISTED: Final = "one of " + ", ".join(WINDOWS)
_WINDOW_ACCEPTED: Final = f"{_WINDOWS_LISTED} (default {DEFAULT_WINDOW})"
_MODEL_ACCEPTED: Final = "a configured model name, e.g. model=gpt-4"
_SINCE_ACCEPTED: Final = "unix seconds, not in the future, e.g. since=1796000000"
_BEFORE_ACCEPTED: Final = "unix seconds, e.g. a previous page's next_before"
_LIMIT_ACCEPTED: Final = f"a whole number from 1 to {MAX_LIMIT}, e.g. limit=100"
_STATUS_ACCEPTED: Final = "open or resolved"
_DIGITS: Final = re.compile(r"\+?[0-9]{1,9}")
#: A ``before`` past this (unix s, the year 5138) excludes nothing: it is "from the newest".
_FAR_FUTURE: Final = 1e11

T = TypeVar("T")


# -- parameters ---------------------------------------------------------------------------


def _unix_time(args: MultiDict[str, str], name: str, accepted: str) -> float | None:
    raw = single_param(args, name, accepted)
    if raw is None:
        return None
    text = raw.strip()
    value = float(text) if _NUMBER.fullmatch(text) else math.nan
    if not math.isfinite(value):
        raise InvalidParameter(
            name, f"{name} must be a number of unix seconds, got {show_value(raw)}", accepted
        )
    return value


def _limit(args: MultiDict[str, str], default: int | None) -> int | None:
    raw = single_param(args, "limit", _LIMIT_ACCEPTED)
    if raw is None:
        return default
    text = raw.strip()
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidParameter(
            "limit",
            f"limit must be a whole number from 1 to {MAX_LIMIT}, got {show_value(raw)}",
            _LIMIT_ACCEPTED,
        )
    return int(text)


def _choice(
    args: MultiDict[str, str], name: str, choices: Collection[str], what: str, accepted: str
) -> str | None:
    raw = single_param(args, name, accepted)
    if raw is not None and raw not in choices:
        raise InvalidParameter(name, f"{name} must be {what}, got {show_value(raw)}", accepted)
    return raw


def _model(state: ServiceState, args: MultiDict[str, str]) -> str | None:
    """``?model=``: a configured name, else 404 ``unknown_model`` with suggestions."""
    model = single_param(args, "model", _MODEL_ACCEPTED)
    if model is not None and model not in state.manager.model_adapters:
        plan_for(state.manager, Selection(models=(model,)))  # raises, naming close names
    return model


def parse_paging(args: MultiDict[str, str]) -> tuple[float | None, int | None]:
    """``/v1/health/history``'s ``before`` and ``limit`` (None when not given); 400 if invalid."""
    return _unix_time(args, "before", _BEFORE_ACCEPTED), _limit(args, None)


# -- storage ------------------------------------------------------------------------------


def _why_off(state: ServiceState) -> str:
    if state.health is None:
        return (
            "storage keeps what background checks find, which are off: set [checks] interval > 0"
        )
    return "storage is off: set [storage] enabled = true (or leave enabled out: on by default)"


def _not_serving(state: ServiceState) -> bool:
    """Storage would run, but the app is not serving (starting or stopping)."""
    return state.config.storage.active(state.health is not None) and state.nursery is None


def _storage(state: ServiceState, what: str) -> Storage:
    """The running storage; 404 ``storage_off`` without one, 503 while not serving.

    ``what`` starts the message: "uptime is", "incidents are".
    """
    if state.storage is not None:
        return state.storage
    if _not_serving(state):
        raise not_ready("the service is starting or stopping; storage opens while it serves")
    raise ApiError(
        404,
        {"error": "storage_off",
         "message": f"{what} read from the stored history, and {_why_off(state)}"},
    )


async def _read(query: Awaitable[T]) -> T:
    """A storage query's answer; 503 ``storage_failing`` if the database cannot be read."""
    try:
        return await query
    except StorageError as exc:
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "error"
        raise ApiError(
            503,
            {
                "error": "storage_failing",
                # The kind only: the message names the database's path.
                "message": f"the history database cannot be read now ({cause}); "
                "/readyz shows storage's state, and checks go on meanwhile",
            },
        ) from None


# -- routes -------------------------------------------------------------------------------


async def health_uptime() -> Response:
    state = current_state()
    request_access(state.auth, token_required=True)
    args = request.args
    window = _choice(args, "window", WINDOWS, _WINDOWS_LISTED, _WINDOW_ACCEPTED) or DEFAULT_WINDOW
    model = _model(state, args)
    storage = _storage(state, "uptime is")
    plan = plan_for(state.manager, Selection(models=None if model is None else (model,)))
    report = await _read(storage.uptime(WINDOWS[window], models=None if model is None else [model]))
    empty = Uptime(0.0, 0.0, report.window_seconds)  # configured, nothing stored yet
    return json_response(
        {
            "window": window,
            "start": round(report.start, 3),
            "end": round(report.end, 3),
            "models": {name: report.models.get(name, empty).to_dict() for name in plan},
            "adapters": [
                {
                    "model": name,
                    "provider": adapter.provider,
                    **report.adapters.get((name, adapter.provider), empty).to_dict(),
                }
                for name, members in plan.items()
                for adapter in members
            ],
        }
    )


async def health_incidents() -> Response:
    state = current_state()
    request_access(state.auth, token_required=True)
    args = request.args
    since = _unix_time(args, "since", _SINCE_ACCEPTED)
    if since is not None and since > time.time():
        raise InvalidParameter(
            "since", f"since must not be in the future, got {since:.3f} (now is "
            f"{time.time():.3f})", _SINCE_ACCEPTED,
        )
    status = _choice(args, "status", STATUSES, _STATUS_ACCEPTED, _STATUS_ACCEPTED)
    limit = _limit(args, DEFAULT_INCIDENTS)
    assert limit is not None
    model = _model(state, args)
    storage = _storage(state, "incidents are")
    incidents = await _read(
        storage.incidents(
            since=since, model=model, limit=limit,
            open_only=status == "open", resolved_only=status == "resolved",
        )
    )
    return json_response({"incidents": [incident.to_dict() for incident in incidents]})


async def history_page(
    state: ServiceState,
    health: HealthState,
    plan: Mapping[str, list[Adapter]],
    *,
    before: float | None,
    limit: int | None,
) -> Response:
    """One page of ``/v1/health/history`` from storage: newest first, at most ``limit`` each.

    ``next_before`` is one cursor for the whole selection: every entry at or
    after it (and before ``before``) is in this page, for every adapter, so
    the next page (``before=next_before``) starts exactly where this one
    ends. It is None on the last page. Results not written yet are taken
    from memory, so the first page is as fresh as the in-memory history.
    """
    if limit is None:
        limit = DEFAULT_PAGE
    parameter = "before" if before is not None else "limit"
    if state.storage is None:
        if _not_serving(state):
            raise not_ready("the service is starting or stopping; storage opens while it serves")
        raise InvalidParameter(
            parameter,
            f"{parameter} pages through the stored history, and {_why_off(state)}; "
            "without before and limit, the last results are answered from memory",
            _BEFORE_ACCEPTED if parameter == "before" else _LIMIT_ACCEPTED,
        )
    storage = state.storage
    bound = None if before is None or before > _FAR_FUTURE else before
    pages: list[tuple[str, str, list[dict[str, Any]]]] = []
    for name, members in plan.items():
        for adapter in members:
            stored = await _read(storage.history(name, adapter.provider, before=bound,
                                                 limit=limit + 1))
            # Keyed on whole ms rounded as the writer rounds (round(checked_at * 1000)):
            # round(x, 3) of the same verdict may be a ms off (x.2515 -> .251, stored .252).
            entries = {round(entry["checked_at"] * 1000): entry for entry in stored}
            cursor = None if bound is None else round(bound * 1000)
            for kept in health.history(name, adapter.provider):  # not written yet, maybe
                at_ms = round(kept.checked_at * 1000)
                if cursor is None or at_ms < cursor:
                    entries.setdefault(at_ms, {**kept.to_dict(), "checked_at": at_ms / 1000})
            newest = [entries[at_ms] for at_ms in sorted(entries, reverse=True)]
            pages.append((name, adapter.provider, newest[: limit + 1]))
    # The newest cut among the adapters with more than a page: everything at or after it is here.
    cut = max((page[limit - 1]["checked_at"] for _, _, page in pages if len(page) > limit),
              default=None)
    adapters = []
    for name, provider, page in pages:
        current = health.get(name, provider)
        adapters.append(
            {
                "model": name,
                "provider": provider,
                "status": None if current is None else current.reported.value,
                "history": [e for e in page[:limit] if cut is None or e["checked_at"] >= cut],
            }
        )
    return json_response({"adapters": adapters, "next_before": cut})

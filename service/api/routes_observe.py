"""``POST /v1/health/observations``: a router reports the outcomes of its real calls, in batches.

Each observation goes to :meth:`AdapterManager.observe` (the embedding API's
call, and its validation), so HTTP reports feed the passive strategy
exactly as the Python call does. A bad entry is rejected with its index and
its own message; the good entries of the same batch are all applied.

Guarded by a token of its own (``[server] observe_token``; without one the
route answers 404 ``not_enabled``), a token bucket over the process
(``max_observation_requests_per_second``: 429 with ``Retry-After``), and the
body's size (``max_observations_per_request``, 1 KB each: 413), bounded
before it is parsed. The reference is docs/http-api.md.
"""

from __future__ import annotations

import difflib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import trio
from quart import Response

from ..config import ServerConfig
from ..config.values import finite
from ..engine.manager import AdapterManager
from .auth import BearerAuth, request_access
from .params import ApiError, InvalidBody, _json_type, read_json_body, show_value
from .state import ServiceState, current_state
from .suggest import LISTED, suggest
from .views import json_response

__all__ = ["MAX_CLOCK_SKEW", "TokenBucket", "health_observations", "observations_body_limit"]

#: How far ``at`` may be from this server's clock, either way (seconds).
MAX_CLOCK_SKEW: Final = 60.0
#: Body bytes allowed per observation a request may carry.
_BYTES_PER_OBSERVATION: Final = 1024
#: The longest message of one rejected entry (a value is echoed, never in full).
_MAX_ERROR_CHARS: Final = 400
_DESK_KEY: Final = "router_health.observations"
_FIELDS: Final = {
    "model": "a configured model name (string, required)",
    "provider": "one of that model's provider names (string, required)",
    "ok": "whether the call succeeded (true or false, required)",
    "status_code": "the HTTP status the call got (integer 100..599)",
    "error_kind": "why it failed: a failure kind, e.g. \"timeout\"",
    "latency_ms": "how long it took (number >= 0)",
    "at": "when it ended (unix seconds; default now)",
}
_ACCEPTED: Final = (
    'a JSON object {"observations": [...]}, each observation an object with '
    + ", ".join(_FIELDS)
)
#: observe()'s messages name its Python parameters; the HTTP fields are named otherwise.
_HTTP_WORDING: Final = (
    ("http_status must be", "status_code must be"),
    ("unknown failure ", "unknown error_kind "),
    ("a request with ok=True has no failure, got failure=",
     "an observation with ok true has no error_kind, got error_kind="),
)


def observations_body_limit(server: ServerConfig) -> int:
    """The largest body read: 1 KB per observation allowed, and 1 KB for the rest."""
    return (server.max_observations_per_request + 1) * _BYTES_PER_OBSERVATION


class TokenBucket:
    """``rate`` requests per second in bursts of at most ``burst``, on the Trio clock."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp: float | None = None

    def take(self) -> float:
        """Take one token: 0.0, or (none left) the seconds until one is back."""
        now = trio.current_time()
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


@dataclass(eq=False)
class _Desk:
    """What the route keeps per app: its token and its rate."""

    auth: BearerAuth
    bucket: TokenBucket


def _desk(state: ServiceState) -> _Desk:
    desk = state.app.extensions.get(_DESK_KEY)
    if not isinstance(desk, _Desk):
        server = state.config.server
        rate = server.max_observation_requests_per_second
        desk = _Desk(BearerAuth(server.observe_token), TokenBucket(rate, burst=max(1.0, rate)))
        state.app.extensions[_DESK_KEY] = desk
    return desk


class _Rejected(ValueError):
    """One observation that cannot be taken; ``str()`` says why."""


async def health_observations() -> Response:
    state = current_state()
    server = state.config.server
    desk = _desk(state)
    if not desk.auth.enabled:
        raise ApiError(
            404,
            {
                "error": "not_enabled",
                "message": "traffic reports are off: set [server] observe_token_env (or "
                "observe_token) to accept them",
            },
        )
    request_access(
        desk.auth,
        token_required=True,
        which="; it takes [server] observe_token, not auth_token",
    )
    wait = desk.bucket.take()
    if wait > 0:
        retry_after = max(1, math.ceil(wait))
        raise ApiError(
            429,
            {
                "error": "rate_limited",
                "message": "observation requests are limited to "
                f"{server.max_observation_requests_per_second:g} per second ([server] "
                f"max_observation_requests_per_second); retry in {retry_after} s, or send "
                "larger batches",
            },
            {"Retry-After": str(retry_after)},
        )
    limit = observations_body_limit(server)
    too_large = _too_large(
        f"the body is larger than {limit:,} bytes (1 KB per observation of [server] "
        "max_observations_per_request); split the batch"
    )
    raw = await read_json_body(limit, too_large, _ACCEPTED)
    entries = _parse_body(raw, server.max_observations_per_request)
    models = state.manager.get_available_models()
    now = time.time()
    accepted = ignored = 0
    rejected: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        try:
            counted = _observe(state.manager, models, entry, now)
        except _Rejected as exc:
            rejected.append({"index": index, "error": _bounded(str(exc))})
        else:
            if counted:
                accepted += 1
            else:
                ignored += 1
    if state.metrics is not None:
        for outcome, count in (("accepted", accepted), ("ignored", ignored),
                               ("rejected", len(rejected))):
            state.metrics.observations.labels(outcome).inc(count)
    return json_response({"accepted": accepted, "ignored": ignored, "rejected": rejected})


def _too_large(message: str) -> ApiError:
    return ApiError(413, {"error": "request_too_large", "message": message})


def _parse_body(raw: bytes, most: int) -> list[Any]:
    """The list of observations; 400 for a body that is not one, 413 past ``most``.

    NaN and Infinity are read as numbers (Python's json.dumps writes them), so
    such a value is one entry's rejection rather than the whole batch's.
    Repeated keys: the last one counts, as in most JSON readers.
    """
    try:
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, UnicodeDecodeError):
            reason = "not UTF-8"
        elif isinstance(exc, RecursionError):
            reason = "nested too deeply"
        else:
            reason = f"not valid JSON ({str(exc)[:200]})"
        raise InvalidBody("body", f"the body is {reason}", _ACCEPTED) from None
    if not isinstance(body, dict):
        raise InvalidBody("body", f"the body must be a JSON object, got {_json_type(body)}", _ACCEPTED)
    for key in body:
        if key != "observations":
            hint = "; did you mean 'observations'?" if _close(key, ["observations"]) else ""
            raise InvalidBody(key, f"unknown field {show_value(key)}{hint}", _ACCEPTED)
    if "observations" not in body:
        raise InvalidBody("observations", "observations is required: a list", _ACCEPTED)
    entries = body["observations"]
    if not isinstance(entries, list):
        raise InvalidBody(
            "observations", f"observations must be a list, got {_json_type(entries)}", _ACCEPTED
        )
    if len(entries) > most:
        raise _too_large(
            f"at most {most:,} observations per request ([server] "
            f"max_observations_per_request), got {len(entries):,}; split the batch"
        )
    return entries


def _observe(manager: AdapterManager, models: Sequence[str], entry: Any, now: float) -> bool:
    """Feed one observation to ``manager.observe``; whether it counted (False: not passive)."""
    if not isinstance(entry, dict):
        raise _Rejected(f"an observation must be a JSON object, got {_json_type(entry)}")
    for key in entry:
        if key not in _FIELDS:
            close = _close(key, list(_FIELDS))
            hint = f"; did you mean {close[0]!r}?" if close else f"; accepted: {', '.join(_FIELDS)}"
            raise _Rejected(f"unknown field {show_value(key)}{hint}")
    model = _required_name(entry, "model")
    provider = _required_name(entry, "provider")
    if "ok" not in entry:
        raise _Rejected("ok is required: true or false")
    ok = entry["ok"]
    if not isinstance(ok, bool):
        raise _Rejected(f"ok must be true or false, got {_json_type(ok)}")
    status_code = _optional(entry, "status_code", _is_number, "an integer HTTP status 100..599")
    latency_ms = _optional(entry, "latency_ms", _is_number, "a finite number of ms >= 0")
    error_kind = _optional(entry, "error_kind", _is_string, "a failure kind, e.g. \"timeout\"")
    at = _optional(entry, "at", _is_number, "unix seconds, e.g. 1796168230.2")
    if model not in manager.model_adapters:
        raise _Rejected(_unknown_name(f"unknown model {show_value(model)}", model, models))
    providers = [a.provider for a in manager.model_adapters[model]]
    if provider not in providers:
        raise _Rejected(
            _unknown_name(
                f"model {show_value(model)} has no provider {show_value(provider)}",
                provider,
                providers,
            )
        )
    if at is not None:
        _check_at(at, now)
    if isinstance(error_kind, str) and len(error_kind) > 60:
        # Longer than any kind: refused all the same, with the value echoed in part only.
        error_kind = error_kind[:60] + "..."
    try:
        return manager.observe(
            model,
            provider,
            ok=ok,
            latency_ms=latency_ms,
            http_status=status_code,
            failure=error_kind,
        )
    except ValueError as exc:
        message = str(exc)
        for python, http in _HTTP_WORDING:
            message = message.replace(python, http, 1)
        raise _Rejected(message) from None


def _check_at(at: float, now: float) -> None:
    if not finite(at):
        raise _Rejected(f"at must be finite unix seconds, got {_shown_number(at)}")
    if at > now + MAX_CLOCK_SKEW:
        raise _Rejected(
            f"at is {at - now:,.0f} s ahead of this server's clock; at most "
            f"{MAX_CLOCK_SKEW:g} s of skew is accepted (at is unix seconds: check the "
            "reporter's clock)"
        )
    if at < now - MAX_CLOCK_SKEW:
        raise _Rejected(
            f"at is {now - at:,.0f} s in the past; observations older than "
            f"{MAX_CLOCK_SKEW:g} s are refused (they would count as fresh traffic)"
        )


def _required_name(entry: Mapping[str, Any], field: str) -> str:
    if field not in entry:
        raise _Rejected(f"{field} is required: {_FIELDS[field]}")
    value = entry[field]
    if not isinstance(value, str) or not value:
        got = "an empty string" if value == "" else _json_type(value)
        raise _Rejected(f"{field} must be {_FIELDS[field]}, got {got}")
    return value


def _optional(entry: Mapping[str, Any], field: str, right_type: Any, accepted: str) -> Any:
    """``entry[field]`` (None when absent or null); its JSON type checked, its value by observe()."""
    value = entry.get(field)
    if value is not None and not right_type(value):
        raise _Rejected(f"{field} must be {accepted} or null, got {_json_type(value)}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_string(value: Any) -> bool:
    return isinstance(value, str)


def _unknown_name(what: str, name: str, names: Sequence[str]) -> str:
    """``what``, then close names: all of them listed when few, else at most a few close ones."""
    if len(names) <= LISTED:
        listed = ", ".join(names) or "none"
        close = _close(name, names)
        if close:
            return f"{what}; did you mean {close[0]!r}? (configured: {listed})"
        return f"{what}; configured: {listed}"
    close = suggest([name], names)
    if close:
        return f"{what}; did you mean {', '.join(map(repr, close))}? ({len(names):,} configured)"
    return f"{what}; none of the {len(names):,} configured is close"


def _close(word: str, names: Sequence[str]) -> list[str]:
    return difflib.get_close_matches(word[:100], names, n=1)


def _shown_number(value: float) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _bounded(message: str) -> str:
    return message if len(message) <= _MAX_ERROR_CHARS else message[: _MAX_ERROR_CHARS - 3] + "..."

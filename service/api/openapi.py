"""The HTTP API as an OpenAPI 3.1 document (``GET /openapi.json``, rendered by ``GET /docs``).

Hand-written as Python data next to the app it describes, so that a change of
the API and of its description land together; ``tests/api/test_openapi.py``
checks that every route the app registers is here (and nothing else), and
fuzzes a live server against this document with Schemathesis.

Conventions:

* Objects whose keys are fixed are closed (``additionalProperties: false``);
  objects the app extends with optional keys (a report's ``source`` /
  ``stale``, a detail's ``retry_after``, ``queued_ms``, ``cached``...) are
  open: their documented keys are stable, and clients must ignore others.
* Auth is optional (``[server] auth_token_env``): operations list the
  ``bearer`` scheme where a token matters once one is configured. Without a
  configured token every request is granted and no 401 is ever sent.
* ``HEAD`` works wherever ``GET`` does (same status and headers, no body).
"""

from __future__ import annotations

import copy
from importlib import metadata
from typing import Any, Final

from adapters.base import FailureKind

from ..config import MAX_TAGS, TAG_PATTERN, ServerConfig
from ..engine.report import HealthStatus, ProbeStatus
from .routes_history import (
    DEFAULT_INCIDENTS,
    DEFAULT_PAGE,
    DEFAULT_WINDOW,
    MAX_LIMIT,
    STATUSES,
    WINDOWS,
)
from .suggest import CLOSE, LISTED

__all__ = ["openapi_spec"]

Schema = dict[str, Any]

_JSON: Final = "application/json"
_HEALTH_JSON: Final = "application/health+json"
_DEFAULT_MAX_TIMEOUT: Final = ServerConfig().max_timeout
_MAX_TAGS: Final = MAX_TAGS
_TAG: Final = TAG_PATTERN.pattern
#: ``?tags=``: comma-separated tags, spaces around commas allowed (a subset of
#: what the server strips: it accepts any whitespace).
_TAG_LIST_PATTERN: Final = f"^ *{_TAG} *(, *{_TAG} *){{0,{_MAX_TAGS - 1}}}$"
_BOOLEAN_PATTERN: Final = (
    "^[ \t]*([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[Yy][Ee][Ss]|[Nn][Oo]|1|0)[ \t]*$"
)

# Enumerations come from the code itself, so the document cannot fall behind.
_PROBE_STATUSES: Final = [status.value for status in ProbeStatus]
_HEALTH_STATUSES: Final = [status.value for status in HealthStatus]
_FAILURES: Final = [kind.value for kind in FailureKind]


def _package_version() -> str:
    try:
        return metadata.version("router-health")
    except metadata.PackageNotFoundError:  # a bare checkout
        return "0.1.0"


# -- schema helpers ------------------------------------------------------------------------


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(
    properties: dict[str, Schema],
    required: list[str] | None = None,
    *,
    open_: bool = False,
    description: str | None = None,
) -> Schema:
    """An object; ``required`` defaults to every property; closed unless ``open_``."""
    schema: Schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": open_,
    }
    if description:
        schema["description"] = description
    return schema


def _map(values: Schema, description: str | None = None) -> Schema:
    schema: Schema = {"type": "object", "additionalProperties": values}
    if description:
        schema["description"] = description
    return schema


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _str(description: str | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "string", **extra}
    if description:
        schema["description"] = description
    return schema


def _num(description: str | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "number", **extra}
    if description:
        schema["description"] = description
    return schema


def _int(description: str | None = None, *, minimum: int = 0) -> Schema:
    schema: Schema = {"type": "integer", "minimum": minimum}
    if description:
        schema["description"] = description
    return schema


def _bool(description: str | None = None) -> Schema:
    schema: Schema = {"type": "boolean"}
    if description:
        schema["description"] = description
    return schema


def _enum(values: list[str], description: str | None = None) -> Schema:
    schema: Schema = {"type": "string", "enum": list(values)}
    if description:
        schema["description"] = description
    return schema


def _const(value: str) -> Schema:
    return {"type": "string", "const": value}


def _list(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


# -- components: schemas -------------------------------------------------------------------


def _error(code: str | list[str], extra: dict[str, Schema], description: str) -> Schema:
    """An error body: ``error`` (the code), ``message``, then ``extra``; open for new keys."""
    error = _const(code) if isinstance(code, str) else _enum(code)
    return _obj(
        {"error": error, "message": _str("a human-readable explanation"), **extra},
        open_=True,
        description=description,
    )


def _report_fields() -> dict[str, Schema]:
    """The v1 run fields after ``status``/``timestamp``/``models``, and ``fallback``."""
    return {
        "execution_time": _num("seconds the run took (0 when served from background checks)",
                               minimum=0),
        "concurrent": _bool("whether the concurrent strategy ran"),
        "timeout": _num("this request's budget in seconds (a shared run answers each "
                        "caller at its own deadline)", exclusiveMinimum=0),
        "fallback": _bool("some results came from the sequential fallback pass"),
        "fallback_reason": _str(
            "why the fallback ran; only when it did, and only for callers granted details"
        ),
    }


def _source_fields() -> dict[str, Schema]:
    return {
        "source": _enum(
            ["live", "background"],
            "with background checks on: whether the answer was probed for this request "
            "or read from the live state (absent when background checks are off)",
        ),
        "stale": _int(
            "served from background checks: how many results were past their max_age "
            "(stale-while-revalidate; absent when none)",
            minimum=1,
        ),
    }


def _schemas() -> dict[str, Schema]:
    summary_fields: dict[str, Schema] = {
        "status": _ref("HealthStatus"),
        "providers": _map(_ref("ProbeStatus"), "provider -> its verdict, in config order"),
        "healthy_providers": _int(),
        "total_providers": _int(),
    }
    provider_details = _map(_ref("ProbeDetail"), "provider -> the probe's detail")
    limiter = _obj(
        {
            "in_use": _int("probe slots in use"),
            "limit": _int("the current limit"),
            "queued": _int("probes waiting for a slot"),
            "ceiling": _int("adaptive limits: the most the limit may grow to"),
            "decreases": _int("adaptive limits: times the limit shrank"),
            "increases": _int("adaptive limits: times the limit grew"),
        },
        ["in_use", "limit", "queued"],
    )
    spread = _obj(
        {
            "total": _num(minimum=0),
            "p50": _nullable(_num(minimum=0)),
            "p95": _nullable(_num(minimum=0)),
            "max": _nullable(_num(minimum=0)),
        },
        description="milliseconds over the probes sent; percentiles are null when none was",
    )
    breakdown = _obj(
        {
            "probes": _int("probes actually sent (not served from caches, holds or passive data)"),
            "queue_wait_ms": spread,
            "execution_ms": spread,
        }
    )
    verdict = _enum([*_PROBE_STATUSES, "not_started"], "a probe status, or not_started")
    counts = _obj(
        {
            "probes": _int("probes sent (never results served without one)"),
            "free_probes": _int("model-list probes: not billed"),
            "paid_probes": _int("billed calls (probe = \"completion\")"),
            "tokens": _int("tokens billed to paid probes, from the answers' usage"),
            "budget_fallbacks": _int(
                "of free_probes: sent instead of a paid one, the token budget being reached"
            ),
        }
    )
    cost = _obj(
        {
            "adapters": _list(
                _obj(
                    {
                        "model": _str(),
                        "provider": _str(),
                        "total": counts,
                        "last_hour": counts,
                    }
                ),
                description="every adapter that has sent a probe, in the order each first did",
            ),
            "total": counts,
            "last_hour": counts,
            "budget": _nullable(
                _obj(
                    {
                        "max_tokens_per_hour": _int(minimum=1),
                        "tokens_last_hour": _int(),
                        "exhausted": _bool(
                            "no paid probe goes out until there is room: adapters send their "
                            "free probe, or are served their last verdict when they have none"
                        ),
                        "exhausted_since": _nullable(_num("unix time the budget was reached")),
                        "room_in_s": _nullable(
                            _num("seconds until the hour has room again", minimum=0)
                        ),
                    },
                    description="[checks] max_probe_tokens_per_hour; null when not configured",
                )
            ),
        },
        description="what probes have cost since the service started, and over the last hour",
    )
    return {
        "ProbeStatus": _enum(_PROBE_STATUSES, "one adapter's verdict"),
        "HealthStatus": _enum(_HEALTH_STATUSES, "a model's or a run's verdict"),
        "FailureKind": _enum(_FAILURES, "why a probe failed, coarse enough for a metric label"),
        "ProbeDetail": _obj(
            {
                "status": _ref("ProbeStatus"),
                "adapter": _str("the adapter's class-like name, e.g. OpenAIAdapter"),
                "latency_ms": _nullable(_num(minimum=0)),
                "http_status": _nullable({"type": "integer"}),
                "error": _nullable(_str("short, with every key redacted")),
                "failure": _nullable(_ref("FailureKind")),
                "checked_at": _num("unix time the probe finished (or was given up)"),
                "fallback": _bool("came from the sequential fallback pass"),
                "retry_after": _num("seconds from a 429/503's Retry-After, when it had one",
                                    minimum=0),
                "queued_ms": _num("time spent waiting for a probe slot (a cap is configured); "
                                  "included in latency_ms", minimum=0),
                "cached": {"const": True, "description": "served from a recent result "
                           "(min_interval, background checks, or a run that finished less "
                           "than [server] anonymous_min_interval ago, for anonymous callers) "
                           "instead of probing"},
                "age_s": _num("with cached: seconds since that probe ran", minimum=0),
                "source": _enum(
                    ["passive", "retry_after"],
                    "where the verdict came from when not from a probe just sent: the "
                    "router's own traffic, or a Retry-After hold (nothing was sent)",
                ),
                "samples": _int("passive verdicts: how many reported requests they summarise"),
                "stale": {"const": True, "description": "served past its max_age while a "
                          "refresh runs (stale-while-revalidate)"},
                "budget_fallback": {"const": True, "description": "the adapter's probe is "
                                    "paid, but [checks] max_probe_tokens_per_hour was "
                                    "reached: it sent its free probe instead"},
            },
            ["status", "adapter", "latency_ms", "http_status", "error", "failure", "checked_at",
             "fallback"],
            open_=True,
            description="One adapter's probe. The optional keys appear only when they apply.",
        ),
        "ModelSummary": _obj(summary_fields, description="The v1 per-model object."),
        "HealthReport": _obj(
            {
                "status": _ref("HealthStatus"),
                "timestamp": _num("unix time the run started"),
                "models": _map(_ref("ModelSummary"), "model -> its summary"),
                "healthy_models": _int(),
                "total_models": _int(),
                **_report_fields(),
                "details": _map(
                    provider_details,
                    "model -> provider -> detail; left out with details=false or without "
                    "the token (auth on)",
                ),
                **_source_fields(),
            },
            ["status", "timestamp", "models", "healthy_models", "total_models",
             "execution_time", "concurrent", "timeout", "fallback"],
            open_=True,
            description="The v1 GET /v1/health/ shape, then fallback and the optional keys.",
        ),
        "ModelListItem": _obj(
            {"model": _str(), **summary_fields, "details": provider_details},
            ["model", *summary_fields],
        ),
        "ModelListReport": _obj(
            {
                "status": _ref("HealthStatus"),
                "timestamp": _num("unix time the run started"),
                "models": _list(_ref("ModelListItem")),
                "healthy_models": _int(),
                "total_models": _int(),
                **_report_fields(),
                **_source_fields(),
            },
            ["status", "timestamp", "models", "healthy_models", "total_models",
             "execution_time", "concurrent", "timeout", "fallback"],
            open_=True,
            description="GET /v1/health/ with models as a list of per-model objects.",
        ),
        "ModelReport": _obj(
            {
                "model": _str(),
                **summary_fields,
                "timestamp": _num("unix time the run started"),
                **_report_fields(),
                "details": provider_details,
                **_source_fields(),
            },
            ["model", *summary_fields, "timestamp", "execution_time", "concurrent", "timeout",
             "fallback"],
            open_=True,
            description="One model checked on its own.",
        ),
        "PerformanceReport": _obj(
            {
                "timestamp": _num("unix time the measurement started"),
                "performance_metrics": _obj(
                    {
                        "concurrent_time": _num(minimum=0),
                        "sequential_time": _num(minimum=0),
                        "speedup": _nullable(_num("sequential / concurrent, 2 decimals")),
                        "improvement_percent": _nullable(_num("1 decimal")),
                        "total_models": _int(),
                        "total_adapters": _int(),
                    }
                ),
                "concurrent_result_count": _int("adapters that reached a verdict"),
                "sequential_result_count": _int("adapters that reached a verdict"),
                "timeout": _num("the budget this measurement used", exclusiveMinimum=0),
                "concurrent_status": _ref("HealthStatus"),
                "sequential_status": _ref("HealthStatus"),
                "agreement": _obj(
                    {
                        "agreed": _bool(),
                        "mismatches": _list(
                            _obj(
                                {
                                    "model": _str(),
                                    "provider": _str(),
                                    "concurrent": verdict,
                                    "sequential": verdict,
                                }
                            )
                        ),
                    }
                ),
                "time_breakdown": _obj({"concurrent": breakdown, "sequential": breakdown}),
                "limits": _obj(
                    {
                        "adaptive": _bool("adaptive_concurrency is on"),
                        "current": _map(limiter, "limiter ('*' is the global one) -> state"),
                    }
                ),
                "cost": cost,
            },
            description="The v1 performance fields, then agreement, time_breakdown, limits, cost.",
        ),
        "History": _obj(
            {
                "adapters": _list(
                    _obj(
                        {
                            "model": _str(),
                            "provider": _str(),
                            "status": _nullable(_ref("ProbeStatus")),
                            "history": _list(
                                _ref("HistoryEntry"),
                                maxItems=50,
                                description="the last results, oldest first",
                            ),
                        }
                    )
                )
            }
        ),
        **_stored_history_schemas(),
        "Live": _obj({"status": _const("ok")}),
        "Ready": _obj({"status": _const("ready"), "models": _int(), "adapters": _int()}),
        "NotReadyStatus": _obj({"status": _const("not_ready"), "reason": _str()}),
        "HealthJson": _obj(
            {
                "status": _enum(["pass", "warn", "fail"],
                                "healthy -> pass, degraded -> warn, unhealthy -> fail"),
                "version": _str("the API's public version ('1')"),
                "releaseId": _str("the package's version"),
                "serviceId": _const("router-health"),
                "description": _str(),
                "notes": _list(_str()),
                "output": _str("when not pass: how many adapters are not healthy"),
                "checks": _map(
                    _list(_ref("HealthJsonCheck"), minItems=1, maxItems=1),
                    "'{model}:{provider}' (each part with '%' and ':' percent-encoded) -> "
                    "a one-element array",
                ),
            },
            ["status", "version", "serviceId", "description", "checks"],
            open_=True,
            description="draft-inadarei-api-health-check-06 document.",
        ),
        "HealthJsonCheck": _obj(
            {
                "componentId": _str("'{model}/{provider}'"),
                "componentType": _const("component"),
                "observedValue": _num("the probe's latency", minimum=0),
                "observedUnit": _const("ms"),
                "status": _enum(["pass", "warn", "fail"]),
                "time": _str("checked_at, ISO 8601 UTC", format="date-time"),
                "output": _str("the (redacted) error, when not pass"),
            },
            ["componentId", "componentType", "status"],
            open_=True,
            description="With details=false (or without the token) only componentId, "
            "componentType and status.",
        ),
        "StreamEvents": {
            "description": "The JSON carried by each event kind of GET /v1/health/stream.",
            "type": "object",
            "properties": {
                "hello": _obj({"background": _bool("background checks are on")}),
                "result": {
                    "allOf": [_ref("ProbeDetail")],
                    "properties": {"model": _str(), "provider": _str()},
                    "required": ["model", "provider"],
                },
                "transition": _obj(
                    {
                        "model": _str(),
                        "provider": _str(),
                        "previous": _nullable(_ref("ProbeStatus")),
                        "current": _ref("ProbeStatus"),
                        "at": _num(),
                        "error": _nullable(_str()),
                    }
                ),
                "run": _obj(
                    {
                        "run_id": _str(),
                        "strategy": _enum(["concurrent", "sequential"]),
                        "status": _ref("HealthStatus"),
                        "execution_time": _num(minimum=0),
                        "adapters": _int(),
                    }
                ),
                "route": _obj(
                    {
                        "model": _str(),
                        "panic": _bool(),
                        "deployments": _list(_str(), description="provider names, best first"),
                    }
                ),
                "dropped": _obj({"reason": _str()}),
            },
        },
        "RoutableSet": _obj(
            {
                "model": _str(),
                "panic": _bool(
                    "fewer than [server] route_panic_threshold percent of the deployments are "
                    "healthy: every one is returned, evenly weighted"
                ),
                "source": _enum(
                    ["background", "live"],
                    "read from the live state, or checked for this request (background "
                    "checks off, or no fresh state)",
                ),
                "deployments": _list(
                    _obj(
                        {
                            "provider": _str(),
                            "status": _ref("ProbeStatus"),
                            "weight": _num(
                                "share of traffic, in hundredths; the deployments' add up to 1",
                                minimum=0, maximum=1,
                            ),
                            "latency_ms": _nullable(_num(
                                "recent latency: an EWMA of the clean answers (null: none)",
                                minimum=0,
                            )),
                            "age_s": _num("seconds since its result", minimum=0),
                        }
                    ),
                    description="the deployments to use now, best first: healthy by recent "
                    "latency, then degraded (in panic: then the rest)",
                ),
                "excluded": _list(
                    _obj(
                        {
                            "provider": _str(),
                            "status": _ref("ProbeStatus"),
                            "failure": _nullable(_ref("FailureKind")),
                        }
                    ),
                    description="unhealthy, timeout and unsupported deployments (none in panic)",
                ),
                "healthy": _int("healthy deployments"),
                "total": _int("the model's deployments"),
            },
            description="GET /v1/route/{model}: a model's routable set.",
        ),
        # -- errors
        "InvalidParameter": _error(
            "invalid_parameter",
            {"parameter": _str("the query parameter at fault"),
             "accepted": _str("the accepted form")},
            "A bad query parameter (bad value, empty, or given twice).",
        ),
        "InvalidBody": _error(
            "invalid_body",
            {"field": _str("the body field at fault, or 'body'"),
             "accepted": _str("the accepted form")},
            "A batch body that is not a JSON object of the documented fields.",
        ),
        "UnknownName": _error(
            ["unknown_model", "unknown_provider"],
            {"available": _list(
                _str(),
                description=f"the configured names while there are at most {LISTED}; past "
                f"that, at most {CLOSE} close to the one asked for (the message says how many "
                "are configured)",
                maxItems=max(LISTED, CLOSE),
            )},
            "A model or provider name that is not configured.",
        ),
        "EmptySelection": _error(
            "empty_selection",
            {
                "selection": _obj(
                    {
                        "models": _list(_str()),
                        "providers": _list(_str()),
                        "tags": _list(_str()),
                        "exclude": _list(_str()),
                    },
                    ["tags", "exclude"],
                )
            },
            "The filters leave no adapter.",
        ),
        "ObservationsAnswer": _obj(
            {
                "accepted": _int("observations fed to a passive adapter"),
                "ignored": _int("valid observations of adapters that are not passive "
                                "(probe = \"passive\"): nothing is kept"),
                "rejected": _list(
                    _obj({"index": _int("the observation's position in the list"),
                          "error": _str("what is wrong with it, naming the field")}),
                    description="every invalid observation, in order; the others were applied",
                ),
            },
            description="What became of each observation of a POST /v1/health/observations.",
        ),
        "NotEnabled": _error(
            "not_enabled", {}, "Traffic reports are off: [server] observe_token is not set."
        ),
        "RequestTooLarge": _error(
            "request_too_large",
            {},
            "More observations than [server] max_observations_per_request, or a body past 1 KB "
            "per observation allowed.",
        ),
        "RateLimited": _error(
            "rate_limited",
            {},
            "More observation requests than [server] max_observation_requests_per_second "
            "(a token bucket over the process): retry after Retry-After seconds.",
        ),
        "BackgroundChecksOff": _error(
            "background_checks_off", {}, "History needs background checks ([checks] interval > 0)."
        ),
        "StorageOff": _error(
            "storage_off",
            {},
            "Uptime and incidents are read from [storage], which is off (or background "
            "checks are, which it stores): the message says what to set.",
        ),
        "StorageFailing": _error(
            "storage_failing",
            {},
            "The history database cannot be read now (locked, unreadable): /readyz shows "
            "storage's state; checks go on meanwhile.",
        ),
        "NotFound": _error(
            "not_found",
            {"endpoints": _list(_str(), description="the API's endpoints")},
            "No endpoint (or static file) at this path.",
        ),
        "MethodNotAllowed": _error(
            "method_not_allowed",
            {"allowed": _list(_str())},
            "A method the path does not take (with an Allow header).",
        ),
        "Unauthorized": _error("unauthorized", {}, "Missing (where needed) or wrong token."),
        "UnsupportedMediaType": _error(
            "unsupported_media_type", {"accepted": _const(_JSON)}, "The batch body must be JSON."
        ),
        "NotReady": _error(
            "not_ready", {}, "Starting, shutting down, or served without the ASGI lifespan."
        ),
        "TooManyStreams": _error(
            "too_many_streams",
            {},
            "[server] max_streams event streams are open: this one is refused (Retry-After).",
        ),
        "TooManyStreamsFromClient": _error(
            "too_many_streams_from_client",
            {},
            "[server] max_streams_per_client event streams are open from this client address "
            "(an IPv6 /64 counts as one address): this one is refused (Retry-After).",
        ),
        "TooManyConnections": _error(
            "too_many_connections",
            {},
            "Every one of the [server] max_connections connections is busy with a request: "
            "this connection gets this answer (Retry-After, Connection: close) and is closed, "
            "whatever it asked for.",
        ),
        "InternalError": _error(
            "internal_error",
            {"error_id": _str("the id of the server log entry")},
            "Anything unexpected; nothing but this id leaves the process.",
        ),
        "OpenApiDocument": {
            "type": "object",
            "required": ["openapi", "info", "paths"],
            "properties": {"openapi": _str(pattern=r"^3\.1\.\d+$")},
            "description": "This document.",
        },
    }


def _stored_history_schemas() -> dict[str, Schema]:
    """What GET /v1/health/uptime, /incidents and the history pages answer (storage)."""
    uptime_fields: dict[str, Schema] = {
        "uptime": _nullable(_num("up out of covered seconds, 6 digits; null when no verdict "
                                 "held in the window", minimum=0, maximum=1)),
        "up_seconds": _num("seconds an up verdict (healthy or degraded) held", minimum=0),
        "covered_seconds": _num("seconds some verdict held (gaps longer than the hold "
                                "limit, e.g. while the service was down, are not covered)",
                                minimum=0),
        "coverage": _num("covered out of the window's seconds", minimum=0, maximum=1),
    }
    return {
        "HistoryEntry": _obj(
            {
                "checked_at": _num("unix time, to the millisecond"),
                "status": _ref("ProbeStatus"),
                "latency_ms": _nullable(_num(minimum=0)),
                "failure": _nullable(_ref("FailureKind")),
            },
            description="One result, with the probe's own verdict (before hysteresis).",
        ),
        "HistoryPage": _obj(
            {
                "adapters": _list(
                    _obj(
                        {
                            "model": _str(),
                            "provider": _str(),
                            "status": _nullable(_ref("ProbeStatus")),
                            "history": _list(
                                _ref("HistoryEntry"),
                                maxItems=MAX_LIMIT,
                                description="results before `before`, newest first, at most "
                                "`limit`",
                            ),
                        }
                    )
                ),
                "next_before": _nullable(_num(
                    "the next page's before (every result at or after it is in this page, "
                    "for every adapter); null on the last page"
                )),
            },
            description="A page of the stored history (before or limit given).",
        ),
        "Uptime": _obj(uptime_fields, description="Time-weighted uptime over the window."),
        "UptimeReport": _obj(
            {
                "window": _enum(list(WINDOWS)),
                "start": _num("unix time the window starts"),
                "end": _num("unix time the window ends (now)"),
                "models": _map(
                    _ref("Uptime"),
                    "model -> its uptime: up while any of its providers is up, covered "
                    "while any is covered; every selected model, in config order",
                ),
                "adapters": _list(
                    _obj({"model": _str(), "provider": _str(), **uptime_fields}),
                    description="every selected adapter, in config order",
                ),
            },
            description="GET /v1/health/uptime.",
        ),
        "Incident": _obj(
            {
                "model": _str(),
                "status": _enum(["open", "resolved"]),
                "started_at": _num("unix time the first adapter went down"),
                "ended_at": _nullable(_num("unix time the last one came back; null while "
                                           "open")),
                "duration_seconds": _num("to ended_at, or to now while open", minimum=0),
                "severity": _enum(
                    ["major", "partial"],
                    "major: every checked provider of the model was down at once",
                ),
                "failures": _list(_str(), description="the failure kinds seen, sorted"),
                "adapters": _list(_str(), description="the providers that went down, sorted"),
            },
            description="A stretch of time in which some adapter of a model reported down.",
        ),
        "Incidents": _obj(
            {"incidents": _list(_ref("Incident"), maxItems=MAX_LIMIT,
                                description="newest first")},
        ),
    }


# -- components: parameters, headers, responses ----------------------------------------


def _query(name: str, schema: Schema, description: str, **extra: Any) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description, **extra}


def _boolean_query(name: str, description: str) -> Schema:
    return _query(
        name,
        {"anyOf": [{"type": "boolean"}, {"type": "string", "pattern": _BOOLEAN_PATTERN}]},
        description + " Accepts true/false/1/0/yes/no in any case, surrounding whitespace allowed.",
    )


def _parameters(max_timeout: float) -> dict[str, Schema]:
    tags_schema: Schema = {"type": "string", "pattern": _TAG_LIST_PATTERN}
    return {
        "timeout": _query(
            "timeout",
            {"type": "number", "exclusiveMinimum": 0, "maximum": max_timeout},
            "This request's budget in seconds: a plain decimal number, finite, > 0 and <= "
            f"the server's [server] max_timeout (here {max_timeout:g}). Default: [checks] "
            "timeout ([checks] model_timeout on the one-model route). Requests differing only "
            "in timeout share one run; at its deadline a request gets what the run has found "
            "so far (unfinished adapters: timeout, failure deadline or not_started).",
            example=5,
        ),
        "use_concurrent": _boolean_query(
            "use_concurrent", "Probe concurrently (default: [checks] use_concurrent)."
        ),
        "details": _boolean_query(
            "details",
            "false leaves out the per-provider details (default true; without the token, "
            "auth on, they are always left out).",
        ),
        "fresh": _boolean_query(
            "fresh", "With background checks on: always probe live (default false)."
        ),
        "tags": _query(
            "tags",
            tags_schema,
            f"Comma-separated tags ({_TAG}, at most {_MAX_TAGS}, spaces around commas "
            "allowed): keep the adapters whose effective tags include all of them.",
            example="prod,eu",
        ),
        "exclude": _query(
            "exclude",
            tags_schema,
            "Comma-separated tags, as tags: drop the adapters having any of them.",
            example="local",
        ),
        "format": _query(
            "format",
            _enum(["json", "health+json"]),
            "json (default) or health+json (the IETF application/health+json document; "
            "send it as health%2Bjson, or health+json whose '+' decodes to a space, which "
            "is accepted too; any case). Overrides the Accept header; any other value is a "
            "400 invalid_parameter.",
        ),
    }


_CHECK_PARAMS: Final = ["timeout", "use_concurrent", "details", "fresh", "tags", "exclude"]


def _param_refs(names: list[str]) -> list[Schema]:
    return [{"$ref": f"#/components/parameters/{name}"} for name in names]


def _headers() -> dict[str, Schema]:
    return {
        "Cache-Control": {
            "description": "Every answer: a health answer is only true when it is made.",
            "schema": _const("no-store"),
        },
        "Vary": {
            "description": "Every answer: Accept (JSON or health+json, by Accept).",
            "schema": _str(),
        },
        "ETag": {
            "description": "GET /v1/route/{model}: a strong entity tag of the set (model, "
            "panic, and each deployment's provider, status and weight, in order; not its "
            "latencies or ages).",
            "required": True,
            "schema": _str(pattern='^"[0-9a-f]{32}"$'),
        },
        "WWW-Authenticate": {
            "description": 'Bearer realm="router-health" (with error="invalid_token" for a '
            "wrong token), RFC 6750.",
            "required": True,
            "schema": _str(pattern="^Bearer "),
        },
        "Allow": {"description": "The methods the path takes.", "required": True,
                  "schema": _str()},
        "Retry-After": {
            "description": "With a refusal by a cap (too_many_streams, "
            "too_many_streams_from_client, too_many_connections) or a rate (rate_limited): "
            "seconds to wait before trying again.",
            "schema": _str(pattern=r"^[0-9]+$"),
        },
    }


def _header_refs(*names: str) -> dict[str, Schema]:
    every = ("Cache-Control", "Vary", *names)
    return {name: {"$ref": f"#/components/headers/{name}"} for name in every}


def _content(schema: Schema, media_type: str = _JSON) -> dict[str, Schema]:
    return {media_type: {"schema": schema}}


def _json_response(description: str, schema: Schema, *headers: str) -> Schema:
    return {"description": description, "headers": _header_refs(*headers),
            "content": _content(schema)}


def _one_of(*names: str) -> Schema:
    return _ref(names[0]) if len(names) == 1 else {"anyOf": [_ref(n) for n in names]}


def _responses() -> dict[str, Schema]:
    return {
        "InvalidParameter": _json_response(
            "A bad query parameter.", _ref("InvalidParameter")
        ),
        "Unauthorized": _json_response(
            "Auth on: a wrong token (any route but /livez, /readyz and the static files), or "
            "none where the route needs one.",
            _ref("Unauthorized"),
            "WWW-Authenticate",
        ),
        "NotReady": _json_response(
            "The service is starting or shutting down.", _ref("NotReady")
        ),
        "NotFound": _json_response("No endpoint or file at this path.", _ref("NotFound")),
        "MethodNotAllowed": _json_response(
            "Any path, a method it does not take.", _ref("MethodNotAllowed"), "Allow"
        ),
        "InternalError": _json_response("Anything unexpected.", _ref("InternalError")),
        "TooManyConnections": _json_response(
            "Any path: every connection the server takes is busy (see info.description).",
            _ref("TooManyConnections"),
            "Retry-After",
        ),
    }


def _resp_ref(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


# -- operations ---------------------------------------------------------------------------


_CHECK_SECURITY: Final[list[dict[str, list[str]]]] = [{}, {"bearer": []}]
_TOKEN_SECURITY: Final[list[dict[str, list[str]]]] = [{"bearer": []}]


def _check_responses(
    report: str, description: str, *, health_json: bool, not_found: list[str]
) -> dict[str, Schema]:
    """200/503 with the report (and health+json), 400, 401, 404, 500."""

    def answer(text: str, *extra_503: str) -> Schema:
        content = _content(_one_of(report, *extra_503))
        if health_json:
            content.update(_content(_ref("HealthJson"), _HEALTH_JSON))
        return {"description": text, "headers": _header_refs(), "content": content}

    negotiated = (
        " With ?format=health+json or Accept: application/health+json, the "
        "application/health+json document instead (pass/warn: 200, fail: 503)."
        if health_json
        else ""
    )
    return {
        "200": answer(f"Healthy or degraded: {description}.{negotiated}"),
        "400": _resp_ref("InvalidParameter"),
        "401": _resp_ref("Unauthorized"),
        "404": _json_response(
            "A name that is not configured, or filters that leave no adapter.",
            _one_of(*not_found),
        ),
        "500": _resp_ref("InternalError"),
        "503": answer(
            f"Unhealthy (the same body), or not_ready while starting or stopping.{negotiated}",
            "NotReady",
        ),
    }


def _static_content(*media_types: str) -> dict[str, Schema]:
    return {m: {"schema": {"type": "string"}} for m in media_types}


def _operations(max_timeout: float) -> dict[str, dict[str, Schema]]:
    check_params = _param_refs(_CHECK_PARAMS)
    name_param: Schema = {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "The model name: everything after /models/, percent-decoded, so it may "
        "contain '/' (sent plainly or as %2F) and ':'; it cannot start with '/' (such a "
        "path is a 404 not_found).",
        "schema": {"type": "string", "minLength": 1, "pattern": "^[^/]"},
        "examples": {
            "plain": {"value": "gpt-4"},
            "with_colon": {"value": "llama3:latest"},
            "with_slash": {"value": "org/model"},
        },
    }
    static_name: Schema = {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "A file name in service/api/static (no '/' or '\\', not starting with "
        "'.'; .html, .js, .css or .svg). Anything else is a 404 not_found.",
        "schema": {"type": "string", "pattern": "^[^/\\\\.][^/\\\\]*$"},
        "example": "favicon.svg",
    }
    batch_body: Schema = {
        "required": True,
        "description": "Every field optional; at most 64 KB; duplicate keys and non-finite "
        "numbers are a 400.",
        "content": {
            _JSON: {
                "schema": _obj(
                    {
                        "models": _list(_str(minLength=1), minItems=1,
                                        description="model names (unknown: 404)"),
                        "providers": _list(_str(minLength=1), minItems=1,
                                           description="provider names (unknown: 404)"),
                        "tags": _list(_str(pattern=f"^{_TAG}$"), minItems=1,
                                      maxItems=_MAX_TAGS,
                                      description="keep adapters having all of them"),
                        "exclude": _list(_str(pattern=f"^{_TAG}$"), minItems=1,
                                         maxItems=_MAX_TAGS,
                                         description="drop adapters having any of them"),
                        "timeout": _num(
                            f"seconds, > 0 and <= [server] max_timeout (here {max_timeout:g})",
                            exclusiveMinimum=0,
                            maximum=max_timeout,
                        ),
                        "use_concurrent": _bool(),
                        "details": _bool(),
                        "fresh": _bool(),
                    },
                    [],
                ),
                "example": {"models": ["gpt-4", "llama3"], "exclude": ["local"],
                            "details": False},
            }
        },
    }
    observation = _obj(
        {
            "model": _str("a configured model name", minLength=1),
            "provider": _str("one of that model's provider names", minLength=1),
            "ok": _bool("whether the call succeeded"),
            "status_code": _nullable({"type": "integer", "minimum": 100, "maximum": 599}),
            "error_kind": _nullable(_ref("FailureKind")),
            "latency_ms": _nullable(_num(minimum=0)),
            "at": _nullable(_num("unix seconds the call ended, within 60 s of the server's "
                                 "clock (default: now)")),
        },
        ["model", "provider", "ok"],
    )
    observations_body: Schema = {
        "required": True,
        "description": "At most [server] max_observations_per_request observations (1000 by "
        "default) and 1 KB per observation allowed (a 413 otherwise). Each invalid one is "
        "listed in rejected with its index; the others are applied.",
        "content": {
            _JSON: {
                "schema": _obj({"observations": _list(observation)}),
                "example": {"observations": [
                    {"model": "gpt-4", "provider": "openai", "ok": True, "status_code": 200,
                     "latency_ms": 123.4},
                    {"model": "gpt-4", "provider": "azure", "ok": False, "status_code": 503},
                ]},
            }
        },
    }
    check_all_text = (
        "Every model (also at /v1/health without the slash). Concurrent requests for the "
        "same selection share one run whatever their timeout; a run that finished less than "
        "[server] anonymous_min_interval ago answers anonymous callers (details marked "
        "cached); with background checks on, answered from the live state when fresh."
    )
    return {
        "/v1/health/": {
            "get": {
                "operationId": "healthAll",
                "summary": "Check every model",
                "description": check_all_text,
                "tags": ["health"],
                "security": _CHECK_SECURITY,
                "parameters": [*check_params, {"$ref": "#/components/parameters/format"}],
                "responses": _check_responses(
                    "HealthReport", "the report", health_json=True,
                    not_found=["EmptySelection"],
                ),
            }
        },
        "/v1/health/models": {
            "get": {
                "operationId": "healthModels",
                "summary": "Check every model, as a list",
                "description": "The same run and status code as /v1/health/, with models as a "
                "list of per-model objects (also at /v1/health/models/). JSON only.",
                "tags": ["health"],
                "security": _CHECK_SECURITY,
                "parameters": check_params,
                "responses": _check_responses(
                    "ModelListReport", "the report", health_json=False,
                    not_found=["EmptySelection"],
                ),
            }
        },
        "/v1/health/models/{name}": {
            "get": {
                "operationId": "healthModel",
                "summary": "Check one model",
                "description": "One model; timeout defaults to [checks] model_timeout.",
                "tags": ["health"],
                "security": _CHECK_SECURITY,
                "parameters": [name_param, *check_params,
                               {"$ref": "#/components/parameters/format"}],
                "responses": _check_responses(
                    "ModelReport", "the model's report", health_json=True,
                    not_found=["UnknownName", "EmptySelection", "NotFound"],
                ),
            }
        },
        "/v1/health/batch": {
            "post": {
                "operationId": "healthBatch",
                "summary": "Check a selection given as a JSON body",
                "description": "The /v1/health/ report for the selected subset, with its "
                "status codes, auth and run sharing ({} shares with GET /v1/health/). The "
                "format query parameter and the Accept header choose health+json as there.",
                "tags": ["health"],
                "security": _CHECK_SECURITY,
                "parameters": [{"$ref": "#/components/parameters/format"}],
                "requestBody": batch_body,
                "responses": {
                    **_check_responses(
                        "HealthReport", "the report", health_json=True,
                        not_found=["UnknownName", "EmptySelection"],
                    ),
                    "400": _json_response(
                        "A bad body (invalid_body), or a bad format parameter.",
                        _one_of("InvalidBody", "InvalidParameter"),
                    ),
                    "415": _json_response(
                        "The Content-Type is not application/json.",
                        _ref("UnsupportedMediaType"),
                    ),
                },
            }
        },
        "/v1/health/observations": {
            "post": {
                "operationId": "healthObservations",
                "summary": "Report the outcomes of a router's real calls (passive health)",
                "description": "Each observation is fed to the passive strategy as "
                "AdapterManager.observe() is: adapters with probe = \"passive\" are judged "
                "by this traffic while there is some. Needs [server] observe_token (not "
                "auth_token, which does not grant it); off (404) without one. At most [server] "
                "max_observation_requests_per_second requests per second (429).",
                "tags": ["health"],
                "security": [{"observeBearer": []}],
                "requestBody": observations_body,
                "responses": {
                    "200": _json_response(
                        "Taken (also when some observations were rejected).",
                        _ref("ObservationsAnswer"),
                    ),
                    "400": _json_response("The body is not JSON, not an object of a list of "
                                          "observations, or too slow.", _ref("InvalidBody")),
                    "401": _resp_ref("Unauthorized"),
                    "404": _json_response("Traffic reports are off.", _ref("NotEnabled")),
                    "413": _json_response("Too many observations, or too many bytes.",
                                          _ref("RequestTooLarge")),
                    "415": _json_response("The Content-Type is not application/json.",
                                          _ref("UnsupportedMediaType")),
                    "429": _json_response("Too many requests.", _ref("RateLimited"),
                                          "Retry-After"),
                    "500": _resp_ref("InternalError"),
                },
            }
        },
        "/v1/health/performance": {
            "get": {
                "operationId": "healthPerformance",
                "summary": "Measure concurrent vs sequential",
                "description": "Runs the concurrent strategy, then the sequential one, over "
                "every adapter (each bounded by timeout); always probes. At most one "
                "measurement is in flight: a caller arriving meanwhile gets its result, "
                "whatever timeout it asked for. Every check parameter is validated; only "
                "timeout is used. With auth on, needs the token.",
                "tags": ["health"],
                "security": _TOKEN_SECURITY,
                "parameters": check_params,
                "responses": {
                    "200": _json_response("The measurement (verdicts are in the body).",
                                          _ref("PerformanceReport")),
                    "400": _resp_ref("InvalidParameter"),
                    "401": _resp_ref("Unauthorized"),
                    "500": _resp_ref("InternalError"),
                    "503": _resp_ref("NotReady"),
                },
            }
        },
        "/v1/health/history": {
            "get": {
                "operationId": "healthHistory",
                "summary": "Recent results per adapter (background checks)",
                "description": "Every selected adapter's reported status (null before its "
                "first result) and its last 50 results, oldest first. With auth on, needs "
                "the token.",
                "tags": ["health"],
                "security": _TOKEN_SECURITY,
                "parameters": [
                    _query("model", _str(), "Only this model (a configured name).",
                           example="gpt-4"),
                    _query("provider", _str(), "Only this provider (a configured name).",
                           example="openai"),
                    _query("before", {"type": "number"},
                           "A page of the stored history ([storage]): results before this "
                           "unix time, newest first; a previous page's next_before. Without "
                           "storage a 400.", example=1796000000),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                           f"A page of the stored history: at most this many results per "
                           f"adapter (1..{MAX_LIMIT}; default {DEFAULT_PAGE} with before). "
                           "Without storage a 400.", example=100),
                ],
                "responses": {
                    "200": _json_response(
                        "The history; with before or limit, a page of the stored history.",
                        _one_of("History", "HistoryPage"),
                    ),
                    "400": _resp_ref("InvalidParameter"),
                    "401": _resp_ref("Unauthorized"),
                    "404": _json_response(
                        "Unknown model/provider, filters matching nothing, or background "
                        "checks off.",
                        _one_of("UnknownName", "EmptySelection", "BackgroundChecksOff"),
                    ),
                    "500": _resp_ref("InternalError"),
                    "503": _json_response(
                        "A page while starting or stopping, or a database that cannot be "
                        "read.",
                        _one_of("NotReady", "StorageFailing"),
                    ),
                }
            }
        },
        **_stored_history_operations(),
        **_public_status_operations(),
        "/v1/health/stream": {
            "get": {
                "operationId": "healthStream",
                "summary": "Live event stream (Server-Sent Events)",
                "description": "Never ends by itself (until the server stops). Starts with "
                "'retry: 2000' and a hello event; then one event per result (as soon as it "
                "exists, for live runs, background probes and refreshes), per transition of "
                "an adapter's reported level (background checks on) and per finished run. "
                "Each event has an id, an event name and one JSON data line (shapes: "
                "components.schemas.StreamEvents). A ': keep-alive' comment every 15 s of "
                "silence. A subscriber that falls 1000 events behind gets a last 'dropped' "
                "event. With auth on, needs the token. Streams are capped ([server] "
                "max_streams in all, max_streams_per_client per client address): past a cap "
                "the stream is refused at once, 503 too_many_streams or 429 "
                "too_many_streams_from_client, with Retry-After and Connection: close; a "
                "quarter of the server's connections is always left to the other routes.",
                "tags": ["health"],
                "security": _TOKEN_SECURITY,
                "responses": {
                    "200": {
                        "description": "The stream.",
                        "headers": _header_refs(),
                        "content": {
                            "text/event-stream": {
                                "schema": {"type": "string"},
                                "x-events": {
                                    kind: {"$ref": f"#/components/schemas/StreamEvents/"
                                           f"properties/{kind}"}
                                    for kind in ("hello", "result", "transition", "run",
                                                 "route", "dropped")
                                },
                                "example": 'retry: 2000\n\nid: 0\nevent: hello\n'
                                'data: {"background":false}\n\n',
                            }
                        },
                    },
                    "401": _resp_ref("Unauthorized"),
                    "429": _json_response(
                        "[server] max_streams_per_client streams are open from this client "
                        "address.",
                        _ref("TooManyStreamsFromClient"),
                        "Retry-After",
                    ),
                    "500": _resp_ref("InternalError"),
                    "503": _json_response(
                        "Starting or shutting down (not_ready), or [server] max_streams "
                        "streams are open (too_many_streams, with Retry-After).",
                        _one_of("NotReady", "TooManyStreams"),
                        "Retry-After",
                    ),
                },
            }
        },
        "/v1/route/{model}": {
            "get": {
                "operationId": "routeModel",
                "summary": "The deployments of a model a router should use now",
                "description": "Healthy deployments first, fastest first by recent latency, "
                "then degraded ones, each with a weight (healthy ones by inverse latency, "
                "degraded ones a fixed tenth together); unhealthy, timeout and unsupported ones "
                "excluded, unless fewer than [server] route_panic_threshold percent (50) are "
                "healthy: then every one is returned, evenly weighted, with panic true. From "
                "the live state (background checks), else one check shared with "
                "/v1/health/models/{name}. Always 200 (an empty set is still a set). With auth "
                "on, no token is needed; a wrong one is a 401.",
                "tags": ["health"],
                "security": _CHECK_SECURITY,
                "parameters": [
                    {**name_param, "name": "model",
                     "description": "The model name: everything after /route/, as on "
                     "/v1/health/models/{name}."},
                    {"$ref": "#/components/parameters/timeout"},
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "required": False,
                        "description": "Entity tags (RFC 9110), e.g. a previous answer's "
                        "ETag: a match (weak comparison, or *) is a 304. A malformed value is "
                        "ignored.",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _json_response("The set.", _ref("RoutableSet"), "ETag"),
                    "304": {"description": "Not modified: If-None-Match holds the ETag.",
                            "headers": _header_refs("ETag")},
                    "400": _resp_ref("InvalidParameter"),
                    "401": _resp_ref("Unauthorized"),
                    "404": _json_response("A model that is not configured.",
                                          _one_of("UnknownName", "NotFound")),
                    "500": _resp_ref("InternalError"),
                    "503": _resp_ref("NotReady"),
                },
            }
        },
        "/livez": {
            "get": {
                "operationId": "livez",
                "summary": "Liveness",
                "description": "No upstream calls; always fast; never needs a token.",
                "tags": ["probes"],
                "security": [{}],
                "responses": {
                    "200": _json_response("Alive.", _ref("Live")),
                    "500": _resp_ref("InternalError"),
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness",
                "description": "Config loaded and HTTP clients open; never probes upstream; "
                "never needs a token.",
                "tags": ["probes"],
                "security": [{}],
                "responses": {
                    "200": _json_response("Ready.", _ref("Ready")),
                    "500": _resp_ref("InternalError"),
                    "503": _json_response("Not ready (starting or stopping).",
                                          _ref("NotReadyStatus")),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "description": "The checker's counters, histograms and gauges (probe results, "
                "latencies, skipped probes, runs, fallbacks, adapter up/status, probes in "
                "flight, probe slots). The Prometheus text exposition format (text/plain; "
                "version=0.0.4 or 1.0.0, per prometheus_client), or OpenMetrics when the "
                "Accept header asks for application/openmetrics-text. Labels are config "
                "names and enums, never keys or error texts. With auth on, needs the token "
                "(per-adapter failure kinds and latencies are details).",
                "tags": ["probes"],
                "security": _TOKEN_SECURITY,
                "responses": {
                    "200": {
                        "description": "The exposition.",
                        "headers": _header_refs(),
                        "content": _static_content("text/plain", "application/openmetrics-text"),
                    },
                    "401": _resp_ref("Unauthorized"),
                    "500": _resp_ref("InternalError"),
                },
            }
        },
        "/": {
            "get": {
                "operationId": "dashboard",
                "summary": "The dashboard (HTML)",
                "description": "A page that reads the API and the stream like any client; "
                "served by the app itself (no CDN).",
                "tags": ["ui"],
                "security": [{}],
                "responses": {
                    "200": {"description": "The page.", "headers": _header_refs(),
                            "content": _static_content("text/html")},
                    "500": _resp_ref("InternalError"),
                },
            }
        },
        "/static/{name}": {
            "get": {
                "operationId": "staticFile",
                "summary": "A file of the dashboard or the docs page",
                "tags": ["ui"],
                "security": [{}],
                "parameters": [static_name],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "headers": _header_refs(),
                        "content": _static_content(
                            "text/html", "text/javascript", "text/css", "image/svg+xml"
                        ),
                    },
                    "404": _resp_ref("NotFound"),
                    "500": _resp_ref("InternalError"),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This OpenAPI 3.1 document",
                "tags": ["ui"],
                "security": [{}],
                "responses": {
                    "200": _json_response("The document.", _ref("OpenApiDocument")),
                    "500": _resp_ref("InternalError"),
                },
            }
        },
        "/docs": {
            "get": {
                "operationId": "docs",
                "summary": "This document, rendered (HTML)",
                "tags": ["ui"],
                "security": [{}],
                "responses": {
                    "200": {"description": "The page.", "headers": _header_refs(),
                            "content": _static_content("text/html")},
                    "500": _resp_ref("InternalError"),
                },
            }
        },
    }


def _stored_history_operations() -> dict[str, dict[str, Schema]]:
    """GET /v1/health/uptime and /v1/health/incidents: read from [storage]."""
    model = _query("model", _str(), "Only this model (a configured name; else a 404 "
                   "unknown_model with close names).", example="gpt-4")
    off = {
        "401": _resp_ref("Unauthorized"),
        "404": _json_response(
            "An unknown model, or storage off (or background checks, which it stores).",
            _one_of("UnknownName", "StorageOff"),
        ),
        "500": _resp_ref("InternalError"),
        "503": _json_response(
            "Starting or stopping, or a database that cannot be read.",
            _one_of("NotReady", "StorageFailing"),
        ),
    }
    return {
        "/v1/health/uptime": {
            "get": {
                "operationId": "healthUptime",
                "summary": "Uptime per model and per adapter over a window (storage)",
                "description": "Time-weighted: a verdict holds from its check until the "
                "adapter's next one (at most the hold limit: a longer gap, e.g. a restart, "
                "is not covered, and not downtime). A model is up while any of its providers "
                "is up. From the stored history; never probes. With auth on, needs the token.",
                "tags": ["health"],
                "security": _TOKEN_SECURITY,
                "parameters": [
                    _query("window", _enum(list(WINDOWS)),
                           f"How far back from now (default {DEFAULT_WINDOW}).", example="7d"),
                    model,
                ],
                "responses": {
                    "200": _json_response("The uptime.", _ref("UptimeReport")),
                    "400": _resp_ref("InvalidParameter"),
                    **off,
                },
            }
        },
        "/v1/health/incidents": {
            "get": {
                "operationId": "healthIncidents",
                "summary": "Incidents: when a model's adapters went down and came back (storage)",
                "description": "From the stored transitions, newest first. An incident starts "
                "when an adapter of the model reports down and ends when none of those that "
                "went down during it is down any more. Never probes. With auth on, needs the "
                "token.",
                "tags": ["health"],
                "security": _TOKEN_SECURITY,
                "parameters": [
                    _query("since", {"type": "number", "minimum": 0},
                           "Only incidents open since this unix time (not in the future): "
                           "still open, or ended at or after it.", example=1796000000),
                    model,
                    _query("status", _enum(list(STATUSES)), "Only open, or only resolved, "
                           "incidents."),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                           f"At most this many (1..{MAX_LIMIT}, default {DEFAULT_INCIDENTS}).",
                           example=20),
                ],
                "responses": {
                    "200": _json_response("The incidents.", _ref("Incidents")),
                    "400": _resp_ref("InvalidParameter"),
                    **off,
                },
            }
        },
    }


def _public_status_operations() -> dict[str, dict[str, Schema]]:
    """GET /status and /badge/{model}.svg: public, whatever [server] auth_token says."""
    vary = {"$ref": "#/components/headers/Vary"}
    badge_headers = {
        "Cache-Control": {
            "description": "A badge may be cached a minute (README badges are fetched "
            "through caches).",
            "schema": _const("max-age=60"),
        },
        "Vary": vary,
    }
    model: Schema = {
        "name": "model",
        "in": "path",
        "required": True,
        "description": "A model the status page shows ([status_page] models; every "
        "configured model by default): everything between /badge/ and the final .svg, "
        "percent-decoded, so it may contain '/' and ':'.",
        "schema": {"type": "string", "minLength": 1, "pattern": "^[^/]"},
        "examples": {"plain": {"value": "gpt-4"}, "with_colon": {"value": "llama3:latest"}},
    }
    svg = _static_content("image/svg+xml")
    return {
        "/status": {
            "get": {
                "operationId": "statusPage",
                "summary": "The public status page (HTML)",
                "description": "Rendered on the server (no script, no CDN): for each model "
                "[status_page] shows, its current status (from the background checks; "
                "unknown without them), its uptime over the last 30 days and one bar cell "
                "per UTC day over 90 days, then the incidents of the last [status_page] "
                "incident_days (start, duration, open or resolved, severity). No error "
                "texts, providers or URLs. Without [storage] it shows the current status "
                "and says history is off. Never probes; never needs a token.",
                "tags": ["ui"],
                "security": [{}],
                "responses": {
                    "200": {"description": "The page.", "headers": _header_refs(),
                            "content": _static_content("text/html")},
                    "404": _json_response("[status_page] enabled = false.", _ref("NotFound")),
                    "500": _resp_ref("InternalError"),
                },
            }
        },
        "/badge/{model}.svg": {
            "get": {
                "operationId": "statusBadge",
                "summary": "A model's status badge (SVG)",
                "description": "An SVG 1.1 badge: the model's name, then its status (up, "
                "degraded, down, unknown) and, with [storage], its uptime over the last 30 "
                "days, e.g. 'gpt-4 | up 99.95%'. Never probes; never needs a token.",
                "tags": ["ui"],
                "security": [{}],
                "parameters": [model],
                "responses": {
                    "200": {"description": "The badge.", "headers": badge_headers,
                            "content": svg},
                    "404": {
                        "description": "A model the page does not show (or the page is "
                        "off): an 'unknown' badge, so that an <img> still shows something. "
                        "A path that names no model at all (an empty one) is a JSON "
                        "not_found.",
                        "headers": badge_headers,
                        "content": {**svg, **_content(_ref("NotFound"))},
                    },
                    "500": _resp_ref("InternalError"),
                },
            }
        },
    }


def _with_head(paths: dict[str, dict[str, Schema]]) -> dict[str, dict[str, Schema]]:
    """Add the ``HEAD`` twin of every ``GET``: same parameters and codes, no body."""
    for item in paths.values():
        get = item.get("get")
        if get is None:
            continue
        head = copy.deepcopy(get)
        head["operationId"] = get["operationId"] + "Head"
        head["summary"] = get["summary"] + " (headers only)"
        head["description"] = "As GET, without the body."
        for code, response in head["responses"].items():
            if "content" in response:
                head["responses"][code] = {
                    "description": response["description"],
                    "headers": response.get("headers", {}),
                }
        item["head"] = head
    return paths


def openapi_spec(
    *, version: str = _package_version(), max_timeout: float = _DEFAULT_MAX_TIMEOUT
) -> dict[str, Any]:
    """The API's OpenAPI 3.1 document.

    ``version`` is ``info.version`` (the package's by default); ``max_timeout``
    is the server's ``[server] max_timeout``, the largest ``timeout`` accepted
    (pass ``config.server.max_timeout`` so the document states the server's
    real bound; 120, the default, otherwise).
    """
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "router-health",
            "version": version,
            "summary": "Concurrent, deadline-bounded health checks for AI router adapters.",
            "description": (
                "Every answer is JSON (errors included) except the dashboard, the docs page, "
                "static files, the event stream, the metrics, the status page and the "
                "badges. Check routes answer 200 "
                "when healthy or degraded and 503 when unhealthy. Unknown paths are a 404 "
                "not_found; a method a path does not take is a 405 method_not_allowed with "
                "an Allow header (components.responses.MethodNotAllowed). HEAD works "
                "wherever GET does. Every answer carries Cache-Control: no-store (a badge: "
                "max-age=60), "
                "X-Content-Type-Options: nosniff, Referrer-Policy: no-referrer, "
                "X-Frame-Options: DENY and a Content-Security-Policy (the dashboard and "
                "/docs: this origin's own files only; /status: its stylesheet and icon only; "
                "everything else: nothing at all).\n\n"
                "Auth is optional: with [server] auth_token_env (or auth_token) set, "
                "/v1/health/performance, /history, /uptime, /incidents, /stream and /metrics need 'Authorization: Bearer "
                "<token>' (401 otherwise); the check routes answer everyone but give details "
                "and fallback_reason only to token holders; a wrong token is a 401 "
                "everywhere but /livez, /readyz, /openapi.json, /docs, the static pages, "
                "/status and the badges (public: they read no token at all). "
                "Without a token "
                "configured, every caller is granted and the security requirements below "
                "do not apply.\n\n"
                "Query parameters: a parameter given twice or with an empty value is a 400 "
                "invalid_parameter; unknown parameters are ignored.\n\n"
                "Connections are capped ([server] max_connections; by default what the "
                "open-file limit leaves room for): past the cap the connection that has been "
                "idle longest is closed to make room; only when every connection is busy with "
                "a request does a new one get, on any path, a 503 too_many_connections "
                "(components.responses.TooManyConnections: Retry-After, Connection: close)."
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "tags": [
            {"name": "health", "description": "Health checks (they call the providers)."},
            {"name": "probes", "description": "Orchestrator probes and metrics (no upstream "
             "calls)."},
            {"name": "ui", "description": "Pages, static files and this document."},
        ],
        "paths": _with_head(_operations(max_timeout)),
        "components": {
            "schemas": _schemas(),
            "parameters": _parameters(max_timeout),
            "headers": _headers(),
            "responses": _responses(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "[server] auth_token_env / auth_token; only when configured.",
                },
                "observeBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "[server] observe_token_env / observe_token: only "
                    "POST /v1/health/observations takes it.",
                },
            },
        },
    }

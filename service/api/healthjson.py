"""Reports as ``application/health+json`` (IETF draft-inadarei-api-health-check-06).

The draft's document, built from the same reports as the JSON API::

    {"status": "warn", "version": "1", "releaseId": "0.1.0",
     "serviceId": "router-health", "description": "...",
     "notes": ["..."], "output": "1 of 3 adapters not healthy (1 timeout)",
     "checks": {"gpt-4:openai": [{"componentId": "gpt-4/openai",
                                  "componentType": "component",
                                  "observedValue": 283.5, "observedUnit": "ms",
                                  "status": "pass",
                                  "time": "2026-11-30T15:30:00.123Z"}], ...}}

Mapping:

* run / model status: healthy -> ``pass``, degraded -> ``warn``,
  unhealthy -> ``fail``; an adapter's: healthy -> ``pass``, degraded ->
  ``warn``, unhealthy and timeout -> ``fail``. HTTP: ``pass``/``warn`` 200,
  ``fail`` 503, as the JSON API.
* ``checks``: one key per adapter, ``"{model}:{provider}"``, each a
  one-element array (the draft's form for a single-node component). The
  draft forbids ``:`` inside either part, and model names may hold one
  (``llama3:latest``), so both parts are percent-encoded minimally: ``%``
  becomes ``%25`` and ``:`` becomes ``%3A``, nothing else. Every key thus has
  exactly one ``:``, names without ``%`` or ``:`` read as they are, and
  :func:`split_check_key` gives the names back (``"llama3%3Alatest:ollama"``
  -> ``("llama3:latest", "ollama")``). The raw names are in ``componentId``
  (``"{model}/{provider}"``).
* The measurement is the probe's latency: ``observedValue`` in
  ``observedUnit`` ``"ms"``, both left out when it is unknown (a probe that
  never started). ``componentType`` is ``"component"``: the draft keeps
  ``"system"`` for the host's own metrics (cpu, memory, uptime) and
  ``"datastore"`` for databases; a provider is a remote dependency.
* ``time`` is the result's ``checked_at`` in ISO 8601, UTC (``Z``), to the
  millisecond; ``output`` the result's (already redacted) error, only when
  the check is not ``pass``.
* ``details=False`` (``?details=false``, or a caller without the auth token):
  each check keeps ``componentId``, ``componentType`` and ``status`` only,
  as the JSON API keeps only the per-provider statuses; the run's
  ``fallback_reason`` is left out of ``notes``, as the JSON API leaves it out.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any, Final

from ..engine.report import (
    HealthReport,
    HealthStatus,
    ModelHealthReport,
    ModelReport,
    ProbeResult,
    ProbeStatus,
)

__all__ = [
    "FORMATS",
    "HEALTH_JSON",
    "check_key",
    "health_json",
    "http_status",
    "model_health_json",
    "split_check_key",
    "wants_health_json",
]

HEALTH_JSON: Final = "application/health+json"
#: ``?format=`` values, lower case. A ``+`` in a query string decodes to a
#: space, so ``?format=health+json`` arrives as ``"health json"``: both mean
#: the draft's format (``health%2Bjson`` arrives as ``"health+json"``).
FORMATS: Final = ("json", "health+json", "health json")
#: The draft's ``version``: the API's public version (the ``/v1/`` in the
#: paths); ``releaseId`` is the package's version.
API_VERSION: Final = "1"
SERVICE_ID: Final = "router-health"
_JSON: Final = "application/json"

_RUN_STATUS: Final = {
    HealthStatus.HEALTHY: "pass",
    HealthStatus.DEGRADED: "warn",
    HealthStatus.UNHEALTHY: "fail",
}
_PROBE_STATUS: Final = {
    ProbeStatus.HEALTHY: "pass",
    ProbeStatus.DEGRADED: "warn",
    ProbeStatus.UNHEALTHY: "fail",
    ProbeStatus.TIMEOUT: "fail",
    ProbeStatus.UNSUPPORTED: "warn",  # never checked: not a failure, not a pass either
}


def _release_id() -> str | None:
    try:
        return metadata.version("router-health")
    except metadata.PackageNotFoundError:  # running from a bare checkout
        return None


_RELEASE_ID: Final = _release_id()


# -- keys ------------------------------------------------------------------------------------


def _encode(name: str) -> str:
    return name.replace("%", "%25").replace(":", "%3A")


def _decode(part: str) -> str:
    return part.replace("%3A", ":").replace("%3a", ":").replace("%25", "%")


def check_key(model: str, provider: str) -> str:
    """``"{model}:{provider}"``, each part with ``%`` and ``:`` percent-encoded."""
    return f"{_encode(model)}:{_encode(provider)}"


def split_check_key(key: str) -> tuple[str, str]:
    """The (model, provider) of a :func:`check_key`; ValueError if ``key`` is not one."""
    parts = key.split(":")
    if len(parts) != 2:
        raise ValueError(f"a check key has exactly one ':', got {key!r}")
    return _decode(parts[0]), _decode(parts[1])


# -- documents -------------------------------------------------------------------------------


def _iso(timestamp: float) -> str:
    """``timestamp`` in ISO 8601 (UTC, ms); never raises.

    A time a datetime cannot show (``1e308``, ``inf``, years past 9999 or
    before 1) is clamped to the nearest one it can, and NaN is the epoch:
    a strange ``checked_at`` must cost a strange ``time``, never a 500.
    """
    try:
        moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    except (OverflowError, OSError, ValueError, TypeError):
        if not isinstance(timestamp, int | float) or math.isnan(timestamp):
            moment = dt.datetime.fromtimestamp(0, tz=dt.UTC)
        elif timestamp > 0:
            moment = dt.datetime.max.replace(tzinfo=dt.UTC)
        else:
            moment = dt.datetime.min.replace(tzinfo=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check(result: ProbeResult, *, details: bool) -> dict[str, Any]:
    status = _PROBE_STATUS[result.status]
    check: dict[str, Any] = {
        "componentId": f"{result.model}/{result.provider}",
        "componentType": "component",
    }
    if details and result.latency_ms is not None and math.isfinite(result.latency_ms):
        check["observedValue"] = round(result.latency_ms, 1)
        check["observedUnit"] = "ms"
    check["status"] = status
    if details:
        check["time"] = _iso(result.checked_at)
        if status != "pass" and result.error:
            check["output"] = result.error
    return check


def _checks(models: Iterable[ModelReport], *, details: bool) -> dict[str, list[dict[str, Any]]]:
    return {
        check_key(model.name, provider): [_check(result, details=details)]
        for model in models
        for provider, result in model.results.items()
    }


def _output(results: Iterable[ProbeResult], noun: str) -> str:
    """``"2 of 10 adapters not healthy (1 degraded, 1 timeout)"``."""
    values = list(results)
    counts: dict[str, int] = {}
    for result in values:
        if result.status is not ProbeStatus.HEALTHY:
            counts[result.status.value] = counts.get(result.status.value, 0) + 1
    bad = sum(counts.values())
    text = f"{bad} of {len(values)} {noun} not healthy"
    if counts:
        text += " (" + ", ".join(f"{n} {status}" for status, n in counts.items()) + ")"
    return text


def _notes(
    *,
    fallback_reason: str | None,
    extra: Mapping[str, Any],
    details: bool,
) -> list[str]:
    notes: list[str] = []
    if fallback_reason and details:
        notes.append(fallback_reason)
    source = extra.get("source")
    if source == "background":
        stale = extra.get("stale")
        if isinstance(stale, int) and not isinstance(stale, bool) and stale > 0:
            notes.append(f"served from background checks, {stale} stale (refreshing)")
        else:
            notes.append("served from background checks")
    elif source == "live":
        notes.append("checked live for this request")
    return notes


def _document(
    status: HealthStatus,
    description: str,
    models: Iterable[ModelReport],
    *,
    noun: str,
    fallback_reason: str | None,
    extra: Mapping[str, Any],
    details: bool,
) -> dict[str, Any]:
    model_list = list(models)
    draft_status = _RUN_STATUS[status]
    doc: dict[str, Any] = {"status": draft_status, "version": API_VERSION}
    if _RELEASE_ID is not None:
        doc["releaseId"] = _RELEASE_ID
    doc["serviceId"] = SERVICE_ID
    doc["description"] = description
    notes = _notes(fallback_reason=fallback_reason, extra=extra, details=details)
    if notes:
        doc["notes"] = notes
    if draft_status != "pass":
        doc["output"] = _output((r for m in model_list for r in m.results.values()), noun)
    doc["checks"] = _checks(model_list, details=details)
    return doc


def health_json(report: HealthReport, *, details: bool = True) -> dict[str, Any]:
    """A run (``GET /v1/health/``, ``/models``, the batch) as the draft's document."""
    total = report.total_models
    return _document(
        report.status,
        f"router-health: {report.healthy_models} of {total} model(s) healthy "
        "across their providers",
        report.models.values(),
        noun="adapters",
        fallback_reason=report.fallback_reason,
        extra=report.extra,
        details=details,
    )


def model_health_json(report: ModelHealthReport, *, details: bool = True) -> dict[str, Any]:
    """One model (``GET /v1/health/models/{name}``) as the draft's document."""
    model = report.model
    return _document(
        report.status,
        f"router-health: model {model.name!r}, {model.healthy_providers} of "
        f"{model.total_providers} provider(s) healthy",
        [model],
        noun="providers",
        fallback_reason=report.fallback_reason,
        extra={},
        details=details,
    )


def http_status(report: HealthReport | ModelHealthReport) -> int:
    """200 for ``pass``/``warn``, 503 for ``fail``: the JSON API's codes."""
    return 503 if report.status is HealthStatus.UNHEALTHY else 200


# -- negotiation -----------------------------------------------------------------------------


_QVALUE: Final = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")


def _ranges(accept: str) -> list[tuple[str, str, float]]:
    """(type, subtype, q) of each well-formed media range (RFC 9110); others are skipped."""
    ranges: list[tuple[str, str, float]] = []
    for item in accept.split(","):
        media, *params = item.split(";")
        kind, slash, sub = media.strip().lower().partition("/")
        if not (slash and _TOKEN.fullmatch(kind) and _TOKEN.fullmatch(sub)):
            continue
        if kind == "*" and sub != "*":
            continue
        q: float | None = 1.0
        for param in params:
            name, eq, value = param.partition("=")
            if eq and name.strip().lower() == "q":
                value = value.strip()
                q = float(value) if _QVALUE.fullmatch(value) else None
                break  # parameters after q are accept-extensions
        if q is not None:
            ranges.append((kind, sub, q))
    return ranges


def _quality(ranges: list[tuple[str, str, float]], media_type: str) -> tuple[float, int]:
    """``media_type``'s q from the most specific matching range, and that specificity.

    Specificity: 2 exact, 1 ``type/*``, 0 ``*/*``, -1 no match (q 0).
    """
    kind, _, sub = media_type.partition("/")
    best, level = 0.0, -1
    for r_kind, r_sub, q in ranges:
        if (r_kind, r_sub) == (kind, sub):
            rank = 2
        elif r_kind == kind and r_sub == "*":
            rank = 1
        elif (r_kind, r_sub) == ("*", "*"):
            rank = 0
        else:
            continue
        if rank > level:
            best, level = q, rank
        elif rank == level:
            best = max(best, q)
    return best, level


def wants_health_json(accept: str | None, format_param: str | None) -> bool:
    """Whether to answer ``application/health+json`` rather than the JSON API's JSON.

    ``format_param`` (``?format=``), when given, decides: ``json`` or
    ``health+json`` (any case; ``health json``, the ``+`` decoded as a query
    string's space, too); anything else is a ValueError for a 400.
    Otherwise the Accept header: true when ``application/health+json`` is
    named explicitly, with q > 0, and no type we serve has a higher q
    (``application/json`` via an exact or wildcard range). A wildcard alone
    (``*/*``, ``application/*``) keeps plain JSON; ties between the two go to
    health+json, which the client named. Malformed headers and ranges never
    raise: they are ignored.
    """
    if format_param is not None:
        value = format_param.lower()
        if value not in FORMATS:
            raise ValueError(
                f"format must be 'json' or 'health+json' (as ?format=health%2Bjson or "
                f"?format=health+json), got {format_param!r}"
            )
        return value != "json"
    if not accept:
        return False
    ranges = _ranges(accept)
    health_q, health_level = _quality(ranges, HEALTH_JSON)
    json_q, _ = _quality(ranges, _JSON)
    return health_level == 2 and health_q > 0 and health_q >= json_q

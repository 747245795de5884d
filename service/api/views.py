"""Reports as JSON answers: the body shapes, their status codes, the performance body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quart import Response, jsonify
from quart.json.provider import DefaultJSONProvider

from adapters.base import FailureKind

from ..engine.report import HealthReport, HealthStatus, ProbeResult
from ..live.cluster import ClusterCoordinator
from ..live.state import percentile
from .auth import Access
from .healthjson import HEALTH_JSON

__all__ = [
    "InsertionOrderJSONProvider",
    "health_json_response",
    "json_response",
    "models_view",
    "performance_body",
    "shape",
    "status_code",
]


class InsertionOrderJSONProvider(DefaultJSONProvider):
    # Keep the v1 API's key order (status first) instead of sorting keys.
    sort_keys = False


def json_response(body: Mapping[str, Any], status: int = 200) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def health_json_response(body: Mapping[str, Any], status: int) -> Response:
    """``body`` as ``application/health+json`` (the IETF health check format)."""
    response = json_response(body, status)
    response.mimetype = HEALTH_JSON
    return response


def status_code(status: HealthStatus) -> int:
    # Load balancers and Kubernetes read the code: degraded still serves.
    return 503 if status is HealthStatus.UNHEALTHY else 200


def shape(
    data: dict[str, Any], access: Access, cluster: ClusterCoordinator | None
) -> dict[str, Any]:
    """A check route's body as ``access`` may see it, with the cluster's status if any."""
    if access is not Access.GRANTED:
        data.pop("fallback_reason", None)  # internal detail, like ``details``
    if cluster is not None:
        # Say whether these results are shared or this instance's own (Redis down).
        status = cluster.status()
        data["cluster"] = status if access is Access.GRANTED else {"status": status["status"]}
    return data


def models_view(report: HealthReport, *, details: bool) -> dict[str, Any]:
    """The ``/v1/health/models`` body: the report with its models as a list."""
    data = report.to_dict(details=False)
    data["models"] = [
        {"model": name, **model.to_dict(), **({"details": model.details()} if details else {})}
        for name, model in report.models.items()
    ]
    return data


# -- the performance measurement -----------------------------------------------------


def _verdict(result: ProbeResult) -> str:
    return "not_started" if result.failure is FailureKind.NOT_STARTED else result.status.value


def _agreement(concurrent: HealthReport, sequential: HealthReport) -> dict[str, Any]:
    mismatches: list[dict[str, str]] = []
    for name, model in concurrent.models.items():
        for provider, result in model.results.items():
            other = sequential.models[name].results[provider]
            if _verdict(result) != _verdict(other):
                mismatches.append(
                    {
                        "model": name,
                        "provider": provider,
                        "concurrent": _verdict(result),
                        "sequential": _verdict(other),
                    }
                )
    return {"agreed": not mismatches, "mismatches": mismatches}


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"total": 0.0, "p50": None, "p95": None, "max": None}
    return {
        "total": round(sum(values), 1),
        "p50": round(percentile(values, 50), 1),
        "p95": round(percentile(values, 95), 1),
        "max": round(max(values), 1),
    }


def _time_breakdown(report: HealthReport) -> dict[str, Any]:
    """Per probe sent: time queued for a slot vs time the provider took (ms)."""
    probed = [r for r in report.results() if r.sent]
    queued = [r.queued_ms or 0.0 for r in probed]
    took = [(r.latency_ms or 0.0) - q for r, q in zip(probed, queued, strict=True)]
    return {"probes": len(probed), "queue_wait_ms": _spread(queued), "execution_ms": _spread(took)}


def performance_body(
    concurrent: HealthReport,
    sequential: HealthReport,
    *,
    timestamp: float,
    timeout: float,
    limits: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``/v1/health/performance`` body: both runs compared, verdict by verdict."""
    c_time, s_time = concurrent.execution_time, sequential.execution_time

    def reached(report: HealthReport) -> int:
        return sum(_verdict(r) != "not_started" for r in report.results())

    return {
        "timestamp": round(timestamp, 3),
        "performance_metrics": {
            "concurrent_time": round(c_time, 3),
            "sequential_time": round(s_time, 3),
            "speedup": round(s_time / c_time, 2) if c_time > 0 else None,
            "improvement_percent": round((1 - c_time / s_time) * 100, 1) if s_time > 0 else None,
            "total_models": concurrent.total_models,
            "total_adapters": len(concurrent.results()),
        },
        "concurrent_result_count": reached(concurrent),
        "sequential_result_count": reached(sequential),
        "timeout": timeout,
        "concurrent_status": concurrent.status.value,
        "sequential_status": sequential.status.value,
        "agreement": _agreement(concurrent, sequential),
        "time_breakdown": {
            "concurrent": _time_breakdown(concurrent),
            "sequential": _time_breakdown(sequential),
        },
        "limits": dict(limits or {}),
    }

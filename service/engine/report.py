"""Results and reports, and their JSON.

``HealthReport.to_dict()`` is exactly the v1 ``GET /v1/health/`` shape;
per-provider details (latency, HTTP status, error, when, fallback) live under
a separate ``details`` key so clients written against the v1 API see no change.
A detail gains ``retry_after`` (a 429/503's Retry-After), ``queued_ms`` (time
spent waiting for a probe slot, while a cap is configured) and ``cached`` /
``age_s`` (served from ``min_interval`` instead of probing) only when they
apply.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.base import FailureKind

__all__ = [
    "HealthReport",
    "HealthStatus",
    "ModelHealthReport",
    "ModelReport",
    "ProbeResult",
    "ProbeStatus",
    "overall_status",
]


class ProbeStatus(enum.StrEnum):
    """One adapter's verdict."""

    HEALTHY = "healthy"
    #: Still serving, but impaired: a failure configured as transient (a 429,
    #: its own timeout; ``[checks] transient``) or, in the live state, a
    #: latency above its SLO. Routers may keep using it; it is not healthy.
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"  # answered, but not with a healthy answer (or could not connect)
    TIMEOUT = "timeout"  # no verdict before its deadline (or never started: see ``failure``)
    #: Never checked: a deployment router-health has no adapter for (``type =
    #: "unsupported"``, failure ``unsupported``). Nothing is known against it,
    #: so it is usable (a router keeps it) and left out of its model's status.
    UNSUPPORTED = "unsupported"

    @property
    def usable(self) -> bool:
        """Healthy, degraded, or unsupported (never checked): the router may keep using it."""
        return self in (ProbeStatus.HEALTHY, ProbeStatus.DEGRADED, ProbeStatus.UNSUPPORTED)


class HealthStatus(enum.StrEnum):
    """A model's or a whole run's verdict."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


def _round(value: float | None, digits: int = 3) -> float | None:
    # NaN and infinities are not JSON: a result built by hand with one (the
    # checker never makes them) shows null rather than breaking every answer.
    return None if value is None or not math.isfinite(value) else round(value, digits)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One adapter's probe: verdict, timing and why."""

    model: str
    provider: str
    adapter: str  # the adapter's class-like name, as in the log lines
    status: ProbeStatus
    latency_ms: float | None  # None when the probe never started
    checked_at: float  # unix time the probe finished (or was given up)
    http_status: int | None = None
    error: str | None = None  # short and already redacted
    failure: FailureKind | None = None
    retry_after: float | None = None
    fallback: bool = False  # came from the sequential fallback pass
    #: Seconds since the probe behind this result ran, when it was served
    #: from the recent results (``min_interval``) instead of probing; else None.
    cached_age: float | None = None
    #: Time spent waiting for a probe slot (``max_concurrent*`` caps), when
    #: any cap is configured; included in ``latency_ms``.
    queued_ms: float | None = None
    #: Where the verdict came from when not from a probe just sent:
    #: ``"passive"`` (the router's own traffic) or ``"retry_after"`` (a
    #: previous 429's Retry-After still holds, so nothing was sent).
    source: str | None = None
    #: For ``"passive"`` verdicts: how many reported requests they summarise.
    samples: int | None = None
    #: Served from the live state past its ``max_age`` while a refresh runs
    #: (stale-while-revalidate).
    stale: bool = False
    #: Tokens the probe was billed for (paid probes whose answer has ``usage``).
    tokens: int | None = None
    #: Model ids a wildcard entry's list probe saw (see ``ProbeOutcome.listed``).
    listed_models: tuple[str, ...] | None = None
    #: The adapter's probe is paid, but ``[checks] max_probe_tokens_per_hour``
    #: was reached: it sent its free probe instead or, having none, was not
    #: probed (its last verdict, cached, or not_started; service.engine.cost).
    budget_fallback: bool = False

    def __post_init__(self) -> None:
        # The verdict of an unsupported deployment follows from its failure, wherever
        # the result is built (the checker's failed outcome, a peer's message).
        if self.failure is FailureKind.UNSUPPORTED and self.status is not ProbeStatus.UNSUPPORTED:
            object.__setattr__(self, "status", ProbeStatus.UNSUPPORTED)

    @classmethod
    def not_started(
        cls, model: str, provider: str, adapter: str, *, fallback: bool = False
    ) -> ProbeResult:
        """The verdict of an adapter whose turn never came before the budget ran out."""
        return cls(
            model=model,
            provider=provider,
            adapter=adapter,
            status=ProbeStatus.TIMEOUT,
            latency_ms=None,
            checked_at=time.time(),
            error="not started: the budget ran out before this adapter's turn",
            failure=FailureKind.NOT_STARTED,
            fallback=fallback,
        )

    @property
    def cached(self) -> bool:
        return self.cached_age is not None

    @property
    def healthy(self) -> bool:
        return self.status is ProbeStatus.HEALTHY

    @property
    def usable(self) -> bool:
        return self.status.usable

    @property
    def sent(self) -> bool:
        """A probe went out for this result (not served, not derived, not left queued)."""
        if self.cached_age is not None or self.source is not None or self.latency_ms is None:
            return False
        if self.failure is FailureKind.UNSUPPORTED:
            return False  # never probed: nothing went out
        # Queued for its whole life: it never got a probe slot.
        return self.queued_ms is None or self.queued_ms < self.latency_ms

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status.value,
            "adapter": self.adapter,
            "latency_ms": _round(self.latency_ms, 1),
            "http_status": self.http_status,
            "error": self.error,
            "failure": self.failure.value if self.failure else None,
            "checked_at": _round(self.checked_at),
            "fallback": self.fallback,
        }
        if self.retry_after is not None:
            data["retry_after"] = self.retry_after
        if self.queued_ms is not None:
            data["queued_ms"] = _round(self.queued_ms, 1)
        if self.cached_age is not None:
            data["cached"] = True
            data["age_s"] = _round(self.cached_age)
        if self.source is not None:
            data["source"] = self.source
        if self.samples is not None:
            data["samples"] = self.samples
        if self.stale:
            data["stale"] = True
        if self.tokens is not None:
            data["tokens"] = self.tokens
        if self.listed_models is not None:
            data["listed_models"] = list(self.listed_models)
        if self.budget_fallback:
            data["budget_fallback"] = True
        return data


def model_status(results: Iterable[ProbeResult]) -> HealthStatus:
    """healthy: every provider healthy; degraded: some usable (healthy or degraded); unhealthy: none.

    Unsupported providers (never checked) are left out: they neither make a
    model unhealthy nor vouch for it. A model with only those is degraded
    (serving, as far as anyone knows, but unverified); one with no providers
    is unhealthy.
    """
    statuses = [r.status for r in results]
    checked = [s for s in statuses if s is not ProbeStatus.UNSUPPORTED]
    if not checked:
        return HealthStatus.DEGRADED if statuses else HealthStatus.UNHEALTHY
    if all(s is ProbeStatus.HEALTHY for s in checked):
        return HealthStatus.HEALTHY
    if any(s.usable for s in checked):
        return HealthStatus.DEGRADED
    return HealthStatus.UNHEALTHY


def overall_status(statuses: Iterable[HealthStatus]) -> HealthStatus:
    """healthy: every model healthy; unhealthy: every model unhealthy; else degraded.

    A router with at least one model still served by some provider is
    degraded, not down; an empty selection is trivially healthy.
    """
    values = list(statuses)
    if all(s is HealthStatus.HEALTHY for s in values):
        return HealthStatus.HEALTHY
    if all(s is HealthStatus.UNHEALTHY for s in values):
        return HealthStatus.UNHEALTHY
    return HealthStatus.DEGRADED


@dataclass(frozen=True, slots=True)
class ModelReport:
    """One model across its providers (results keyed by provider name, config order)."""

    name: str
    results: Mapping[str, ProbeResult]

    @property
    def status(self) -> HealthStatus:
        return model_status(self.results.values())

    @property
    def checked(self) -> bool:
        """Some provider of this model can be checked (not every one is ``unsupported``)."""
        return any(r.status is not ProbeStatus.UNSUPPORTED for r in self.results.values())

    @property
    def healthy_providers(self) -> int:
        return sum(r.healthy for r in self.results.values())

    @property
    def total_providers(self) -> int:
        return len(self.results)

    def to_dict(self) -> dict[str, Any]:
        """The v1 per-model object."""
        return {
            "status": self.status.value,
            "providers": {name: r.status.value for name, r in self.results.items()},
            "healthy_providers": self.healthy_providers,
            "total_providers": self.total_providers,
        }

    def details(self) -> dict[str, Any]:
        return {name: r.to_dict() for name, r in self.results.items()}


@dataclass(frozen=True, slots=True)
class HealthReport:
    """A whole run: every requested model, and how the run went."""

    models: Mapping[str, ModelReport]
    timestamp: float  # unix time the run started
    execution_time: float  # seconds
    concurrent: bool
    timeout: float
    fallback: bool = False  # some results came from the sequential fallback
    fallback_reason: str | None = None
    run_id: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> HealthStatus:
        # A model nothing can check (an imported deployment of a provider we
        # have no adapter for) says nothing about the fleet: left out, or one
        # such entry would keep the whole fleet degraded for good. A fleet of
        # nothing but those is degraded: nobody vouches for it.
        checked = [m.status for m in self.models.values() if m.checked]
        if not checked and self.models:
            return HealthStatus.DEGRADED
        return overall_status(checked)

    @property
    def unchecked_models(self) -> int:
        """Models whose providers are all ``unsupported`` (left out of ``status``)."""
        return sum(not m.checked for m in self.models.values())

    @property
    def healthy_models(self) -> int:
        return sum(m.status is HealthStatus.HEALTHY for m in self.models.values())

    @property
    def total_models(self) -> int:
        return len(self.models)

    def results(self) -> list[ProbeResult]:
        return [r for m in self.models.values() for r in m.results.values()]

    def model_report(self, name: str) -> ModelHealthReport:
        """Model ``name`` of this run, as if it had been checked on its own."""
        return ModelHealthReport(
            model=self.models[name],
            timestamp=self.timestamp,
            execution_time=self.execution_time,
            concurrent=self.concurrent,
            timeout=self.timeout,
            fallback=self.fallback,
            fallback_reason=self.fallback_reason,
            run_id=self.run_id,
        )

    def to_dict(self, *, details: bool = True) -> dict[str, Any]:
        """The v1 shape, then ``fallback`` and (optionally) per-provider ``details``."""
        data: dict[str, Any] = {
            "status": self.status.value,
            "timestamp": _round(self.timestamp),
            "models": {name: m.to_dict() for name, m in self.models.items()},
            "healthy_models": self.healthy_models,
            "total_models": self.total_models,
            "execution_time": _round(self.execution_time),
            "concurrent": self.concurrent,
            "timeout": self.timeout,
            "fallback": self.fallback,
        }
        if self.fallback_reason:
            data["fallback_reason"] = self.fallback_reason
        if details:
            data["details"] = {name: m.details() for name, m in self.models.items()}
        data.update(self.extra)
        return data


@dataclass(frozen=True, slots=True)
class ModelHealthReport:
    """One model checked on its own (``check_model_health_with_timeout``)."""

    model: ModelReport
    timestamp: float
    execution_time: float
    concurrent: bool
    timeout: float
    fallback: bool = False
    fallback_reason: str | None = None
    run_id: str = ""

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def status(self) -> HealthStatus:
        return self.model.status

    @property
    def results(self) -> Mapping[str, ProbeResult]:
        return self.model.results

    def to_dict(self, *, details: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {"model": self.model.name, **self.model.to_dict()}
        data.update(
            timestamp=_round(self.timestamp),
            execution_time=_round(self.execution_time),
            concurrent=self.concurrent,
            timeout=self.timeout,
            fallback=self.fallback,
        )
        if self.fallback_reason:
            data["fallback_reason"] = self.fallback_reason
        if details:
            data["details"] = self.model.details()
        return data

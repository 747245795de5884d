"""Passive health: verdicts from the router's own traffic, at no probe cost.

An adapter whose provider entry says ``probe = "passive"`` is judged by the
requests the router really sends it. The router reports each one through the
embedding API (:meth:`service.engine.manager.AdapterManager.observe`, or
:meth:`service.engine.checker.HealthChecker.observe`): did it succeed, how long it
took, the HTTP status. The rule for combining traffic and probes:

* **Traffic when there is some.** While at least one request was reported in
  the last ``passive_window`` seconds, a check of that adapter sends nothing:
  its verdict is derived from those requests (``"source": "passive"``,
  ``"samples"``: how many). It is ``healthy`` while the share of failed
  requests is at most ``passive_error_rate``; otherwise the most recent
  failure says why (``unhealthy``, or ``timeout`` when that failure was a
  timeout). ``latency_ms`` is the median of the successful requests'.
* **A probe when quiet.** With no traffic in the window the adapter is probed
  like any other, with its ``passive_fallback`` request (``models`` by
  default, the free list; or ``completion``). So an idle provider is still
  known, and a busy one costs nothing.

A verdict with no new report since the previous one is a repeat: it is
marked ``cached`` (with the age of the newest report), so the live state
counts each burst of traffic once, not once per check. Derived verdicts go
through the same rules as probed ones afterwards
(``transient`` failure kinds, hysteresis, history, transitions). Reports for
adapters that are not passive are ignored (and :meth:`observe` says so by
returning False), so a router may report all its traffic without filtering.
At most :data:`MAX_OBSERVATIONS` requests are kept per adapter.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypedDict

import trio

from adapters.base import Adapter, FailureKind, redact

from ..config.values import check_seconds, finite
from .report import ProbeResult, ProbeStatus

__all__ = ["MAX_OBSERVATIONS", "Observation", "PassiveHealth", "PassivePolicy", "ReportedRequest"]

#: Requests remembered per passive adapter (the newest win).
MAX_OBSERVATIONS: Final = 1000
_MAX_ERROR_CHARS: Final = 200

Key = tuple[str, str]


class ReportedRequest(TypedDict, total=False):
    """What a router may say about one request besides whether it succeeded."""

    latency_ms: float | None
    http_status: int | None
    failure: FailureKind | str | None  # a FailureKind or its value, e.g. "timeout"
    error: str | None  # redacted of every known key before it is kept


@dataclass(frozen=True, slots=True)
class PassivePolicy:
    window: float = 60.0  # seconds of traffic that count
    max_error_rate: float = 0.5  # failed share above which the adapter is unhealthy

    def __post_init__(self) -> None:
        for name in ("window", "max_error_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"passive {name} must be a number, got {value!r}")
        check_seconds("passive window", self.window)
        if not 0 <= self.max_error_rate <= 1:
            raise ValueError(f"passive error rate must be in [0, 1], got {self.max_error_rate!r}")


@dataclass(frozen=True, slots=True)
class Observation:
    """One request the router sent through an adapter."""

    at: float  # trio clock
    wall: float  # unix time
    ok: bool
    latency_ms: float | None
    http_status: int | None
    failure: FailureKind | None
    error: str | None


def classify(ok: bool, http_status: int | None, failure: FailureKind | None) -> FailureKind | None:
    """The failure kind of a reported request (None when it succeeded)."""
    if ok:
        return None
    if failure is not None:
        return failure
    if http_status == 429:
        return FailureKind.RATE_LIMITED
    if http_status in (401, 403):
        return FailureKind.AUTH
    if http_status is not None:
        return FailureKind.HTTP_STATUS
    return FailureKind.CONNECT


class PassiveHealth:
    """Reported traffic per passive adapter, and the verdicts derived from it."""

    def __init__(self) -> None:
        self._policies: dict[Key, tuple[Adapter, PassivePolicy]] = {}
        self._traffic: dict[Key, deque[Observation]] = {}
        # Reports taken per adapter, and how many the last fresh verdict saw:
        # a verdict with nothing new since is a repeat, marked cached, so the
        # live state does not count one burst of traffic again and again.
        self._reported: dict[Key, int] = {}
        self._judged: dict[Key, int] = {}

    def __repr__(self) -> str:
        return f"PassiveHealth(adapters={len(self._policies)})"

    def watch(self, model: str, adapter: Adapter, policy: PassivePolicy | None = None) -> None:
        """Judge ``adapter`` of ``model`` by reported traffic from now on."""
        key = (model, adapter.provider)
        self._policies[key] = (adapter, policy or PassivePolicy())
        self._traffic.setdefault(key, deque(maxlen=MAX_OBSERVATIONS))

    def watches(self, model: str, provider: str) -> bool:
        return (model, provider) in self._policies

    def observe(
        self,
        model: str,
        provider: str,
        *,
        ok: bool,
        latency_ms: float | None = None,
        http_status: int | None = None,
        failure: FailureKind | str | None = None,
        error: str | None = None,
        secrets: Sequence[Any] = (),
    ) -> bool:
        """Record one request; False if that adapter is not passive (ignored).

        Raises ``ValueError`` for values that cannot describe a request.
        """
        if not isinstance(ok, bool):
            raise ValueError(f"ok must be true or false, got {ok!r}")
        if latency_ms is not None and (
            isinstance(latency_ms, bool)
            or not isinstance(latency_ms, int | float)
            or not finite(latency_ms)
            or latency_ms < 0
        ):
            raise ValueError(f"latency_ms must be a finite number >= 0, got {latency_ms!r}")
        if http_status is not None and (
            isinstance(http_status, bool)
            or not isinstance(http_status, int)
            or not 100 <= http_status <= 599
        ):
            raise ValueError(f"http_status must be an HTTP status 100..599, got {http_status!r}")
        kind: FailureKind | None = None
        if failure is not None:
            try:
                kind = FailureKind(failure)
            except ValueError:
                accepted = ", ".join(k.value for k in FailureKind)
                raise ValueError(f"unknown failure {failure!r}; expected one of {accepted}") from None
        if ok and kind is not None:
            raise ValueError(f"a request with ok=True has no failure, got failure={failure!r}")
        if error is not None and not isinstance(error, str):
            raise ValueError(f"error must be a string, got {type(error).__name__}")
        traffic = self._traffic.get((model, provider))
        if traffic is None or (model, provider) not in self._policies:
            return False
        text = None if error is None else redact(error, secrets)[:_MAX_ERROR_CHARS]
        self._reported[(model, provider)] = self._reported.get((model, provider), 0) + 1
        traffic.append(
            Observation(
                at=trio.current_time(),
                wall=time.time(),
                ok=ok,
                latency_ms=None if latency_ms is None else float(latency_ms),
                http_status=http_status,
                failure=classify(ok, http_status, kind),
                error=text,
            )
        )
        return True

    def verdict(self, model: str, adapter: Adapter) -> ProbeResult | None:
        """The verdict from the last window's traffic; None (probe instead) if there was none."""
        key = (model, adapter.provider)
        watched = self._policies.get(key)
        if watched is None or watched[0] is not adapter:
            return None
        policy = watched[1]
        traffic = self._traffic[key]
        horizon = trio.current_time() - policy.window
        while traffic and traffic[0].at < horizon:
            traffic.popleft()
        if not traffic:
            return None
        reported = self._reported.get(key, 0)
        repeat = self._judged.get(key) == reported
        self._judged[key] = reported
        failed = [o for o in traffic if not o.ok]
        latencies = [o.latency_ms for o in traffic if o.ok and o.latency_ms is not None]
        latest = traffic[-1]
        base: dict[str, Any] = dict(
            model=model,
            provider=adapter.provider,
            adapter=adapter.adapter_name,
            latency_ms=statistics.median(latencies) if latencies else None,
            checked_at=latest.wall,
            source="passive",
            samples=len(traffic),
            # Nothing reported since the last verdict: the same verdict again.
            cached_age=max(trio.current_time() - latest.at, 0.0) if repeat else None,
        )
        if len(failed) <= policy.max_error_rate * len(traffic):
            return ProbeResult(status=ProbeStatus.HEALTHY, **base)
        last = failed[-1]
        summary = (
            f"{len(failed)} of {len(traffic)} reported requests failed in the last "
            f"{policy.window:g} s"
        )
        return ProbeResult(
            status=ProbeStatus.TIMEOUT if last.failure is FailureKind.TIMEOUT else ProbeStatus.UNHEALTHY,
            http_status=last.http_status,
            failure=last.failure,
            error=f"{summary}; last: {last.error}" if last.error else summary,
            **base,
        )

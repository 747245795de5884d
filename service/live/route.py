"""Routable sets: which of a model's deployments a router should send traffic to now.

A model's routable set (``GET /v1/route/{model}``, and the stream's ``route``
events) is built from each deployment's reported status and recent latency:

* **order**: healthy deployments first, fastest first by recent latency (an
  EWMA over the clean answers in the state's history, see
  :func:`recent_latency`) — precisely, by their inverse-latency share in
  hundredths, so near-equal latencies keep config order instead of swapping
  on noise — then degraded ones in config order. ``unhealthy``, ``timeout``
  and ``unsupported`` ones are excluded;
* **panic**: when fewer than ``panic_threshold`` percent of the model's
  deployments are healthy (``[server] route_panic_threshold``; 0 = never),
  every deployment is returned — healthy, degraded, then unsupported, then
  the down ones — so the checker can never empty a router's pool by itself
  (Envoy's panic threshold);
* **weights** (:func:`weights`): shares of traffic, in hundredths adding up
  to exactly 1. Healthy deployments share in inverse proportion to their
  latency (one without a known latency counts as the slowest known); degraded
  ones together get a fixed :data:`DEGRADED_SHARE` (split evenly) when a
  healthy one is there, everything otherwise. In panic the checker is not
  trusted, so every returned deployment weighs the same;
* **ETag**: a hash of the model, panic, and each returned deployment's
  provider, status and weight, in order: what a router acts on. Latency and
  age are left out, so they move freely without changing it.

:class:`RouteEvents` publishes a model's set to the live stream whenever its
order or panic changes (not on every result).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import trio

from adapters.base import Adapter

from ..engine.report import ModelReport, ProbeResult, ProbeStatus
from .state import HealthState, HistoryEntry

__all__ = [
    "DEGRADED_SHARE",
    "EWMA_WEIGHT",
    "Candidate",
    "Deployment",
    "Excluded",
    "RoutableSet",
    "RouteEvents",
    "RouteHub",
    "etag_matches",
    "recent_latency",
    "routable_set",
    "set_from_report",
    "set_from_state",
    "weights",
]

#: How much each newer answer counts in the latency EWMA: the last five make up 83%.
EWMA_WEIGHT: Final = 0.3
#: What degraded deployments get together while a healthy one is there.
DEGRADED_SHARE: Final = 0.1
#: Latencies below this count as this much (a 0 ms answer would take every share).
_LATENCY_FLOOR_MS: Final = 1.0
#: Weights are whole hundredths: steady enough for an ETag, fine enough to route by.
_UNITS: Final = 100
#: Where the rest go in panic: never checked before known to be down.
_REST_ORDER: Final = {ProbeStatus.UNSUPPORTED: 0, ProbeStatus.UNHEALTHY: 1, ProbeStatus.TIMEOUT: 1}


@dataclass(frozen=True, slots=True)
class Candidate:
    """One deployment of a model, as the set is built from."""

    provider: str
    status: ProbeStatus  # reported (after hysteresis) when from the live state
    latency_ms: float | None  # recent latency (EWMA); None if there is no clean answer
    age_s: float  # seconds since its result
    failure: str | None  # the latest result's failure kind


@dataclass(frozen=True, slots=True)
class Deployment:
    """A deployment to use now, with its share of traffic."""

    provider: str
    status: ProbeStatus
    weight: float
    latency_ms: float | None
    age_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "status": self.status.value,
            "weight": self.weight,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "age_s": round(self.age_s, 3),
        }


@dataclass(frozen=True, slots=True)
class Excluded:
    """A deployment left out of the set (not in panic)."""

    provider: str
    status: ProbeStatus
    failure: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "status": self.status.value, "failure": self.failure}


@dataclass(frozen=True, slots=True)
class RoutableSet:
    """A model's deployments to use now (best first), the excluded ones, and panic."""

    model: str
    panic: bool
    deployments: tuple[Deployment, ...]
    excluded: tuple[Excluded, ...]
    healthy: int
    total: int

    @property
    def providers(self) -> tuple[str, ...]:
        """The returned deployments' names, in order."""
        return tuple(d.provider for d in self.deployments)

    @property
    def etag(self) -> str:
        """A strong entity tag of what a router acts on (quoted, as the header carries it)."""
        decided = [
            self.model,
            self.panic,
            [[d.provider, d.status.value, round(d.weight * _UNITS)] for d in self.deployments],
        ]
        text = json.dumps(decided, separators=(",", ":"))  # ASCII: non-ASCII names escaped
        return '"' + hashlib.blake2b(text.encode("ascii"), digest_size=16).hexdigest() + '"'

    def to_dict(self, source: str) -> dict[str, Any]:
        return {
            "model": self.model,
            "panic": self.panic,
            "source": source,
            "deployments": [d.to_dict() for d in self.deployments],
            "excluded": [e.to_dict() for e in self.excluded],
            "healthy": self.healthy,
            "total": self.total,
        }


def recent_latency(history: Iterable[HistoryEntry]) -> float | None:
    """The EWMA of the clean answers' latencies in ``history`` (oldest first), or None.

    Clean answers: healthy or degraded with no failure. A timeout's latency is
    its deadline and a fast 429 says nothing about serving speed, so neither
    counts (as for the latency SLO).
    """
    average: float | None = None
    for entry in history:
        latency = entry.latency_ms
        if (
            entry.failure is not None
            or entry.status not in (ProbeStatus.HEALTHY, ProbeStatus.DEGRADED)
            or latency is None
            or not math.isfinite(latency)
            or latency < 0
        ):
            continue
        average = latency if average is None else average + EWMA_WEIGHT * (latency - average)
    return average


def _inverse_latency(healthy: Sequence[Candidate]) -> list[float]:
    """Each healthy deployment's score, 1/latency; an unknown latency scores as the slowest known."""
    known = [1.0 / max(c.latency_ms, _LATENCY_FLOOR_MS) for c in healthy if c.latency_ms is not None]
    fill = min(known) if known else 1.0
    return [
        fill if c.latency_ms is None else 1.0 / max(c.latency_ms, _LATENCY_FLOOR_MS)
        for c in healthy
    ]


def _fastest_first(healthy: Sequence[Candidate]) -> list[Candidate]:
    """``healthy`` by their inverse-latency share in hundredths, largest first.

    Stable: deployments whose shares round alike keep config order, so noise
    between near-equal latencies does not reorder the set (nor change its ETag).
    """
    units = _hundredths(_inverse_latency(healthy))
    return [healthy[i] for i in sorted(range(len(healthy)), key=lambda i: -units[i])]


def weights(shares: Sequence[float]) -> list[float]:
    """``shares`` (>= 0, not all 0) as whole hundredths adding up to exactly 1.

    Largest remainders (earlier ones first on ties); then, while there are at
    most 100, a share rounded to 0 gets 0.01 from the largest (the last of
    equals): a returned deployment always gets some traffic, and shares in
    falling order stay in falling order.
    """
    return [value / _UNITS for value in _hundredths(shares)]


def _hundredths(shares: Sequence[float]) -> list[int]:
    total = sum(shares)
    exact = [share / total * _UNITS for share in shares]
    units = [math.floor(value) for value in exact]
    left = _UNITS - sum(units)
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - units[i]), i))
    for index in by_remainder[:left]:
        units[index] += 1
    if len(units) <= _UNITS:
        for index, value in enumerate(units):
            if value == 0:
                largest = max(range(len(units)), key=lambda i: (units[i], i))
                units[largest] -= 1
                units[index] = 1
    return units


def routable_set(
    model: str, candidates: Sequence[Candidate], *, panic_threshold: float
) -> RoutableSet:
    """``model``'s set from its deployments (config order); see the module doc for the rules."""
    total = len(candidates)
    healthy = _fastest_first([c for c in candidates if c.status is ProbeStatus.HEALTHY])
    degraded = [c for c in candidates if c.status is ProbeStatus.DEGRADED]
    rest = [c for c in candidates if c.status not in (ProbeStatus.HEALTHY, ProbeStatus.DEGRADED)]
    panic = panic_threshold > 0 and len(healthy) * 100 < panic_threshold * total
    chosen: list[Candidate]
    shares: list[float]
    if panic:
        chosen = [*healthy, *degraded, *sorted(rest, key=lambda c: _REST_ORDER.get(c.status, 1))]
        shares = [1.0] * len(chosen)
        left_out: list[Candidate] = []
    else:
        chosen = [*healthy, *degraded]
        left_out = rest
        if healthy and degraded:
            scores = _inverse_latency(healthy)
            healthy_shares = [(1 - DEGRADED_SHARE) * s / sum(scores) for s in scores]
            shares = healthy_shares + [DEGRADED_SHARE / len(degraded)] * len(degraded)
        elif healthy:
            shares = _inverse_latency(healthy)
        else:
            shares = [1.0] * len(degraded)
    weighed = weights(shares) if chosen else []
    return RoutableSet(
        model=model,
        panic=panic,
        deployments=tuple(
            Deployment(c.provider, c.status, weight, c.latency_ms, c.age_s)
            for c, weight in zip(chosen, weighed, strict=True)
        ),
        excluded=tuple(Excluded(c.provider, c.status, c.failure) for c in left_out),
        healthy=len(healthy),
        total=total,
    )


def set_from_report(
    report: ModelReport, health: HealthState | None, *, panic_threshold: float
) -> RoutableSet:
    """The set of a model's report (from the state or a live run).

    Latency: the EWMA over the state's history when there is a state
    (background checks on), else the report's own answer.
    """
    candidates = []
    for provider, result in report.results.items():
        if health is not None:
            history = health.history(report.name, provider)
        else:
            failure = None if result.failure is None else result.failure.value
            history = [HistoryEntry(result.checked_at, result.status, result.latency_ms, failure)]
        age = result.cached_age
        if age is None:
            age = max(time.time() - result.checked_at, 0.0)
        candidates.append(
            Candidate(
                provider=provider,
                status=result.status,
                latency_ms=recent_latency(history),
                age_s=age,
                failure=None if result.failure is None else result.failure.value,
            )
        )
    return routable_set(report.name, candidates, panic_threshold=panic_threshold)


def set_from_state(
    health: HealthState, model: str, providers: Sequence[str], *, panic_threshold: float
) -> RoutableSet | None:
    """``model``'s set from the live state; None until each of its ``providers`` has a result."""
    now = trio.current_time()
    candidates = []
    for provider in providers:
        state = health.get(model, provider)
        if state is None:
            return None
        failure = state.latest.failure
        candidates.append(
            Candidate(
                provider=provider,
                status=state.reported,
                latency_ms=recent_latency(health.history(model, provider)),
                age_s=max(now - state.at, 0.0),
                failure=None if failure is None else failure.value,
            )
        )
    return routable_set(model, candidates, panic_threshold=panic_threshold)


class RouteHub(Protocol):
    """Where :class:`RouteEvents` publishes (:class:`~service.live.stream.EventHub`)."""

    @property
    def subscribers(self) -> int: ...

    def publish_route(self, routable: RoutableSet) -> None: ...


class RouteEvents:
    """Publishes a model's set to ``hub`` (a ``route`` event) whenever its order or panic changes.

    :meth:`recorded` is a :class:`HealthState` record listener. While nobody
    listens to the stream nothing is computed, and what was last published is
    forgotten: a new subscriber gets each model's set at its next result.
    """

    def __init__(
        self,
        health: HealthState,
        plan: Mapping[str, Sequence[Adapter]],
        hub: RouteHub,
        *,
        panic_threshold: float,
    ) -> None:
        self.health = health
        self.hub = hub
        self.panic_threshold = panic_threshold
        self._providers = {
            model: tuple(a.provider for a in adapters) for model, adapters in plan.items()
        }
        self._published: dict[str, tuple[bool, tuple[str, ...]]] = {}

    def __repr__(self) -> str:
        return f"RouteEvents(models={len(self._providers)}, published={len(self._published)})"

    def recorded(self, result: ProbeResult) -> None:
        if not self.hub.subscribers:
            self._published.clear()
            return
        model = result.model
        providers = self._providers.get(model)
        if providers is None:
            return  # recorded by hand for a model this app does not route
        routable = set_from_state(
            self.health, model, providers, panic_threshold=self.panic_threshold
        )
        if routable is None:
            return
        shape = (routable.panic, routable.providers)
        if self._published.get(model) != shape:
            self._published[model] = shape
            self.hub.publish_route(routable)


# -- If-None-Match (RFC 9110, section 13.1.2) ---------------------------------------------

#: etagc: any visible ASCII but DQUOTE, and obs-text.
_OPAQUE: Final = re.compile(r"[\x21\x23-\x7e\x80-\xff]*")
_OWS: Final = " \t"


def _entity_tags(field: str) -> list[str] | None:
    """The opaque tags of an entity-tag list (weak or strong alike), or None if malformed."""
    tags: list[str] = []
    at, end = 0, len(field)
    while True:
        while at < end and field[at] in _OWS:
            at += 1
        if at == end:
            return tags
        if field[at] == ",":  # a separator, or an empty element (allowed)
            at += 1
            continue
        if field.startswith("W/", at):
            at += 2
        if at == end or field[at] != '"':
            return None
        close = field.find('"', at + 1)
        if close == -1 or not _OPAQUE.fullmatch(field, at + 1, close):
            return None
        tags.append(field[at + 1 : close])
        at = close + 1
        while at < end and field[at] in _OWS:
            at += 1
        if at < end and field[at] != ",":
            return None


def etag_matches(if_none_match: Sequence[str], etag: str) -> bool:
    """Whether a request's ``If-None-Match`` field lines match ``etag`` (quoted): answer 304.

    The weak comparison (``W/"x"`` matches ``"x"``), as RFC 9110 has for
    If-None-Match; ``*`` matches any current answer. A malformed field is
    ignored (no match), as if it had not been sent.
    """
    if not if_none_match:
        return False
    field = ",".join(if_none_match)
    if field.strip(_OWS) == "*":
        return True
    tags = _entity_tags(field)
    return tags is not None and etag[1:-1] in tags

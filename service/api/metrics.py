"""Prometheus metrics for a :class:`~service.engine.checker.HealthChecker`.

:class:`Metrics` listens to the checker (``result_listeners`` /
``run_listeners``) and keeps its own :class:`prometheus_client.CollectorRegistry`,
never the process-wide default one: several apps (or tests) in one process
each get their own series and never collide on registration.

Counters and histograms (updated as results and runs arrive):

* ``router_health_probe_results_total{model,provider,status,failure}``: every
  result a run or ``probe_one`` reported, probed or served (``status``:
  a :class:`~service.engine.report.ProbeStatus` value; ``failure``: a :class:`FailureKind`
  value or ``none``);
* ``router_health_probe_latency_seconds{model,provider}`` (histogram): latency
  of probes actually sent; results served from ``min_interval``, a
  Retry-After hold or passive traffic are not, nor probes that never started;
* ``router_health_probes_skipped_total{model,provider,reason}``: results
  served without a probe (``reason``: cached/passive/retry_after), so
  ``results_total - skipped_total`` is what was sent;
* ``router_health_run_duration_seconds{strategy}`` (histogram): a whole run's
  ``execution_time`` (``strategy``: concurrent/sequential);
* ``router_health_runs_total{strategy,status}``: finished runs by overall
  status (healthy/degraded/unhealthy);
* ``router_health_fallbacks_total{strategy}``: runs that fell back to (or
  re-checked) sequentially;
* ``router_health_observations_total{outcome}``: traffic reports received by
  ``POST /v1/health/observations`` (``outcome``: accepted, fed to a passive
  adapter; ignored, valid but the adapter is not passive; rejected, invalid).

Gauges (read at scrape time, so they are never stale):

* ``router_health_adapter_up{model,provider}``: 1 while the adapter is usable
  (healthy, degraded, or unsupported: never checked), else 0; the *reported* status of the live
  :class:`~service.live.state.HealthState` (hysteresis) when one is given and has
  the adapter, else its last result that says something about the provider;
* ``router_health_adapter_status{model,provider,status}``: the same status,
  one-hot over the statuses (so dashboards can colour ``degraded``);
* ``router_health_probes_in_flight``: probes under way, across every run
  (waiting for a slot or for the answer);
* ``router_health_probe_limit{provider}``, ``router_health_probe_slots_in_use{provider}``,
  ``router_health_probe_queue{provider}``: probe slots (``provider="*"`` is
  the global ``max_concurrent_probes``), present once a cap is in use;
* ``router_health_probe_limit_ceiling{provider}``: adaptive limits' ceiling.

Counters read at scrape time from the parts that protect the service, each
present once that part exists (the serving app, ``[cluster]``):

* ``router_health_connections_refused_total``: connections answered 503 at
  ``[server] max_connections`` because every held one was busy;
* ``router_health_connections_evicted_total``: idle connections closed to make
  room for a new one at that cap;
* ``router_health_streams_refused_total``: event streams refused by
  ``max_streams`` / ``max_streams_per_client``;
* ``router_health_cluster_messages_rejected_total``: results shared over Redis
  that failed validation and were dropped.

With ``[[alerts]]``, per channel (``channel``: its ``name``; never its URL):

* ``router_health_alert_messages_total{channel,outcome}``: alert messages by
  ``outcome``: delivered, failed (the service refused or errored), timeout
  (abandoned at the channel's ``timeout``), dropped (queue full, or still
  queued at shutdown);
* ``router_health_alert_messages_pending{channel}``: messages queued now.

What probes cost, read at scrape time from the checker's accounting
(:mod:`service.engine.cost`, the same numbers as ``/v1/health/performance``
and ``router-health check``), per adapter that has sent a probe:

* ``router_health_probe_requests_total{model,provider,probe}``: probes sent
  (``probe``: free/paid), never results served without one;
* ``router_health_probe_tokens_total{model,provider}``: tokens billed to paid probes;
* ``router_health_probe_budget_fallbacks_total{model,provider}``: paid probes
  sent as the free one because ``max_probe_tokens_per_hour`` was reached;
* ``router_health_probe_tokens_last_hour``: the fleet's tokens over the last
  hour (what the budget is measured against); with a budget,
  ``router_health_probe_token_budget`` (its size) and
  ``router_health_probe_budget_exhausted`` (1 while paid probes fall back).

Labels are model and provider names from the config, and enums: never a key,
a URL or an error message, so the cardinality is bounded by the config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from adapters.base import FailureKind

from ..engine.cache import says_about_provider
from ..engine.cost import ProbeCosts, ProbeKind
from ..engine.report import HealthReport, ProbeResult, ProbeStatus

if TYPE_CHECKING:
    from ..engine.checker import HealthChecker
    from ..live.alerts import ChannelStatistics
    from ..live.state import HealthState

__all__ = ["Metrics"]

# Probes are bounded by adapter_timeout (8 s by default) and runs by
# [server] max_timeout (120 s): the buckets cover those ranges.
_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_RUN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

#: ``outcome`` values of ``router_health_observations_total``.
OBSERVATION_OUTCOMES: Final = ("accepted", "ignored", "rejected")

#: ``source`` values of results no probe was sent for (the skip reason).
_SKIP_SOURCES = ("passive", "retry_after")

Key = tuple[str, str]

#: What :attr:`Metrics.refusals` may report -> the counter's name (without
#: ``_total``) and help text.
REFUSAL_COUNTERS: Final = {
    "connections_refused": (
        "router_health_connections_refused",
        "Connections answered 503 at [server] max_connections (every held one was busy).",
    ),
    "connections_evicted": (
        "router_health_connections_evicted",
        "Idle connections closed to make room at [server] max_connections.",
    ),
    "streams_refused": (
        "router_health_streams_refused",
        "Event streams refused by [server] max_streams or max_streams_per_client.",
    ),
    "cluster_rejected": (
        "router_health_cluster_messages_rejected",
        "Results shared over Redis that failed validation and were dropped.",
    ),
}

#: What :attr:`Metrics.storage` reports -> the counter's name (without ``_total``) and help.
STORAGE_COUNTERS: Final = {
    "writes": ("router_health_storage_writes", "Results and transitions written to [storage]."),
    "dropped": (
        "router_health_storage_dropped",
        "Rows dropped because [storage] max_pending were already waiting.",
    ),
    "failures": ("router_health_storage_failures", "Failed [storage] write transactions."),
}


def _failure_label(failure: FailureKind | None) -> str:
    # Only enum values reach a label: anything else would be unbounded.
    if failure is None:
        return "none"
    return failure.value if isinstance(failure, FailureKind) else "other"


def _skip_reason(result: ProbeResult) -> str | None:
    """Why no probe was sent for ``result`` (None: one was)."""
    if result.source in _SKIP_SOURCES:
        return result.source  # a hold also has a cached_age: the source says more
    if result.cached_age is not None:
        return "cached"
    return None


class Metrics:
    """The checker's Prometheus metrics, in a registry of their own (see the module doc)."""

    def __init__(
        self,
        checker: HealthChecker,
        health: HealthState | None = None,
        refusals: Callable[[], Mapping[str, int]] | None = None,
        storage: Callable[[], Mapping[str, Any] | None] | None = None,
        alerts: Callable[[], Sequence[ChannelStatistics] | None] | None = None,
    ) -> None:
        self.checker = checker
        self.health = health
        # Counts of what the service turned away, by REFUSAL_COUNTERS key; read
        # at scrape time from the parts that keep them (they outlive no app).
        self.refusals = refusals
        self.storage = storage  # the same, for [storage]: None while it is not running
        self.alerts = alerts  # the same, for [[alerts]]: each channel's counters
        self.registry = CollectorRegistry()
        self.results = Counter(
            "router_health_probe_results",
            "Probe results reported, probed or served without a probe.",
            ("model", "provider", "status", "failure"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "router_health_probe_latency_seconds",
            "Latency of probes actually sent (not served from cache, hold or traffic).",
            ("model", "provider"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.skipped = Counter(
            "router_health_probes_skipped",
            "Results served without sending a probe, by reason.",
            ("model", "provider", "reason"),
            registry=self.registry,
        )
        self.run_duration = Histogram(
            "router_health_run_duration_seconds",
            "Duration of whole check runs.",
            ("strategy",),
            buckets=_RUN_BUCKETS,
            registry=self.registry,
        )
        self.runs = Counter(
            "router_health_runs",
            "Finished check runs by overall status.",
            ("strategy", "status"),
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "router_health_fallbacks",
            "Runs that fell back to sequential checks (or re-checked timeouts).",
            ("strategy",),
            registry=self.registry,
        )
        self.observations = Counter(
            "router_health_observations",
            "Traffic reports received over HTTP: accepted (fed to a passive adapter), "
            "ignored (the adapter is not passive) or rejected (invalid).",
            ("outcome",),
            registry=self.registry,
        )
        for outcome in OBSERVATION_OUTCOMES:  # every series present from the start, at 0
            self.observations.labels(outcome)
        # Last status per adapter that says something about the provider: the
        # up gauge's source without a HealthState (insertion order = the
        # order adapters were first seen, so the exposition is stable).
        self._last: dict[Key, ProbeStatus] = {}
        self.registry.register(_LiveCollector(self))
        self.registry.register(_CostCollector(checker.cost))

    def __repr__(self) -> str:
        return f"Metrics(adapters={len(self._last)}, attached={self.attached})"

    # -- wiring ------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        return self.record_result in self.checker.result_listeners

    def attach(self) -> None:
        """Start counting the checker's results and runs (once, however often called)."""
        if self.record_result not in self.checker.result_listeners:
            self.checker.result_listeners.append(self.record_result)
        if self.record_run not in self.checker.run_listeners:
            self.checker.run_listeners.append(self.record_run)

    def detach(self) -> None:
        """Stop counting (idempotent); the series so far stay."""
        # Bound methods compare equal by (function, instance), so this finds ours.
        while self.record_result in self.checker.result_listeners:
            self.checker.result_listeners.remove(self.record_result)
        while self.record_run in self.checker.run_listeners:
            self.checker.run_listeners.remove(self.record_run)

    # -- listeners (must not block or raise: they run inside the checker) ----------

    def record_result(self, result: ProbeResult) -> None:
        """Count one result (a :data:`~service.engine.checker.ResultCallback`)."""
        model, provider = result.model, result.provider
        self.results.labels(model, provider, result.status.value, _failure_label(result.failure)).inc()
        reason = _skip_reason(result)
        if reason is not None:
            self.skipped.labels(model, provider, reason).inc()
        elif result.sent and result.latency_ms is not None:  # else nothing went out to time
            self.latency.labels(model, provider).observe(result.latency_ms / 1000.0)
        # A run's own budget (deadline, not_started, no slot) is no news about
        # the provider: it must not flip the up gauge, as it does not the state.
        if says_about_provider(result):
            self._last[(model, provider)] = result.status

    def record_run(self, report: HealthReport, strategy: str) -> None:
        """Count one finished run (a :data:`~service.engine.checker.RunCallback`)."""
        self.run_duration.labels(strategy).observe(report.execution_time)
        self.runs.labels(strategy, report.status.value).inc()
        if report.fallback:
            self.fallbacks.labels(strategy).inc()

    # -- reading -------------------------------------------------------------------

    def status(self, model: str, provider: str) -> ProbeStatus | None:
        """The status the gauges show: the state's reported one, else the last result's."""
        if self.health is not None:
            state = self.health.get(model, provider)
            if state is not None:
                return state.reported
        return self._last.get((model, provider))

    def adapters(self) -> list[Key]:
        """Every (model, provider) seen so far."""
        return list(self._last)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition for an ``Accept`` header, and its content type.

        OpenMetrics when the scraper asks for it, else the classic text format.
        """
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _LiveCollector(Collector):
    """Gauges computed at scrape time from the checker and the state."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        metrics = self.metrics
        up = GaugeMetricFamily(
            "router_health_adapter_up",
            "1 while the adapter is usable (healthy, degraded or unsupported), else 0.",
            labels=("model", "provider"),
        )
        status = GaugeMetricFamily(
            "router_health_adapter_status",
            "The adapter's reported status, one-hot over the statuses.",
            labels=("model", "provider", "status"),
        )
        for model, provider in metrics.adapters():
            current = metrics.status(model, provider)
            if current is None:
                continue
            up.add_metric((model, provider), 1.0 if current.usable else 0.0)
            for candidate in ProbeStatus:
                status.add_metric(
                    (model, provider, candidate.value), 1.0 if candidate is current else 0.0
                )
        yield up
        yield status
        yield GaugeMetricFamily(
            "router_health_probes_in_flight",
            "Probes under way (waiting for a slot or for the answer).",
            value=metrics.checker.in_flight,
        )
        families = {
            key: GaugeMetricFamily(name, doc, labels=("provider",))
            for key, name, doc in (
                ("limit", "router_health_probe_limit", "Probes allowed in flight (\"*\": all providers)."),
                ("in_use", "router_health_probe_slots_in_use", "Probe slots held."),
                ("queued", "router_health_probe_queue", "Probes waiting for a slot."),
                ("ceiling", "router_health_probe_limit_ceiling", "Ceiling of an adaptive limit."),
            )
        }
        for provider, stats in metrics.checker.slots.statistics().items():
            for key, family in families.items():
                if key in stats:  # "ceiling" only for adaptive limits
                    family.add_metric((provider,), stats[key])
        yield from families.values()
        counts = metrics.refusals() if metrics.refusals is not None else {}
        for key, (name, doc) in REFUSAL_COUNTERS.items():
            if key in counts:
                yield CounterMetricFamily(name, doc, value=counts[key])
        stored = metrics.storage() if metrics.storage is not None else None
        if stored is not None:
            for key, (name, doc) in STORAGE_COUNTERS.items():
                yield CounterMetricFamily(name, doc, value=stored[key])
            yield GaugeMetricFamily(
                "router_health_storage_pending",
                "Rows waiting to be written to [storage] (at most max_pending).",
                value=stored["pending"],
            )
        yield from _alert_families(metrics.alerts() if metrics.alerts is not None else None)


def _alert_families(channels: Sequence[ChannelStatistics] | None) -> Iterable[Metric]:
    """The alert channels' counters (nothing without ``[[alerts]]``)."""
    if channels is None:
        return
    messages = CounterMetricFamily(
        "router_health_alert_messages",
        "Alert messages per [[alerts]] channel, by outcome: delivered, failed, timeout "
        "(abandoned at the channel's timeout), dropped (queue full or left at shutdown).",
        labels=("channel", "outcome"),
    )
    pending = GaugeMetricFamily(
        "router_health_alert_messages_pending",
        "Alert messages queued per [[alerts]] channel.",
        labels=("channel",),
    )
    for channel in channels:
        for outcome, count in channel.counts().items():
            messages.add_metric((channel.name, outcome), count)
        pending.add_metric((channel.name,), channel.pending)
    yield messages
    yield pending


class _CostCollector(Collector):
    """What probes cost, from the checker's own accounting (one source for every view)."""

    def __init__(self, costs: ProbeCosts) -> None:
        self.costs = costs

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "router_health_probe_requests",
            "Probes sent, free (a model list) or paid (a billed call).",
            labels=("model", "provider", "probe"),
        )
        tokens = CounterMetricFamily(
            "router_health_probe_tokens",
            "Tokens billed to paid probes (from the answers' usage).",
            labels=("model", "provider"),
        )
        fallbacks = CounterMetricFamily(
            "router_health_probe_budget_fallbacks",
            "Paid probes sent as the free one: max_probe_tokens_per_hour was reached.",
            labels=("model", "provider"),
        )
        for cost in self.costs.adapters():
            key = (cost.model, cost.provider)
            requests.add_metric((*key, ProbeKind.FREE.value), cost.total.free_probes)
            requests.add_metric((*key, ProbeKind.PAID.value), cost.total.paid_probes)
            tokens.add_metric(key, cost.total.tokens)
            fallbacks.add_metric(key, cost.total.budget_fallbacks)
        yield from (requests, tokens, fallbacks)
        yield GaugeMetricFamily(
            "router_health_probe_tokens_last_hour",
            "Tokens billed to paid probes over the last hour (what the budget counts).",
            value=self.costs.last_hour().tokens,
        )
        budget = self.costs.budget()
        if budget is not None:
            yield GaugeMetricFamily(
                "router_health_probe_token_budget",
                "[checks] max_probe_tokens_per_hour.",
                value=budget.max_tokens_per_hour,
            )
            yield GaugeMetricFamily(
                "router_health_probe_budget_exhausted",
                "1 while the token budget is reached and paid probes send the free one.",
                value=1.0 if budget.exhausted else 0.0,
            )

"""The per-app state every route reads: config, manager, shared runs, live parts."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Final

import trio
from quart import Quart, current_app
from quart_trio import QuartTrio

from ..config import Config
from ..engine.manager import AdapterManager
from ..engine.report import HealthReport
from ..live.alerts import AlertNotifier, ChannelStatistics
from ..live.background import BackgroundChecker
from ..live.cluster import ClusterCoordinator
from ..live.state import HealthState
from ..live.storage import Storage
from ..live.stream import EventHub
from ..live.webhook import WebhookNotifier
from .answers import StateAnswers
from .auth import BearerAuth
from .compat import CONNECTIONS_KEY, ConnectionSlots
from .metrics import Metrics
from .recent import RecentRuns
from .singleflight import SingleFlight

__all__ = [
    "EXTENSION_KEY",
    "ServiceState",
    "current_state",
    "get_health_state",
    "get_manager",
    "state_of",
]

#: Where the app keeps its state in ``app.extensions``.
EXTENSION_KEY: Final = "router_health"


@dataclass(eq=False)
class ServiceState:
    app: QuartTrio
    config: Config
    manager: AdapterManager
    auth: BearerAuth
    # Whether serving opened the manager (and so must close it); a manager
    # that was already open belongs to whoever opened it.
    owns_manager: bool = False
    # The app's lifetime nursery while it serves (shared runs live there);
    # None otherwise: routes then run in the request and share nothing.
    nursery: trio.Nursery | None = None
    # Shared runs, keyed by what makes two requests identical.
    health_runs: SingleFlight[Hashable, HealthReport] = field(
        default_factory=lambda: SingleFlight("health check")
    )
    model_runs: SingleFlight[Hashable, HealthReport] = field(
        default_factory=lambda: SingleFlight("model health check")
    )
    performance: SingleFlight[Hashable, dict[str, Any]] = field(
        default_factory=lambda: SingleFlight("performance measurement")
    )
    # Finished runs answering anonymous callers ([server] anonymous_min_interval).
    recent_runs: RecentRuns = field(default_factory=lambda: RecentRuns(0.0))
    # Answers from the live state, kept as text until the state changes.
    answers: StateAnswers = field(default_factory=StateAnswers)
    # With background checks on (some adapter's ``interval`` > 0): the live
    # state, and the checker feeding it while the app serves.
    health: HealthState | None = None
    background: BackgroundChecker | None = None
    webhook: WebhookNotifier | None = None  # with [webhook]: POSTs the state's transitions
    cluster: ClusterCoordinator | None = None  # with [cluster]: leases and shared results
    storage: Storage | None = None  # with [storage] enabled: the SQLite history
    alerts: AlertNotifier | None = None  # with [[alerts]]: the alert channels
    # Every result, transition and run, for GET /v1/health/stream.
    events: EventHub = field(default_factory=EventHub)
    metrics: Metrics | None = None  # GET /metrics; made with the app

    def refusals(self) -> dict[str, int]:
        """What the service turned away so far, for ``/metrics`` (see ``REFUSAL_COUNTERS``)."""
        counts = {"streams_refused": self.events.refused}
        slots = self.app.extensions.get(CONNECTIONS_KEY)
        if isinstance(slots, ConnectionSlots):  # only while served with a cap
            counts["connections_refused"] = slots.refused
            counts["connections_evicted"] = slots.evicted
        if self.cluster is not None:
            counts["cluster_rejected"] = self.cluster.rejected
        return counts

    def storage_stats(self) -> dict[str, Any] | None:
        """Storage's counters for ``/metrics`` (None while it is not running)."""
        return None if self.storage is None else self.storage.stats()

    def alert_stats(self) -> list[ChannelStatistics] | None:
        """The alert channels' counters for ``/metrics`` (None while they are not running)."""
        return None if self.alerts is None else self.alerts.statistics()

    def flights(self) -> list[SingleFlight[Hashable, Any]]:
        return [self.health_runs, self.model_runs, self.performance]

    async def wait_idle(self) -> None:
        """Return once no shared run is in flight (cancelled ones unwound)."""
        for flight in self.flights():
            await flight.wait_idle()

    def secrets(self) -> list[Any]:
        """Every key this app knows, for redacting text that leaves the process."""
        # An HTTP adapter's ``secrets``: its key and its extra header values.
        keys = [
            secret
            for _, a in self.manager.all_adapters()
            for secret in (getattr(a, "secrets", None) or (getattr(a, "api_key", None),))
        ]
        hook = [] if self.config.webhook is None else self.config.webhook.secrets()
        redis = [] if self.config.cluster is None else self.config.cluster.secrets()
        # Long parts only: the API's texts never hold an alert URL, and short ones would garble them.
        alerts = [s for channel in self.config.alerts for s in channel.secrets(min_chars=8)]
        server = self.config.server
        return [*keys, server.auth_token, server.observe_token, *hook, *redis, *alerts]


def state_of(app: Quart) -> ServiceState:
    state = app.extensions.get(EXTENSION_KEY)
    if not isinstance(state, ServiceState):
        raise RuntimeError("not a router-health app: build it with service.create_app()")
    return state


def current_state() -> ServiceState:
    """The state of the app handling the current request."""
    return state_of(current_app)


def get_health_state(app: Quart) -> HealthState | None:
    """The live :class:`HealthState` of an app with background checks on, else None."""
    return state_of(app).health


def get_manager(app: Quart) -> AdapterManager:
    """The :class:`AdapterManager` an app made by :func:`create_app` uses."""
    return state_of(app).manager

"""``[checks]``: run budgets, strategy switches and the background-check schedule."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from adapters.base import DEFAULT_MAX_BODY_BYTES

__all__ = [
    "HISTORY_LENGTH",
    "SCHEDULE_KEYS",
    "TRANSIENT_KINDS",
    "CheckSchedule",
    "ChecksConfig",
]

#: Failure kinds ``transient`` may name: they make an adapter degraded, not unhealthy.
TRANSIENT_KINDS: Final = ("rate_limited", "timeout")
#: Results kept per adapter in the live state (``slo_window`` can be no longer).
HISTORY_LENGTH: Final = 50


@dataclass(frozen=True, slots=True)
class CheckSchedule:
    """One adapter's background-check policy (``[checks]`` keys, a provider may override).

    ``interval`` 0 means no background checks for that adapter.
    """

    interval: float = 0.0
    jitter: float = 0.1  # fraction of the delay, drawn uniformly in [-jitter, +jitter]
    unhealthy_interval: float | None = None  # None: ``interval``
    healthy_threshold: int = 1
    unhealthy_threshold: int = 1
    max_age: float | None = None  # None: 2 x ``interval``
    # Past max_age, a result is still served (marked stale) for this many more
    # seconds while a refresh runs; None: as long as max_age; 0: never.
    stale_while_revalidate: float | None = None
    # Failure kinds (TRANSIENT_KINDS) that make the adapter degraded instead of
    # unhealthy, until ``transient_limit`` of them in a row (0 = never escalate).
    transient: tuple[str, ...] = ()
    transient_limit: int = 3
    # Latency SLO: degraded while the ``slo_percentile`` of the last
    # ``slo_window`` answered probes is above ``latency_slo_ms`` (None = no SLO).
    latency_slo_ms: float | None = None
    slo_percentile: float = 95.0
    slo_window: int = 20
    # Passive adapters (probe = "passive"): how far back reported traffic
    # counts, and the share of failed requests above which it is unhealthy.
    passive_window: float = 60.0
    passive_error_rate: float = 0.5

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    @property
    def stale_for(self) -> float:
        """Seconds past ``served_max_age`` a result is still served, marked stale."""
        if not self.enabled:
            return 0.0
        if self.stale_while_revalidate is None:
            return self.served_max_age
        return self.stale_while_revalidate

    @property
    def fast_interval(self) -> float:
        """The interval while the adapter is down or changing state."""
        return self.interval if self.unhealthy_interval is None else self.unhealthy_interval

    @property
    def served_max_age(self) -> float:
        """How old a background result may be and still be served (0 when off)."""
        if not self.enabled:
            return 0.0
        return 2 * self.interval if self.max_age is None else self.max_age


#: The schedule keys, valid in ``[checks]`` and in a provider entry (an override).
SCHEDULE_KEYS: Final = (
    "interval",
    "jitter",
    "unhealthy_interval",
    "healthy_threshold",
    "unhealthy_threshold",
    "max_age",
    "stale_while_revalidate",
    "transient",
    "transient_limit",
    "latency_slo_ms",
    "slo_percentile",
    "slo_window",
    "passive_window",
    "passive_error_rate",
)


@dataclass(frozen=True, slots=True)
class ChecksConfig:
    """``[checks]``: the budgets and strategy switches (defaults are the v1 API's)."""

    timeout: float = 30.0
    model_timeout: float = 10.0
    adapter_timeout: float = 8.0
    use_concurrent: bool = True
    fallback_sequential: bool = True
    recheck_timeouts: bool = True
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    sync_threads: int = 16  # worker threads for user-registered blocking adapters
    # Serve an adapter's last verdict while younger than this many seconds
    # instead of probing again (0 = off); providers may override it.
    min_interval: float = 0.0
    # Probes in flight at once, across all requests (0 = unlimited).
    max_concurrent_probes: int = 0
    # Per-provider limits that shrink on 429/503/timeouts and grow back
    # (service.engine.limits); a provider's ``max_concurrent`` is its ceiling, else
    # ``adaptive_ceiling``.
    adaptive_concurrency: bool = False
    adaptive_ceiling: int = 32
    # Let a provider's base_url or the webhook's url be a link-local or cloud
    # metadata address (169.254.0.0/16, fe80::/10, 169.254.169.254 in any
    # spelling, fd00:ec2::254...): refused by default, they hand out credentials.
    allow_link_local: bool = False
    # Tokens paid probes (probe = "completion") may be billed per sliding hour;
    # past it they send the free probe until the hour has room (None = no budget).
    max_probe_tokens_per_hour: int | None = None
    # Worker processes the concurrent pass is sharded over (None = "auto": the
    # CPU count; 0 or 1 = off), used only when the HTTP adapters built from
    # the config number at least ``shard_threshold`` (service.engine.shards).
    workers: int | None = None
    shard_threshold: int = 1000
    # Filled by parse_config from the provider entries (not [checks] keys):
    # provider name -> its ``max_concurrent``, and (model, provider) -> its
    # ``min_interval`` override.
    provider_max_concurrent: Mapping[str, int] = field(default_factory=dict)
    adapter_min_interval: Mapping[tuple[str, str], float] = field(default_factory=dict)
    # Background checks (see service.live.background): the [checks] schedule, and
    # (model, provider) -> that entry's overrides of it.
    schedule: CheckSchedule = field(default_factory=CheckSchedule)
    adapter_schedule: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)

    def schedule_for(self, model: str, provider: str) -> CheckSchedule:
        """An adapter's schedule: ``[checks]``, with its provider entry's overrides."""
        overrides = self.adapter_schedule.get((model, provider))
        return dataclasses.replace(self.schedule, **overrides) if overrides else self.schedule

    @property
    def background_enabled(self) -> bool:
        """Whether any adapter is checked in the background."""
        return self.schedule.enabled or any(
            self.schedule_for(m, p).enabled for m, p in self.adapter_schedule
        )


#: ``[checks] workers`` may be at most this many times the CPUs available (and at least this many).
WORKERS_PER_CPU = 4


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, and the cgroup v2 CPU quota when set."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(cpus, 1)


def max_workers() -> int:
    """The most ``[checks] workers`` may say on this machine."""
    return max(WORKERS_PER_CPU * available_cpus(), WORKERS_PER_CPU)

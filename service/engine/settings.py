"""``CheckerSettings``: the checker's budgets, fallbacks and limits, as one value.

Built from ``[checks]`` by :meth:`CheckerSettings.from_config`, or directly
by an embedder; every value is checked when the object is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from adapters.base import FailureKind

from ..config import TRANSIENT_KINDS, ChecksConfig
from ..config.checks import available_cpus
from ..config.values import check_seconds

__all__ = ["CheckerSettings"]

#: What ``transient`` names (config's TRANSIENT_KINDS), as failure kinds.
_TRANSIENT_KINDS: Final = {kind: FailureKind(kind) for kind in TRANSIENT_KINDS}


@dataclass(frozen=True, slots=True)
class CheckerSettings:
    """Budgets (seconds) and fallback switches; the defaults are the v1 API's."""

    timeout: float = 30.0  # a whole run
    model_timeout: float = 10.0  # one model's providers, from the model's start
    adapter_timeout: float = 8.0  # one adapter, unless the adapter sets its own ``timeout``
    # (1) the concurrent run failed as a whole: finish the rest one by one.
    fallback_sequential: bool = True
    # (2) adapters that timed out (or hit local resource limits) in the
    # concurrent pass are re-checked one by one while budget remains.
    recheck_timeouts: bool = True
    # Serve an adapter's last verdict while it is younger than this (seconds;
    # 0 = always probe). Per-adapter overrides: (model, provider) -> seconds.
    min_interval: float = 0.0
    adapter_min_interval: Mapping[tuple[str, str], float] = field(default_factory=dict)
    # Probes in flight at once across every run (0 = unlimited), and per
    # provider name across every model (absent = unlimited).
    max_concurrent_probes: int = 0
    provider_max_concurrent: Mapping[str, int] = field(default_factory=dict)
    # Limits that shrink when providers push back and grow back (service.engine.limits).
    adaptive_concurrency: bool = False
    adaptive_ceiling: int = 32
    # Failure kinds ("rate_limited", "timeout") reported as degraded, not
    # unhealthy; per-adapter overrides: (model, provider) -> kinds.
    transient: frozenset[str] = frozenset()
    adapter_transient: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    # Tokens paid probes may be billed per sliding hour; past it they send the
    # free probe instead (service.engine.cost). None: no budget.
    max_probe_tokens_per_hour: int | None = None
    # Worker processes the concurrent pass of an AdapterManager's fleet is
    # sharded over (0 or 1 = none), once its HTTP adapters number at least
    # ``shard_threshold`` (service.engine.shards). A HealthChecker alone never shards.
    workers: int = 0
    shard_threshold: int = 1000

    @classmethod
    def from_config(cls, checks: ChecksConfig) -> CheckerSettings:
        """The settings ``[checks]`` (and the provider entries' overrides) describe."""
        return cls(
            timeout=checks.timeout,
            model_timeout=checks.model_timeout,
            adapter_timeout=checks.adapter_timeout,
            fallback_sequential=checks.fallback_sequential,
            recheck_timeouts=checks.recheck_timeouts,
            min_interval=checks.min_interval,
            adapter_min_interval=dict(checks.adapter_min_interval),
            max_concurrent_probes=checks.max_concurrent_probes,
            provider_max_concurrent=dict(checks.provider_max_concurrent),
            adaptive_concurrency=checks.adaptive_concurrency,
            adaptive_ceiling=checks.adaptive_ceiling,
            transient=frozenset(checks.schedule.transient),
            adapter_transient={
                key: frozenset(checks.schedule_for(*key).transient)
                for key in checks.adapter_schedule
            },
            max_probe_tokens_per_hour=checks.max_probe_tokens_per_hour,
            workers=available_cpus() if checks.workers is None else checks.workers,
            shard_threshold=checks.shard_threshold,
        )

    def transient_for(self, model: str, provider: str) -> frozenset[FailureKind]:
        names = self.adapter_transient.get((model, provider), self.transient)
        return frozenset(_TRANSIENT_KINDS[name] for name in names)

    def __post_init__(self) -> None:
        for name in ("timeout", "model_timeout", "adapter_timeout"):
            check_seconds(name, getattr(self, name))
        intervals = {"min_interval": self.min_interval, **{
            f"min_interval of {model}/{provider}": value
            for (model, provider), value in self.adapter_min_interval.items()
        }}
        for name, value in intervals.items():
            check_seconds(name, value, zero_ok=True)
        caps = {"max_concurrent_probes": (self.max_concurrent_probes, 0), **{
            f"max_concurrent of provider {name!r}": (value, 1)
            for name, value in self.provider_max_concurrent.items()
        }}
        caps["adaptive_ceiling"] = (self.adaptive_ceiling, 1)
        caps["workers"] = (self.workers, 0)
        caps["shard_threshold"] = (self.shard_threshold, 1)
        if self.max_probe_tokens_per_hour is not None:
            caps["max_probe_tokens_per_hour"] = (self.max_probe_tokens_per_hour, 1)
        for name, (cap, low) in caps.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {cap!r}")
        for kinds in (self.transient, *self.adapter_transient.values()):
            unknown = sorted(set(kinds) - set(_TRANSIENT_KINDS))
            if unknown:
                raise ValueError(
                    f"transient kinds must be among {sorted(_TRANSIENT_KINDS)}, got {unknown}"
                )

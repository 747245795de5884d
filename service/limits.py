"""Caps on probes in flight: one for the whole process, one per provider.

Every probe is a request to somebody's API, often a paid one. Firing them all
at once can trip the provider's own rate limits (and turn healthy providers
"unhealthy"), or exhaust this process's sockets. Two caps bound that:

* the **global** cap (``[checks] max_concurrent_probes``, 0 = unlimited): at
  most this many probes in flight across every run of a checker, whoever
  started them (concurrent requests, the performance measurement...);
* a **per-provider** cap (``max_concurrent`` on a provider entry): at most
  this many probes in flight to that provider. It is keyed by the provider's
  *name*, across every model: ``openai`` listed under ``gpt-4`` and under
  ``gpt-4o`` is one account with one rate limit, so both share the cap. (Not
  by host: several accounts can sit behind one gateway host, and a cap that
  silently merged them would be a surprise.)

A probe takes its provider's slot first, then a global one, so a probe never
holds a scarce global slot while it queues behind its own provider. The wait
for a slot happens inside the probe's deadline: a probe that cannot get a
slot in time ends as a ``timeout`` with failure ``resource`` and an error
saying it was still queued, and every result reports its ``queued_ms`` while
a cap is configured (see :class:`SlotWait`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

__all__ = ["ProbeSlots", "SlotWait"]


@dataclass(slots=True)
class SlotWait:
    """When a probe got its slots (trio clock); ``None`` while it is still queued."""

    granted_at: float | None = None


class ProbeSlots:
    """The global and per-provider :class:`trio.CapacityLimiter` s of one checker.

    Limiters are made on first use, so a checker can be built outside Trio.
    A limiter passed in as ``global_limiter`` may be shared with others (for
    example one sized from ``RLIMIT_NOFILE`` for the whole process).
    """

    def __init__(
        self,
        *,
        max_concurrent_probes: int = 0,
        provider_caps: Mapping[str, int] | None = None,
        global_limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        if global_limiter is None and max_concurrent_probes > 0:
            global_limiter = trio.CapacityLimiter(max_concurrent_probes)
        self.global_limiter = global_limiter
        self.provider_caps = dict(provider_caps or {})
        for name, cap in self.provider_caps.items():
            if cap < 1:
                raise ValueError(f"max_concurrent for provider {name!r} must be >= 1, got {cap}")
        self._provider_limiters: dict[str, trio.CapacityLimiter] = {}

    def __repr__(self) -> str:
        total = "unlimited" if self.global_limiter is None else self.global_limiter.total_tokens
        return f"ProbeSlots(global={total}, provider_caps={self.provider_caps!r})"

    @property
    def active(self) -> bool:
        """Whether any cap is configured (otherwise :meth:`slot` never waits)."""
        return self.global_limiter is not None or bool(self.provider_caps)

    def provider_limiter(self, provider: str) -> trio.CapacityLimiter | None:
        cap = self.provider_caps.get(provider)
        if cap is None:
            return None
        limiter = self._provider_limiters.get(provider)
        if limiter is None:
            limiter = self._provider_limiters[provider] = trio.CapacityLimiter(cap)
        return limiter

    @asynccontextmanager
    async def slot(self, provider: str, wait: SlotWait | None = None) -> AsyncIterator[None]:
        """Hold a slot for one probe of ``provider``; queue (FIFO) until one is free.

        Cancellation while queued just leaves the queue. ``wait.granted_at``
        is set once both slots are held.
        """
        limiters = [
            limiter
            for limiter in (self.provider_limiter(provider), self.global_limiter)
            if limiter is not None
        ]
        # Each probe runs in a task of its own (or one after another in the
        # caller's task), so the task is a fine borrower: it never holds
        # the same limiter twice.
        acquired: list[trio.CapacityLimiter] = []
        try:
            for limiter in limiters:
                await limiter.acquire()
                acquired.append(limiter)
            if wait is not None:
                wait.granted_at = trio.current_time()
            yield
        finally:
            for limiter in reversed(acquired):
                limiter.release()

    def statistics(self) -> dict[str, dict[str, int]]:
        """Slots in use and probes queued, globally and per provider (for tests and metrics)."""
        stats: dict[str, dict[str, int]] = {}
        if self.global_limiter is not None:
            s = self.global_limiter.statistics()
            stats["*"] = {"in_use": s.borrowed_tokens, "limit": int(s.total_tokens), "queued": s.tasks_waiting}
        for name, limiter in self._provider_limiters.items():
            s = limiter.statistics()
            stats[name] = {"in_use": s.borrowed_tokens, "limit": int(s.total_tokens), "queued": s.tasks_waiting}
        return stats

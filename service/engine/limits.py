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

**Adaptive limits** (``[checks] adaptive_concurrency = true``): every
provider gets a limit that moves, like TCP's congestion window, between 1
and a ceiling (the provider's ``max_concurrent``, else ``[checks]
adaptive_ceiling``):

* *slow start*: it starts at :data:`INITIAL_LIMIT` (or the ceiling, if
  lower) and doubles each time ``limit`` answers in a row come back, until
  the provider first pushes back (429, 503, or the probe's own timeout);
* *multiplicative decrease*: a push-back halves it. An explicit refusal
  (429, 503) also marks that limit as the provider's *bad* level; a timeout
  does not (an outage says nothing about capacity);
* *additive increase*: ``limit`` answers in a row grow it by one, up to just
  below the bad level; growing *to* the bad level is a probe of whether the
  provider has more room now, tried only after :data:`PROBE_FACTOR` times as
  many answers, and a probe that is refused steps back by one instead of
  halving. So against a provider that refuses above 8 in flight the limit
  settles at 8 and tests 9 now and then, instead of saw-toothing 8 → 9 → 4.
  A full round answered at the bad level forgets it;
* *fast recovery*: below the highest level a full round was ever answered at
  (the *good* level), growth doubles, so a provider back from an outage
  (timeouts halved the limit down to 1) is at full speed again in a few
  rounds, not hundreds.

One burst of 429s is one congestion episode: only probes granted their slot
after the last decrease can shrink the limit again, so 30 probes that were
already in flight when the provider started refusing halve it once, not 30
times. The global cap, when set, shrinks only on local
resource exhaustion (EMFILE...) and grows back the same way: a slow provider
must never shrink everybody's share. A lowered limit takes effect as slots
are released; nothing in flight is interrupted.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

__all__ = ["INITIAL_LIMIT", "PROBE_FACTOR", "AdaptiveLimit", "ProbeSlots", "Signal", "SlotWait"]

logger = logging.getLogger("router_health.limits")

#: Where an adaptive limit starts (slow start doubles it from here).
INITIAL_LIMIT = 4
#: Growing to a level that was refused before waits this many times longer.
PROBE_FACTOR = 10


class Signal(enum.Enum):
    """What one probe's outcome says about the load it put on its provider."""

    REFUSED = "refused"  # the provider said no (429, 503): shrink, and remember the level
    CONGESTED = "congested"  # no answer in time (or local exhaustion): shrink
    ANSWERED = "answered"  # answered in time: may grow
    NEUTRAL = "neutral"  # says nothing about load (never got a slot, cancelled...)


@dataclass(slots=True)
class SlotWait:
    """When a probe got its slots (trio clock); ``None`` while it is still queued."""

    granted_at: float | None = None
    #: The adaptive limits already heard how the probe went, before its slot was
    #: given back (so a lowered limit binds whoever gets that slot next).
    fed_back: bool = False


class AdaptiveLimit:
    """An AIMD controller over one :class:`trio.CapacityLimiter` (see the module doc).

    It sets the limiter's size: to the slow-start value at once, then as
    feedback arrives.
    """

    def __init__(
        self,
        limiter: trio.CapacityLimiter,
        *,
        ceiling: int,
        name: str,
        floor: int = 1,
        initial: int = INITIAL_LIMIT,
    ) -> None:
        if not 1 <= floor <= ceiling:
            raise ValueError(f"need 1 <= floor <= ceiling, got floor={floor}, ceiling={ceiling}")
        self.limiter = limiter
        self.name = name
        self.ceiling = ceiling
        self.floor = floor
        self.decreases = 0
        self.increases = 0
        #: The limit the provider last refused at (429/503), until a full round
        #: there is answered; growing to it is a probe (PROBE_FACTOR x slower).
        self.bad: int | None = None
        #: The highest limit a full round was answered at (recovery doubles back to it).
        self.good: int | None = None
        self._slow_start = True  # until the first push-back of any kind
        self._answered = 0  # answers in a row since the last change
        self._last_decrease = -math.inf  # trio clock
        limiter.total_tokens = max(floor, min(initial, ceiling))

    def __repr__(self) -> str:
        return f"AdaptiveLimit({self.name!r}, limit={self.limit}, ceiling={self.ceiling})"

    @property
    def limit(self) -> int:
        return int(self.limiter.total_tokens)

    def feedback(self, signal: Signal, granted_at: float | None) -> None:
        """Adjust the limit after a probe that held a slot from ``granted_at``."""
        if signal is Signal.NEUTRAL or granted_at is None:
            return
        if signal is not Signal.ANSWERED:
            self._answered = 0
            if granted_at <= self._last_decrease:
                return  # already in flight when we last shrank: same episode
            self._last_decrease = trio.current_time()
            self._slow_start = False
            limit = self.limit
            refused = signal is Signal.REFUSED
            # A refused probe of the bad level steps back to the known-good
            # one below it; anything else is congestion: halve.
            probing = refused and self.bad is not None and limit >= self.bad
            new = max(self.floor, limit - 1 if probing else limit // 2)
            if refused:
                # Only an explicit refusal says where the provider's capacity
                # ends; a timeout may be an outage, which says nothing of it.
                self.bad = limit
                if self.good is not None:
                    self.good = min(self.good, max(self.floor, limit - 1))
            if new < limit:
                self.decreases += 1
                logger.warning("%s pushed back: probe limit %d -> %d", self.name, limit, new)
                self.limiter.total_tokens = new
            return
        self._answered += 1
        limit = self.limit
        if self._answered >= limit:  # a full round answered at this level
            self.good = max(self.good or 0, limit)
            if self.bad is not None and limit >= self.bad:
                self.bad = None  # the refused level has room now: forget it
        if limit >= self.ceiling:
            return
        if self._slow_start:
            grown, needed = min(self.ceiling, limit * 2), limit
        elif self.good is not None and limit < self.good:
            # Back to a level that worked before (after an outage's timeouts):
            # doubling, not one step per round.
            grown, needed = min(self.good, limit * 2), limit
        else:
            grown = limit + 1
            needed = limit * (PROBE_FACTOR if self.bad is not None and grown >= self.bad else 1)
        if self._answered >= needed:
            self._answered = 0
            self.increases += 1
            self.limiter.total_tokens = grown
            logger.debug("%s answering: probe limit -> %d", self.name, grown)

    def statistics(self) -> dict[str, int]:
        s = self.limiter.statistics()
        return {
            "in_use": s.borrowed_tokens,
            "limit": self.limit,
            "queued": s.tasks_waiting,
            "ceiling": self.ceiling,
            "decreases": self.decreases,
            "increases": self.increases,
        }


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
        adaptive: bool = False,
        adaptive_ceiling: int = 32,
    ) -> None:
        if global_limiter is None and max_concurrent_probes > 0:
            global_limiter = trio.CapacityLimiter(max_concurrent_probes)
        self.global_limiter = global_limiter
        self.provider_caps = dict(provider_caps or {})
        for name, cap in self.provider_caps.items():
            if cap < 1:
                raise ValueError(f"max_concurrent for provider {name!r} must be >= 1, got {cap}")
        if adaptive_ceiling < 1:
            raise ValueError(f"adaptive_ceiling must be >= 1, got {adaptive_ceiling}")
        self.adaptive = adaptive
        self.adaptive_ceiling = adaptive_ceiling
        self._provider_limiters: dict[str, trio.CapacityLimiter] = {}
        self._adaptive: dict[str, AdaptiveLimit] = {}
        self._global_adaptive: AdaptiveLimit | None = None
        if adaptive and global_limiter is not None:
            self._global_adaptive = AdaptiveLimit(
                global_limiter,
                ceiling=int(global_limiter.total_tokens),
                name="all providers",
                initial=int(global_limiter.total_tokens),  # the configured cap: no slow start
            )

    def __repr__(self) -> str:
        total = "unlimited" if self.global_limiter is None else self.global_limiter.total_tokens
        return (
            f"ProbeSlots(global={total}, provider_caps={self.provider_caps!r}, "
            f"adaptive={self.adaptive})"
        )

    @property
    def active(self) -> bool:
        """Whether any cap is configured (otherwise :meth:`slot` never waits)."""
        return self.global_limiter is not None or bool(self.provider_caps) or self.adaptive

    def provider_limiter(self, provider: str) -> trio.CapacityLimiter | None:
        cap = self.provider_caps.get(provider)
        if cap is None and self.adaptive:
            cap = self.adaptive_ceiling
        if cap is None:
            return None
        limiter = self._provider_limiters.get(provider)
        if limiter is None:
            limiter = self._provider_limiters[provider] = trio.CapacityLimiter(cap)
            if self.adaptive:
                self._adaptive[provider] = AdaptiveLimit(
                    limiter, ceiling=cap, name=f"provider {provider!r}"
                )
        return limiter

    def adaptive_limit(self, provider: str) -> AdaptiveLimit | None:
        """The provider's adaptive controller (made with its limiter), if adaptive is on."""
        if self.adaptive and provider not in self._adaptive:
            self.provider_limiter(provider)
        return self._adaptive.get(provider)

    def feedback(
        self, provider: str, signal: Signal, granted_at: float | None, *, local: bool = False
    ) -> None:
        """Tell the adaptive limits how a probe went (no-op unless adaptive).

        ``local``: the failure was this process's (EMFILE...), which is the
        global limit's business and says nothing about the provider.
        """
        if not self.adaptive:
            return
        if local:
            if self._global_adaptive is not None:
                self._global_adaptive.feedback(signal, granted_at)
            return
        controller = self.adaptive_limit(provider)
        if controller is not None:
            controller.feedback(signal, granted_at)
        if self._global_adaptive is not None and signal is Signal.ANSWERED:
            self._global_adaptive.feedback(signal, granted_at)

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
        """Slots in use, limit and probes queued, globally (``"*"``) and per provider.

        Adaptive limits add their ``ceiling`` and how often they moved.
        """
        stats: dict[str, dict[str, int]] = {}
        if self._global_adaptive is not None:
            stats["*"] = self._global_adaptive.statistics()
        elif self.global_limiter is not None:
            stats["*"] = _limiter_stats(self.global_limiter)
        for name, limiter in self._provider_limiters.items():
            controller = self._adaptive.get(name)
            stats[name] = controller.statistics() if controller else _limiter_stats(limiter)
        return stats


def _limiter_stats(limiter: trio.CapacityLimiter) -> dict[str, int]:
    s = limiter.statistics()
    return {"in_use": s.borrowed_tokens, "limit": int(s.total_tokens), "queued": s.tasks_waiting}

"""Background checks: every adapter probed on its own interval, into the live state.

:class:`BackgroundChecker` runs one task per adapter whose schedule has an
``interval`` > 0 (:class:`~service.config.CheckSchedule`). Each task:

1. waits a random fraction ``[0, jitter]`` of its interval first, so adapters
   started together do not probe together;
2. probes through :meth:`HealthChecker.probe_one` (the checker's own path:
   deadlines, probe slots, ``min_interval``, redaction) and records the result
   in the :class:`~service.live.state.HealthState`;
3. sleeps ``interval`` — or ``unhealthy_interval`` while the adapter's
   reported status is down (unhealthy, timeout) or its results disagree with
   it; degraded adapters keep the normal interval — times a
   uniform factor in ``[1 - jitter, 1 + jitter]``, measured from the end of the
   probe, and goes back to 2.

:meth:`BackgroundChecker.refresh` probes given adapters now, once each, in
the same nursery (stale-while-revalidate: a request served a stale result
asks for a refresh and does not wait for it). An adapter is never probed
twice at once: a refresh of one whose loop is probing it is skipped.

With a :class:`~service.live.cluster.ClusterCoordinator` (``[cluster]``), each
tick first asks Redis for the adapter's lease: only the instance that gets
it probes (and shares the result); the others skip the tick and receive the
result through the coordinator. When Redis is unreachable every tick probes
locally (see :mod:`service.live.cluster`).

The tasks live in the nursery :meth:`BackgroundChecker.run` opens (the app
starts it in its lifetime nursery); :meth:`stop` cancels them and
:meth:`wait_stopped` waits until they have unwound. The adapters are the
ones configured when it starts.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

import trio

from adapters.base import Adapter

from ..config import CheckSchedule
from ..engine.checker import HealthChecker
from ..engine.report import ProbeResult
from .cluster import ClusterCoordinator, Lease
from .state import HealthState

__all__ = ["BackgroundChecker", "lease_ttl", "next_delay"]

logger = logging.getLogger("router_health.background")


def next_delay(
    schedule: CheckSchedule, *, fast: bool, rng: random.Random
) -> float:
    """Seconds until the next probe: the interval (fast or not) with uniform jitter."""
    base = schedule.fast_interval if fast else schedule.interval
    return base * (1 + rng.uniform(-schedule.jitter, schedule.jitter))


def lease_ttl(schedule: CheckSchedule, *, fast: bool) -> float:
    """How long a cluster lease on one adapter lasts: just under the shortest next tick.

    The holder's own next tick comes at least ``interval x (1 - jitter)``
    after its probe, so the lease has expired by then: the adapter is
    probed once per interval, by whoever ticks first.
    """
    base = schedule.fast_interval if fast else schedule.interval
    return max(base * (1 - schedule.jitter), 0.001)


class BackgroundChecker:
    """Probes ``adapters`` ((model, adapter) pairs) on their schedules into ``state``."""

    def __init__(
        self,
        checker: HealthChecker,
        adapters: Sequence[tuple[str, Adapter]],
        state: HealthState,
        *,
        rng: random.Random | None = None,
        cluster: ClusterCoordinator | None = None,
    ) -> None:
        self.checker = checker
        self.state = state
        self.cluster = cluster
        self.rng = rng or random.Random()
        self.adapters = [
            (model, adapter)
            for model, adapter in adapters
            if state.schedule_for(model, adapter.provider).enabled
        ]
        self._by_key = {(model, adapter.provider): adapter for model, adapter in self.adapters}
        self._probing: set[tuple[str, str]] = set()
        self._nursery: trio.Nursery | None = None
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()
        self.refreshes = 0  # refresh probes started (for tests and metrics)

    def __repr__(self) -> str:
        return f"BackgroundChecker(adapters={len(self.adapters)}, {self.state!r})"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every adapter's loop until :meth:`stop` (or cancellation)."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    for model, adapter in self.adapters:
                        nursery.start_soon(self._loop, model, adapter)
                    task_status.started()
        finally:
            self._nursery = None
            self._stopped.set()

    def refresh(self, adapters: Sequence[tuple[str, str]]) -> int:
        """Probe these (model, provider) now unless already being probed; returns how many.

        Adapters without background checks are ignored. Never waits.
        """
        nursery = self._nursery
        if nursery is None:
            return 0
        started = 0
        for key in adapters:
            adapter = self._by_key.get(key)
            if adapter is None or key in self._probing:
                continue
            self._probing.add(key)  # claimed now, so a second request skips it
            nursery.start_soon(self._refresh_one, key[0], adapter)
            started += 1
        self.refreshes += started
        return started

    async def _refresh_one(self, model: str, adapter: Adapter) -> None:
        try:
            await self._tick(model, adapter)
        finally:
            self._probing.discard((model, adapter.provider))

    def _fast(self, model: str, provider: str) -> bool:
        current = self.state.get(model, provider)
        # Down or changing: look again soon. Degraded (busy, slow) is not:
        # probing a rate-limited provider faster would only make it worse.
        return current is not None and (not current.up or current.changing)

    async def _tick(self, model: str, adapter: Adapter) -> None:
        """Probe the adapter now, unless another cluster instance holds it this interval."""
        schedule = self.state.schedule_for(model, adapter.provider)
        lease: Lease | bool | None = True
        if self.cluster is not None:
            fast = self._fast(model, adapter.provider)
            base = schedule.fast_interval if fast else schedule.interval
            if self.cluster.covered(model, adapter.provider, base):
                return  # the holder's results keep coming: nothing to ask
            lease = await self.cluster.acquire(
                model, adapter.provider, lease_ttl(schedule, fast=fast)
            )
        if lease is None:
            return  # another instance probes it; its result arrives by the coordinator
        result = await self._probe_and_record(model, adapter)
        if result is not None and isinstance(lease, Lease) and self.cluster is not None:
            await self.cluster.share(lease, result, schedule.served_max_age)

    async def _probe_and_record(self, model: str, adapter: Adapter) -> ProbeResult | None:
        try:
            result = await self.checker.probe_one(model, adapter)
        except Exception:
            # The checker turns every adapter error into a result; this is
            # our own bug. Keep the other adapters (and the app) going.
            logger.exception(
                "background check of %s - %s failed", adapter.adapter_name, adapter.provider
            )
            return None
        self.state.record(result)
        return result

    def stop(self) -> None:
        self._scope.cancel()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def _loop(self, model: str, adapter: Adapter) -> None:
        schedule = self.state.schedule_for(model, adapter.provider)
        await trio.sleep(schedule.interval * self.rng.uniform(0, schedule.jitter))
        key = (model, adapter.provider)
        while True:
            if key not in self._probing:  # else a refresh is at it right now
                self._probing.add(key)
                try:
                    await self._tick(model, adapter)
                finally:
                    self._probing.discard(key)
            fast = self._fast(model, adapter.provider)
            await trio.sleep(next_delay(schedule, fast=fast, rng=self.rng))

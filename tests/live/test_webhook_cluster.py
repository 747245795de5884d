"""The webhook of several replicas sharing results over a real Redis: one of them posts each transition.

Two replicas (a live state, a running :class:`ClusterCoordinator`, a
:class:`WebhookNotifier`) post to one receiver on loopback
(tests/support/receivers.py), against a real ``redis-server``
(tests/support/redis.py). A result "shared" is recorded into every running
replica's state, as each coordinator records what the others publish.
Tests wait for the notifiers' statistics, never for time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import coredis
import pytest
import trio

from adapters import FailureKind
from adapters.base import Secret
from service.config import CheckSchedule
from service.config.cluster import ClusterConfig
from service.config.webhook import WebhookConfig
from service.engine.report import ProbeStatus
from service.live.cluster import ClusterCoordinator
from service.live.state import HealthState
from service.live.webhook import WebhookNotifier, WebhookStatistics
from tests.support.fakes import probe_result
from tests.support.receivers import HttpReceiver, Received
from tests.support.redis import RedisServer, needs_redis

pytestmark = needs_redis

TOKEN = "rhtesttoken-webhook-cluster-61c2"
QUERY_SECRET = "rhtestkey-webhook-cluster-query-0e7b"
REDIS_TIMEOUT = 5.0
PATIENCE = 60.0


@dataclass
class Replica:
    state: HealthState
    cluster: ClusterCoordinator
    webhook: WebhookNotifier

    async def wait_handled(self, n: int) -> WebhookStatistics:
        """Until ``n`` transitions were posted here or left to the other replica."""
        with trio.fail_after(PATIENCE):
            return await self.webhook.wait_until(
                lambda s: s.sent + s.deduplicated >= n and s.pending == 0
            )


async def _run(replica: Replica, *, task_status: trio.TaskStatus[None]) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(replica.webhook.run)
        await nursery.start(replica.cluster.run)
        task_status.started()


@asynccontextmanager
async def replicas(redis_url: str, hook_url: str, count: int = 2) -> AsyncIterator[list[Replica]]:
    running = []
    async with trio.open_nursery() as nursery:
        for i in range(count):
            state = HealthState(lambda model, provider: CheckSchedule(interval=10))
            cluster = ClusterCoordinator(
                ClusterConfig(
                    redis_url=Secret(redis_url), instance_id=f"replica-{i}", timeout=REDIS_TIMEOUT
                ),
                state, known={("gpt-4", "openai")},
            )
            webhook = WebhookNotifier(
                WebhookConfig(url=hook_url, min_interval=0.1, token=Secret(TOKEN)), state,
                claims=cluster,
            )
            replica = Replica(state, cluster, webhook)
            await nursery.start(_run, replica)
            running.append(replica)
        with trio.fail_after(PATIENCE):
            for replica in running:
                await replica.cluster.connected.wait_value(True)
        yield running
        nursery.cancel_scope.cancel()


def share(running: Sequence[Replica], status: ProbeStatus) -> None:
    failure = None if status.usable else FailureKind.HTTP_STATUS
    result = probe_result(status, failure=failure, checked_at=time.time())
    for replica in running:
        replica.state.record(result)


def transitions(requests: list[Received]) -> list[tuple[str | None, str]]:
    return [(t["previous"], t["current"]) for r in requests for t in r.json()["transitions"]]


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> HttpReceiver:
    r = HttpReceiver(ok_status=204)
    await nursery.start(r.serve)
    return r


async def test_two_replicas_post_each_transition_once(
    redis: RedisServer, receiver: HttpReceiver, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with replicas(redis.url, receiver.url(f"/hook?key={QUERY_SECRET}")) as running:
        share(running, ProbeStatus.HEALTHY)
        share(running, ProbeStatus.UNHEALTHY)
        stats = [await replica.wait_handled(2) for replica in running]
        share(running, ProbeStatus.HEALTHY)
        stats = [await replica.wait_handled(3) for replica in running]
        raw = coredis.Redis.from_url(redis.url, decode_responses=True)
        async with raw:
            keys = [key async for key in raw.scan_iter(match="*")]
    # Each once (whichever replica posted it: their POSTs may arrive in either order).
    assert sorted(transitions(receiver.requests), key=str) == sorted(
        [(None, "healthy"), ("healthy", "unhealthy"), ("unhealthy", "healthy")], key=str
    )
    assert sum(s.sent for s in stats) == 3
    assert sum(s.deduplicated for s in stats) == 3
    claims = [key for key in keys if ":{notify:" in key]
    assert len(claims) == 2  # webhook-healthy (taken again by the recovery), webhook-unhealthy
    for text in [*keys, caplog.text]:
        assert TOKEN not in text
        assert QUERY_SECRET not in text
    assert not [key for key in keys if "/hook" in key or "127.0.0.1" in key]


async def test_with_redis_stopped_each_replica_posts(
    redis: RedisServer, receiver: HttpReceiver,
) -> None:
    async with replicas(redis.url, receiver.url("/hook")) as running:
        share(running, ProbeStatus.HEALTHY)
        for replica in running:
            await replica.wait_handled(1)
        redis.stop()
        share(running, ProbeStatus.UNHEALTHY)
        stats = [await replica.wait_handled(2) for replica in running]
    assert transitions(receiver.requests).count(("healthy", "unhealthy")) == 2
    assert [s.deduplicated for s in stats] in ([0, 1], [1, 0])

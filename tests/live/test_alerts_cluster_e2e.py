"""Two real instances (the app's lifespan) sharing checks over a real Redis, one alert channel and one webhook.

The simulator turns a provider down (HTTP 503) and back; both instances
record the shared results, and Apprise's ``json://`` plugin and the webhook
post to one receiver on loopback (tests/support/receivers.py): one ``down``,
one ``recovered`` and one POST per transition reach it, whichever instance
sent them. Waits are for the receiver's requests and the notifiers'
statistics, never for time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio

from service import parse_config
from service.api.app import EXTENSION_KEY, create_app
from service.live.alerts import ChannelStatistics
from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support.receivers import HttpReceiver
from tests.support.redis import RedisServer, needs_redis

pytestmark = needs_redis

PASSWORD = "rhtestkey-alerts-cluster-e2e-4c1d"
PATIENCE = 60.0


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    return [SimProvider("p1", "openai-compatible", None, ["m1"], Behavior(latency=0.01))]


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> HttpReceiver:
    r = HttpReceiver()
    await nursery.start(r.serve)
    return r


def config_for(sim: Simulator, redis_url: str, port: int, name: str) -> Any:
    (entry,) = sim.provider_entries()
    document: dict[str, Any] = {
        "checks": {"interval": 0.25, "jitter": 0, "adapter_timeout": 1, "timeout": 2,
                   "model_timeout": 2},
        "models": [{"name": "m1", "providers": [{**entry, "model": "m1"}]}],
        "cluster": {"redis_url": redis_url, "instance_id": name, "timeout": 5.0},
        "storage": {"enabled": False},
        "alerts": [{"name": "hook", "url": f"json://ops:{PASSWORD}@127.0.0.1:{port}/alerts"}],
        "webhook": {"url": f"http://127.0.0.1:{port}/webhook", "min_interval": 0.1},
    }
    return parse_config(document, source=f"<{name}>", env={})


@asynccontextmanager
async def instances(sim: Simulator, redis_url: str, port: int) -> AsyncIterator[list[Any]]:
    async with AsyncExitStack() as stack:
        states = []
        for name in ("i1", "i2"):
            app = create_app(config_for(sim, redis_url, port, name))
            await stack.enter_async_context(app.test_app())
            states.append(app.extensions[EXTENSION_KEY])
        yield states


async def handled(state: Any, n: int) -> None:
    """Until the instance's channel has delivered or left to the other ``n`` messages, idle."""

    def done(stats: list[ChannelStatistics]) -> bool:
        return stats[0].delivered + stats[0].deduplicated >= n and stats[0].pending == 0

    with trio.fail_after(PATIENCE):
        await state.alerts.wait_until(done)


def titles(receiver: HttpReceiver) -> list[str]:
    return [r.json()["title"] for r in receiver.to("/alerts")]


def posted(receiver: HttpReceiver) -> list[tuple[Any, Any]]:
    return [
        (t["previous"], t["current"])
        for r in receiver.to("/webhook") for t in r.json()["transitions"]
    ]


async def test_two_instances_send_one_down_one_recovered_and_post_each_transition_once(
    sim: Simulator, redis: RedisServer, receiver: HttpReceiver,
) -> None:
    async with instances(sim, redis.url, receiver.port) as states:
        with trio.fail_after(PATIENCE):
            await receiver.wait_until(lambda: (None, "healthy") in posted(receiver))
        sim.set_behavior("p1", mode="status", status=503)
        for state in states:
            await handled(state, 1)
        sim.set_behavior("p1", mode="ok")
        for state in states:
            await handled(state, 2)
        with trio.fail_after(PATIENCE):
            await receiver.wait_until(lambda: ("unhealthy", "healthy") in posted(receiver))
            for state in states:
                await state.webhook.wait_until(lambda s: s.pending == 0)
        stats = [state.alerts.statistics()[0] for state in states]
    assert sorted(titles(receiver)) == ["m1 / p1 is down", "m1 / p1 recovered"]
    assert sum(s.delivered for s in stats) == 2
    assert sum(s.deduplicated for s in stats) == 2
    # (An instance's first result may be its own probe's: it tells of it too.)
    assert posted(receiver).count(("healthy", "unhealthy")) == 1
    assert posted(receiver).count(("unhealthy", "healthy")) == 1

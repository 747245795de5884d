"""Several instances sharing their checks through a real Redis (``[cluster]``).

A real ``redis-server`` (Debian's package; ``.ci/run`` installs it) runs on a
free port for each test that needs one; instances are real apps (their
lifespan: background checks, the coordinator) probing the real simulator
over loopback. Counting probes per interval is the point of these tests,
yet none waits for time to pass: a test waits (bounded) until the probes it
needs have happened, then bounds their number by the time they took. A lease
lasts just under an interval, so no adapter can be probed more often than
once per lease however the instances' loops are scheduled; a busy machine
only makes the loops late, which keeps the count further under the bound.
Redis calls get a generous deadline (a busy machine must not look like an
unreachable Redis).
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
from trio_util import AsyncValue  # type: ignore[import-untyped]

from adapters import FailureKind
from adapters.base import Secret
from service import ConfigError, parse_config
from service.api.app import EXTENSION_KEY, create_app
from service.config import CheckSchedule
from service.config.cluster import ClusterConfig, display_redis_url, sentinel_url
from service.engine.report import ProbeResult, ProbeStatus
from service.live.background import lease_ttl
from service.live.cluster import ClusterCoordinator, Lease, result_from_json, result_to_json
from service.live.state import HealthState
from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support.redis import REDIS, RedisServer, needs_redis
from tests.support.served import free_port

INTERVAL = 0.5
JITTER = 0.2
#: How long one adapter's lease lasts: at most one probe per adapter per LEASE.
LEASE = lease_ttl(CheckSchedule(interval=INTERVAL, jitter=JITTER), fast=False)
#: Deadline of one Redis call: past it an instance probes locally, which these
#: tests would count as a failure. Generous, so a busy machine is not "unreachable".
REDIS_TIMEOUT = 5.0
#: Bound on any wait for something that takes a few intervals.
PATIENCE = 60.0
#: 4 simulated providers x 3 models = 12 adapters.
PROVIDERS = ("p1", "p2", "p3", "p4")
MODELS = ("m1", "m2", "m3")
ADAPTERS = len(PROVIDERS) * len(MODELS)

@pytest.fixture
def sim_providers() -> list[SimProvider]:
    return [
        SimProvider(name, "openai-compatible", None, list(MODELS), Behavior(latency=0.01))
        for name in PROVIDERS
    ]


def config_for(sim: Simulator, redis_url: str | None, instance: str, **cluster: Any) -> Any:
    entries = {entry["name"]: entry for entry in sim.provider_entries()}
    document: dict[str, Any] = {
        "checks": {"interval": INTERVAL, "jitter": JITTER, "adapter_timeout": 1,
                   "timeout": 2, "model_timeout": 2},
        "models": [
            {"name": model, "providers": [{**entries[p], "model": model} for p in PROVIDERS]}
            for model in MODELS
        ],
    }
    if redis_url is not None:
        document["cluster"] = {"redis_url": redis_url, "instance_id": instance,
                               "timeout": REDIS_TIMEOUT, **cluster}
    return parse_config(document, source=f"<{instance}>", env={})


@asynccontextmanager
async def instance(sim: Simulator, redis_url: str | None, name: str) -> AsyncIterator[Any]:
    """One running instance (the app's lifespan: background checks and coordinator)."""
    app = create_app(config_for(sim, redis_url, name))
    async with app.test_app():
        yield app.extensions[EXTENSION_KEY]


async def until(condition: Any, seconds: float = PATIENCE) -> None:
    """Wait (bounded polling) for a counter-like condition no event announces."""
    with trio.fail_after(seconds):
        for _ in range(int(seconds / 0.05) + 1):
            if condition():
                return
            await trio.sleep(0.05)


async def probes_until(sim: Simulator, count: int) -> tuple[int, float]:
    """Wait (bounded) until the simulator has seen ``count`` more probes.

    Returns how many it saw and how long (seconds) that took.
    """
    before, start = sim.total_stats().requests, trio.current_time()
    with trio.fail_after(PATIENCE):
        await sim.wait_until(lambda: sim.total_stats().requests - before >= count)
    return sim.total_stats().requests - before, trio.current_time() - start


def leased_at_most(elapsed: float) -> float:
    """The most probes leases allow in ``elapsed`` seconds: one per adapter per lease,
    plus one each already on its way when the count started.

    Unloaded, the 4 x ADAPTERS probes of four intervals take about 2 s: 72 allowed
    (one adapter probed by two instances per interval would need 96, by three 144).
    """
    return ADAPTERS * (elapsed / LEASE + 1)


class ProbeCounter:
    """Probes one instance made itself (its checker's results that were not cached)."""

    def __init__(self, state: Any) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.since: dict[tuple[str, str], int] = {}
        self.total = AsyncValue(0)  # announces each probe
        state.manager.health_checker.result_listeners.append(self)

    def __call__(self, result: ProbeResult) -> None:
        if not result.cached:
            key = (result.model, result.provider)
            self.counts[key] = self.counts.get(key, 0) + 1
            self.total.value += 1

    def mark(self) -> None:
        """Count from now on."""
        self.since = dict(self.counts)

    def each_adapter(self, times: int) -> bool:
        """Whether this instance probed every adapter ``times`` times since :meth:`mark`."""
        return all(
            self.counts.get((m, p), 0) - self.since.get((m, p), 0) >= times
            for m in MODELS for p in PROVIDERS
        )


async def each_probes_each_adapter(counters: list[ProbeCounter], times: int) -> None:
    """Wait (bounded) until every instance has probed every adapter ``times`` times itself."""
    for counter in counters:
        counter.mark()
    with trio.fail_after(PATIENCE):
        for counter in counters:
            await counter.total.wait_value(lambda _, c=counter: c.each_adapter(times))


async def all_known(states: list[Any]) -> None:
    def knows_all(state: Any) -> bool:
        return all(state.health.get(m, p) is not None for m in MODELS for p in PROVIDERS)

    with trio.fail_after(PATIENCE):
        for state in states:
            await state.health.changes.wait_value(lambda _, s=state: knows_all(s))


async def all_updated_since(states: list[Any], since: float) -> None:
    """Wait (bounded) until each of ``states`` has a result newer than ``since`` for every adapter."""

    def fresh(state: Any) -> bool:
        return all(
            (current := state.health.get(m, p)) is not None and current.at > since
            for m in MODELS for p in PROVIDERS
        )

    with trio.fail_after(PATIENCE):
        for state in states:
            await state.health.changes.wait_value(lambda _, s=state: fresh(s))


async def instances(
    stack: AsyncExitStack, sim: Simulator, redis_url: str | None, names: str
) -> list[Any]:
    """One instance per letter of ``names``, kept running by ``stack``, once each knows every adapter."""
    states = [await stack.enter_async_context(instance(sim, redis_url, n)) for n in names]
    await all_known(states)
    return states


# -- three instances against one Redis ---------------------------------------------------------


@needs_redis
async def test_three_instances_probe_each_adapter_once_per_interval(
    redis: RedisServer, sim: Simulator
) -> None:
    async with AsyncExitStack() as stack:
        states = await instances(stack, sim, redis.url, "abc")
        # Four intervals' worth of probes: about one per adapter per interval
        # across the three (not three), whatever the time they took.
        probes, elapsed = await probes_until(sim, 4 * ADAPTERS)
        assert probes <= leased_at_most(elapsed), (probes, elapsed)
        clusters = [s.cluster for s in states]
        # The work is spread, not one leader doing everything (the last to
        # start gets its share as the others' results age).
        await until(lambda: all(c.leases_won > 0 for c in clusters))
        assert all(c.received > 0 for c in clusters)
        assert all(c.reachable and c.local_probes == 0 for c in clusters)
        # Every instance knows every adapter, probed by itself or not.
        for state in states:
            assert {(m, p) for m in MODELS for p in PROVIDERS} == {
                (m, p) for m in MODELS for p in PROVIDERS if state.health.get(m, p)
            }


async def test_without_the_cluster_each_instance_probes_everything(sim: Simulator) -> None:
    # No Redis here: nothing to skip for.
    async with AsyncExitStack() as stack:
        states = await instances(stack, sim, None, "abc")
        counters = [ProbeCounter(state) for state in states]
        start = sim.total_stats().requests
        # Each instance probes every adapter itself, again and again: three times the bill.
        await each_probes_each_adapter(counters, 4)
    assert sim.total_stats().requests - start >= 3 * 4 * ADAPTERS


@needs_redis
async def test_a_stopped_instances_adapters_are_taken_over(
    redis: RedisServer, sim: Simulator
) -> None:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(instance(sim, redis.url, "a"))
        b = await stack.enter_async_context(instance(sim, redis.url, "b"))
        async with instance(sim, redis.url, "c") as c:
            await all_known([a, b, c])
            # c started last; leases drift to it as a and b's results age.
            await until(lambda: c.cluster.leases_won > 0)
        # c is gone (as if it crashed: its leases just expire): a and b take
        # every adapter over; both know a result about each that c never made.
        gone = trio.current_time()
        await all_updated_since([a, b], gone)
        won_before = a.cluster.leases_won + b.cluster.leases_won
        probes, elapsed = await probes_until(sim, 4 * ADAPTERS)
        assert probes <= leased_at_most(elapsed), (probes, elapsed)
        # Every probe of the window came with a lease a or b won (bar one per
        # adapter already on its way when it opened).
        assert a.cluster.leases_won + b.cluster.leases_won - won_before >= 4 * ADAPTERS * 0.6
        # And the results keep coming to both.
        await all_updated_since([a, b], gone + elapsed)


@needs_redis
async def test_redis_going_away_means_local_checks_and_back(
    redis: RedisServer, sim: Simulator
) -> None:
    async with AsyncExitStack() as stack:
        states = await instances(stack, sim, redis.url, "ab")
        counters = [ProbeCounter(state) for state in states]
        redis.stop()
        with trio.fail_after(PATIENCE):
            for state in states:
                await state.cluster.connected.wait_value(False)
        # Each instance checks everything itself.
        await each_probes_each_adapter(counters, 2)
        for state in states:
            status = state.cluster.status()
            assert status["status"] == "unreachable" and "error" in status
            assert state.cluster.local_probes > 0
        client = states[0].app.test_client()  # the app keeps serving
        response = await client.get("/readyz")
        assert response.status_code == 200
        assert (await response.get_json())["cluster"] == {"status": "unreachable", "rejected": 0}

        redis.start()
        with trio.fail_after(PATIENCE):
            for state in states:
                await state.cluster.connected.wait_value(True)
        # Two rounds of leases won since: the leases have settled.
        won = sum(state.cluster.leases_won for state in states)
        await until(lambda: sum(state.cluster.leases_won for state in states) >= won + 2 * ADAPTERS)
        local = [state.cluster.local_probes for state in states]
        probes, elapsed = await probes_until(sim, 4 * ADAPTERS)
        assert probes <= leased_at_most(elapsed), (probes, elapsed)  # shared again
        assert [state.cluster.local_probes for state in states] == local


# -- leases, fencing, results (one coordinator against Redis) -----------------------------------


def result(provider: str = "p1", status: ProbeStatus = ProbeStatus.HEALTHY) -> ProbeResult:
    # Checked now: instances refuse shared results whose time is far from theirs.
    return ProbeResult(model="m1", provider=provider, adapter="OpenAICompatibleAdapter",
                       status=status, latency_ms=12.5, checked_at=time.time(),
                       http_status=200)


def coordinator(url: str, name: str, timeout: float = REDIS_TIMEOUT) -> ClusterCoordinator:
    state = HealthState(lambda model, provider: CheckSchedule(interval=10))
    return ClusterCoordinator(
        ClusterConfig(redis_url=Secret(url), instance_id=name, timeout=timeout),
        state,
        known={("m1", "p1")},
    )


@needs_redis
async def test_a_fenced_off_writer_cannot_overwrite_a_newer_lease(
    redis: RedisServer, nursery: trio.Nursery
) -> None:
    a, b = coordinator(redis.url, "a"), coordinator(redis.url, "b")
    await nursery.start(a.run)
    await nursery.start(b.run)
    first = await a.acquire("m1", "p1", 1.0)
    assert isinstance(first, Lease) and first.token >= 1
    assert await b.acquire("m1", "p1", 10) is None  # held
    # a's lease expiring in Redis is what is under test: b asks until it gets it.
    second = await b.acquire("m1", "p1", 10)
    with trio.fail_after(PATIENCE):
        while second is None:
            await trio.sleep(0.05)
            second = await b.acquire("m1", "p1", 10)
    assert isinstance(second, Lease)
    assert second.token > first.token
    # a was paused past its lease: its late result must not replace b's.
    assert await a.share(first, result(status=ProbeStatus.UNHEALTHY), 10) is False
    assert await b.share(second, result(), 10) is True
    with trio.fail_after(5):
        await a.state.changes.wait_value(1)
    shared = a.state.get("m1", "p1")
    assert shared is not None and shared.reported is ProbeStatus.HEALTHY


@needs_redis
async def test_a_starting_instance_loads_the_stored_results(
    redis: RedisServer, nursery: trio.Nursery
) -> None:
    a = coordinator(redis.url, "a")
    await nursery.start(a.run)
    lease = await a.acquire("m1", "p1", 10)
    assert isinstance(lease, Lease)
    assert await a.share(lease, result(), 10)
    late = coordinator(redis.url, "late")
    await nursery.start(late.run)  # started() comes after loading
    loaded = late.state.get("m1", "p1")
    assert loaded is not None and loaded.latest.latency_ms == 12.5


def test_shared_results_round_trip_and_reject_garbage() -> None:
    original = ProbeResult(model="m:1", provider="p/1", adapter="A", status=ProbeStatus.DEGRADED,
                           latency_ms=None, checked_at=1.5, error="HTTP 429", retry_after=3.0,
                           failure=FailureKind.RATE_LIMITED)
    back, who, token = result_from_json(result_to_json(original, instance="i", token=7))
    assert (back, who, token) == (original, "i", 7)
    for garbage in (b"", b"[]", b'{"model": 1}', b'{"status": "nope"}', b"\xff"):
        with pytest.raises(ValueError, match="not a shared result"):
            result_from_json(garbage)


async def test_an_unreachable_redis_never_blocks_and_never_leaks_the_password(
    caplog: pytest.LogCaptureFixture, nursery: trio.Nursery
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"redis://:rhtestkey-redis-password@127.0.0.1:{free_port()}/0"  # nobody listens
    c = coordinator(url, "x", timeout=1.0)
    with trio.fail_after(5):
        await nursery.start(c.run)  # starts anyway
        assert await c.acquire("m1", "p1", 1) is False  # probe locally
    status = c.status()
    assert status["status"] == "unreachable" and status["url"].startswith("redis://127.0.0.1:")
    text = repr(c) + repr(c.config) + str(status) + caplog.text
    assert "rhtestkey" not in text
    assert display_redis_url(url) == f"redis://127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}/0"


def test_cluster_config_is_validated_one_line_each() -> None:
    def parse(cluster: dict[str, Any], checks: dict[str, Any] | None = None,
              env: dict[str, str] | None = None) -> Any:
        return parse_config(
            {"checks": {"interval": 10} if checks is None else checks, "cluster": cluster,
             "models": [{"name": "m", "providers": [
                 {"name": "p", "type": "ollama", "base_url": "http://127.0.0.1:9"}]}]},
            source="c.toml", env=env or {},
        )

    ok = parse({"redis_url_env": "REDIS_URL", "mode": "cluster", "key_prefix": "rh-prod"},
               env={"REDIS_URL": "redis://:rhtestkey-pw@redis:6379/0"})
    assert ok.cluster.mode == "cluster" and ok.cluster.key_prefix == "rh-prod"
    assert "rhtestkey" not in repr(ok)
    with pytest.raises(ConfigError, match=r"cluster\.redis_url: mode 'standalone' takes a "
                       r"redis://, rediss://, unix:// URL, got 'http://x'"):
        parse({"redis_url": "http://:rhtestkey-pw@x"})
    with pytest.raises(ConfigError, match="list the sentinels as host:port"):
        parse({"redis_url": "redis+sentinel://:rhtestkey-pw@s1/mymaster", "mode": "sentinel"})
    with pytest.raises(ConfigError, match="takes a redis\\+sentinel:// URL"):
        parse({"redis_url": "redis://s1:26379/mymaster", "mode": "sentinel"})
    with pytest.raises(ConfigError) as info:
        parse({"redis_url": "http://:rhtestkey-pw@x", "mode": "ring", "key_prefix": "a b",
               "timeout": 0, "colour": 1}, checks={})
    lines = str(info.value).splitlines()
    for expected in (
        "cluster.mode: must be one of standalone, cluster, sentinel",
        "cluster.key_prefix: must be 1 to 64 letters",
        "cluster.timeout: must be a finite number of seconds > 0",
        "cluster.colour: unknown key",
        "cluster: instances share their background checks: set [checks] interval > 0",
    ):
        assert any(expected in line for line in lines), (expected, lines)
    assert "rhtestkey" not in str(info.value)
    with pytest.raises(ConfigError, match=r"cluster\.redis_url: required"):
        parse({})
    with pytest.raises(ConfigError, match="REDIS_URL is not set"):
        parse({"redis_url_env": "REDIS_URL"})


def test_sentinel_urls_are_parsed_and_shown_without_the_password() -> None:
    url = "redis+sentinel://:rhtestkey-pw@s1:26379,[::1]:26380/mymaster/2"
    assert sentinel_url(url) == ([("s1", 26379), ("::1", 26380)], "mymaster", "rhtestkey-pw", 2)
    assert display_redis_url(url) == "redis+sentinel://s1:26379,[::1]:26380/mymaster/2"
    assert display_redis_url("redis://u:rhtestkey@h:1/0?x=rhtestkey") == "redis://h:1/0"
    for bad, message in (
        ("redis://h:1/m", "starts with redis+sentinel://"),
        ("redis+sentinel://h/m", "host:port"),
        ("redis+sentinel://h:1", "name the monitored primary"),
        ("redis+sentinel://h:1/m/x", "must be a number"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            sentinel_url(bad)


@pytest.fixture
def sentinel(redis: RedisServer, tmp_path: Any) -> Iterator[str]:
    """A redis-server in sentinel mode watching ``redis`` as primary-1; yields its URL."""
    assert REDIS is not None
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\n"
        f"sentinel monitor primary-1 127.0.0.1 {redis.port} 1\n"
    )
    process = subprocess.Popen([REDIS, str(conf), "--sentinel"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # its own "monitoring" line, not a sleep
            if b"+monitor" in line:
                break
        yield f"redis+sentinel://127.0.0.1:{port}/primary-1"
    finally:
        process.terminate()
        process.wait(timeout=10)


@needs_redis
async def test_instances_find_the_primary_through_sentinel(
    redis: RedisServer, sentinel: str, nursery: trio.Nursery
) -> None:
    url = sentinel
    a = ClusterCoordinator(
        ClusterConfig(redis_url=Secret(url), mode="sentinel", instance_id="a"),
        HealthState(lambda model, provider: CheckSchedule(interval=10)),
        known={("m1", "p1")},
    )
    b = coordinator(redis.url, "b")  # straight to the primary: the same data
    await nursery.start(a.run)
    await nursery.start(b.run)
    lease = await a.acquire("m1", "p1", 10)
    assert isinstance(lease, Lease) and a.status()["status"] == "connected"
    assert await b.acquire("m1", "p1", 10) is None  # a's lease, seen through the primary
    assert await a.share(lease, result(), 10)
    with trio.fail_after(5):
        await b.state.changes.wait_value(1)

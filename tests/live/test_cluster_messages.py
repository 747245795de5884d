"""What arrives over Redis is checked before it moves anything; a hanging Redis logs one line.

Poisoned messages are published with a raw client to a real ``redis-server``
on a free port, the way anything with access to that Redis could. Each test
ends its burst of poison with one valid *marker* result: Redis delivers one
publisher's messages to a subscriber in order, so once the marker is in a
replica's state every message before it has been handled; nothing waits for
time to pass.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

import coredis
import pytest
import trio

from service.api.app import EXTENSION_KEY
from service.api.healthjson import HEALTH_JSON
from service.engine.report import ProbeResult, ProbeStatus
from service.live.cluster import ClusterCoordinator, Lease, result_from_json, result_to_json
from tests.support.app import make_app, serving
from tests.support.fakes import adapter, hang, probe_result
from tests.support.redis import RedisServer, needs_redis, publish, replica

#: Far enough either way to be outside any clock-skew allowance.
HOUR = 3600.0


def message(**changes: Any) -> dict[str, Any]:
    """A valid shared result (what another instance publishes) with ``changes``."""
    data: dict[str, Any] = {
        "instance": "peer", "model": "m1", "provider": "p1",
        "adapter": "OpenAICompatibleAdapter", "status": "unhealthy", "latency_ms": 12.5,
        "checked_at": time.time(), "http_status": 500, "error": "HTTP 500",
        "failure": "http_status", "retry_after": None, "source": None, "samples": None,
        "token": 7,
    }
    data.update(changes)
    return data


def without(field: str) -> dict[str, Any]:
    data = message()
    del data[field]
    return data


def encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()  # allow_nan: NaN and Infinity go out as they are


def poisons() -> dict[str, bytes]:
    """Every kind of bad message tried, by name; each would flip m1/p1 if it were taken."""
    now = time.time()
    cases: dict[str, dict[str, Any] | bytes] = {
        "checked_at an hour ahead": message(checked_at=now + HOUR),
        "checked_at 1e308": message(checked_at=1e308),
        "checked_at a day ago": message(checked_at=now - 24 * HOUR),
        "checked_at 0": message(checked_at=0),
        "checked_at negative": message(checked_at=-1e12),
        "checked_at NaN": message(checked_at=math.nan),
        "checked_at Infinity": message(checked_at=math.inf),
        "checked_at a string": message(checked_at=str(now)),
        "checked_at true": message(checked_at=True),
        "checked_at null": message(checked_at=None),
        "latency NaN": message(latency_ms=math.nan),
        "latency Infinity": message(latency_ms=math.inf),
        "latency 1e308": message(latency_ms=1e308),
        "latency negative": message(latency_ms=-5),
        "latency a string": message(latency_ms="12"),
        "latency true": message(latency_ms=True),
        "http_status 999": message(http_status=999),
        "http_status 99": message(http_status=99),
        "http_status a float": message(http_status=500.5),
        "http_status a string": message(http_status="500"),
        "http_status true": message(http_status=True),
        "status unknown": message(status="exploded"),
        "status upper case": message(status="UNHEALTHY"),
        "status a number": message(status=1),
        "failure unknown": message(failure="meltdown"),
        "failure a number": message(failure=3),
        "retry_after negative": message(retry_after=-1),
        "retry_after a year": message(retry_after=365 * 24 * HOUR),
        "retry_after NaN": message(retry_after=math.nan),
        "samples negative": message(samples=-1),
        "samples a float": message(samples=1.5),
        "samples a string": message(samples="3"),
        "source unknown": message(source="elsewhere"),
        "error a number": message(error=5),
        "error 100k characters": message(error="x" * 100_000),
        "adapter 10k characters": message(adapter="A" * 10_000),
        "adapter a list": message(adapter=["A"]),
        "model unknown": message(model="m9"),
        "provider unknown": message(provider="p9"),
        "model 10k characters": message(model="m" * 10_000),
        "model a number": message(model=1),
        "instance a number": message(instance=5),
        "instance 10k characters": message(instance="i" * 10_000),
        "token a string": message(token="7"),
        "token negative": message(token=-1),
        "token true": message(token=True),
        "missing model": without("model"),
        "missing provider": without("provider"),
        "missing status": without("status"),
        "missing checked_at": without("checked_at"),
        "missing instance": without("instance"),
        "missing token": without("token"),
        "missing adapter": without("adapter"),
        "not JSON": b"not json",
        "empty": b"",
        "a list": b"[]",
        "null": b"null",
        "truncated": encode(message())[:40],
        "nested 100k deep": b"[" * 100_000 + b"]" * 100_000,
        "1 MB of padding": encode(message(padding="x" * 1_000_000)),
        "not UTF-8": b"\xff\xfe" + encode(message()),
    }
    return {name: case if isinstance(case, bytes) else encode(case) for name, case in cases.items()}


def marker() -> bytes:
    """A valid result for m1/p2: once a replica has it, everything published before is handled."""
    return encode(message(instance="marker", provider="p2", status="healthy", http_status=200,
                          error=None, failure=None))


async def marker_seen(*replicas: ClusterCoordinator) -> None:
    with trio.fail_after(10):
        for each in replicas:
            await each.state.changes.wait_value(
                lambda _, s=each.state: s.get("m1", "p2") is not None
            )


async def shared(origin: ClusterCoordinator, result: ProbeResult) -> None:
    """``result`` shared by ``origin`` the way a lease holder shares it."""
    lease = await origin.acquire(result.model, result.provider, 10)
    assert isinstance(lease, Lease)
    assert await origin.share(lease, result, 10)


def healthy_now(provider: str = "p1") -> ProbeResult:
    return ProbeResult(model="m1", provider=provider, adapter="OpenAICompatibleAdapter",
                       status=ProbeStatus.HEALTHY, latency_ms=10.0, checked_at=time.time(),
                       http_status=200)


# -- finding 2: nothing a peer publishes is taken on trust ---------------------------------------


@needs_redis
async def test_a_poisoned_message_changes_no_replicas_state(
    redis: RedisServer, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    origin, a, b = replica(redis.url, "origin"), replica(redis.url, "a"), replica(redis.url, "b")
    for each in (origin, a, b):
        await nursery.start(each.run)
    await shared(origin, healthy_now())
    with trio.fail_after(10):
        for each in (a, b):
            await each.state.changes.wait_value(1)
    replicas = (origin, a, b)  # origin subscribes too (its own share it never records)
    before = {
        each.instance: (each.state.get("m1", "p1"), each.state.history("m1", "p1"),
                        each.state.changes.value)
        for each in replicas
    }
    bad = poisons()
    await publish(redis.url, *bad.values(), marker())
    await marker_seen(*replicas)
    for each in replicas:
        latest, history, changes = before[each.instance]
        assert each.state.get("m1", "p1") is latest, each.instance
        assert each.state.history("m1", "p1") == history
        assert each.state.changes.value == changes + 1  # the marker, nothing else
        assert each.rejected == len(bad), (each.instance, each.rejected, len(bad))
        status = each.status()
        assert status["status"] == "connected" and status["rejected"] == len(bad)
        assert each.reachable  # poison never breaks the subscription
    # Counted, not logged per message: one line per subscriber for the whole burst.
    warnings = [r for r in caplog.records
                if r.name == "router_health.cluster" and r.levelno >= logging.WARNING]
    assert len(warnings) == 3, [r.getMessage()[:100] for r in warnings]
    assert all("rejected" in r.getMessage() for r in warnings)
    assert all(len(r.getMessage()) < 500 for r in warnings)


@needs_redis
async def test_a_future_timestamp_freezes_nothing_and_a_fast_clock_never_wins(
    redis: RedisServer, nursery: trio.Nursery
) -> None:
    a = replica(redis.url, "a")
    await nursery.start(a.run)
    a.state.record(healthy_now())  # a's own probe
    # Far in the future: dropped; the adapter's next real result still counts.
    await publish(redis.url, encode(message(checked_at=time.time() + HOUR)), marker())
    await marker_seen(a)
    assert a.rejected == 1
    changes = a.state.changes.value
    await publish(redis.url, encode(message(instance="b")))
    with trio.fail_after(10):
        await a.state.changes.wait_value(changes + 1)
    current = a.state.get("m1", "p1")
    assert current is not None and current.latest.status is ProbeStatus.UNHEALTHY
    # A peer whose clock runs two minutes ahead: its result is taken, at no
    # later time than this instance's now, so it cannot hide the next local one.
    changes = a.state.changes.value
    ahead = time.time() + 120
    await publish(redis.url, encode(message(instance="fast", checked_at=ahead)))
    with trio.fail_after(10):
        await a.state.changes.wait_value(changes + 1)
    current = a.state.get("m1", "p1")
    assert current is not None and current.latest.checked_at <= time.time() < ahead
    local = healthy_now()
    a.state.record(local)
    current = a.state.get("m1", "p1")
    assert current is not None and current.latest is local
    assert a.rejected == 1


@needs_redis
async def test_a_starting_replica_ignores_a_poisoned_stored_result(
    redis: RedisServer, nursery: trio.Nursery
) -> None:
    origin = replica(redis.url, "origin")
    await nursery.start(origin.run)
    await shared(origin, healthy_now())
    key = "router-health:{m1:p1}:result"
    raw = coredis.Redis.from_url(redis.url, decode_responses=False)
    async with raw:
        assert await raw.get(key) is not None  # where the good one went
        await raw.set(key, encode(message(checked_at=1e308, latency_ms=math.nan)))
    late = replica(redis.url, "late")
    await nursery.start(late.run)  # started() comes after loading
    assert late.state.get("m1", "p1") is None
    assert late.rejected == 1 and late.status()["rejected"] == 1


def test_valid_edge_values_still_round_trip() -> None:
    now = time.time()
    for result in (
        ProbeResult(model="m1", provider="p1", adapter="A", status=ProbeStatus.TIMEOUT,
                    latency_ms=None, checked_at=now),
        ProbeResult(model="m1", provider="p1", adapter="OpenAICompatibleAdapter",
                    status=ProbeStatus.DEGRADED, latency_ms=0.0, checked_at=now, http_status=429,
                    error="HTTP 429: slow down", retry_after=604_800.0, source="passive",
                    samples=0),
        ProbeResult(model="m1", provider="p1", adapter="A", status=ProbeStatus.UNHEALTHY,
                    latency_ms=60_000.0, checked_at=now, http_status=599),
        ProbeResult(model="m1", provider="p1", adapter="A", status=ProbeStatus.UNHEALTHY,
                    latency_ms=1.0, checked_at=now, http_status=100),
    ):
        assert result_from_json(result_to_json(result, instance="i", token=1)) == (result, "i", 1)
    for name, payload in poisons().items():
        if name.startswith(("checked_at an hour", "checked_at a day", "model unknown",
                            "provider unknown")):
            continue  # well-formed: the coordinator judges time and adapter
        with pytest.raises(ValueError, match="not a shared result"):
            result_from_json(payload)


async def test_health_json_answers_out_of_range_timestamps() -> None:
    app, _ = make_app({"gpt-4": [adapter("openai", hang), adapter("azure", hang)]},
                      checks={"interval": 60, "adapter_timeout": 60, "timeout": 120,
                              "model_timeout": 120})
    async with serving(app) as client:
        health = app.extensions[EXTENSION_KEY].health
        health.record(probe_result(provider="openai", checked_at=1e308, latency_ms=math.nan))
        health.record(probe_result(provider="azure", checked_at=-1e308))
        for path in ("/v1/health/?format=health%2Bjson", "/v1/health/?format=health+json",
                     "/v1/health/models/gpt-4"):
            response = await client.get(path, headers={"Accept": HEALTH_JSON})
            assert response.status_code == 200, (path, response.status_code)
            body = await response.get_data(as_text=True)
            assert "NaN" not in body and "Infinity" not in body
            checks = json.loads(body)["checks"]
            assert checks["gpt-4:openai"][0]["time"] == "9999-12-31T23:59:59.999Z"
            assert checks["gpt-4:azure"][0]["time"] == "0001-01-01T00:00:00.000Z"


# -- finding 6: a hanging Redis is one line, not a traceback per attempt --------------------------


@needs_redis
async def test_a_hanging_redis_logs_one_line_per_state_change(
    redis: RedisServer, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    redis.pause()  # accepts connections (the kernel does), answers nothing
    c = replica(redis.url, "x")
    with trio.fail_after(10):
        await nursery.start(c.run)

    def client_records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name.startswith("coredis")]

    # Attempts until the client has said something about them several times.
    with trio.fail_after(30):
        while len(client_records()) < 3:
            assert await c.acquire("m1", "p1", 1) is False
    redis.resume()
    with trio.fail_after(30):
        while not isinstance(await c.acquire("m1", "p1", 1), Lease):
            pass
    # The client's details are there, at DEBUG.
    assert client_records() and all(r.levelno == logging.DEBUG for r in client_records())
    # At the default level (INFO): one line down, one line back; no traceback.
    shown = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [(r.levelno, r.getMessage().split(" (")[0]) for r in shown] == [
        (logging.WARNING, f"cluster: Redis at {redis.url} unreachable"),
        (logging.INFO, f"cluster: Redis at {redis.url} reachable; sharing checks"),
    ], [r.getMessage()[:200] for r in shown]
    assert not any(r.exc_info for r in shown)

"""Several router instances, one probe per adapter per interval: shared state over Redis.

With ``[cluster] redis_url`` set (and background checks on), every instance
runs the same background loops, but before probing an adapter a loop asks
Redis for that adapter's **lease**: ``SET lease NX PX`` for a little less
than the interval, with a **fencing token** (``INCR``) handed out with it.
Only the winner probes; the others skip that tick (and while the holder's
results keep arriving, they skip without even asking Redis). Because every
instance's loops tick at their own jittered times, leases (and so the probe
work) spread over the instances instead of landing on one leader; a crashed
instance's results stop, its leases expire, and whoever ticks next takes the
adapter over, within about an interval.

The winner records its result locally and **shares** it: one Lua script
checks that its token is still the adapter's latest (a paused instance
whose lease expired must not overwrite a newer result), stores the result
with a TTL (``max_age``) and publishes it. Every instance subscribes and
records what the others publish, so each one's live state, history,
transitions, stream and webhook move without probing. A starting instance
reads the stored results first, so it serves at once.

**Redis is never in the way.** Every Redis call has a short deadline. When
Redis is unreachable, a loop cannot get a lease, so it probes locally (each
instance then checks everything, as without a cluster), and the instance
says so: ``status()`` (``/readyz``'s ``cluster``, the report's ``cluster``)
turns ``"unreachable"`` with the error, until a Redis call succeeds again.

Keys (``{prefix}`` is ``key_prefix``; model and provider names are
percent-encoded, so a name cannot break the hash tag that keeps one
adapter's keys in one Redis Cluster slot)::

    {prefix}:{<model>:<provider>}:lease    instance id, PX ~ interval
    {prefix}:{<model>:<provider>}:fence    the adapter's latest fencing token
    {prefix}:{<model>:<provider>}:result   the latest result (JSON), PX max_age
    {prefix}:results                       the pub/sub channel

The client is coredis, which runs natively on Trio (through anyio): no
asyncio bridge. ``redis://`` and ``rediss://`` URLs use its single-node
client; ``mode = "cluster"`` uses its Redis Cluster client (discovering the
nodes from the URL's one); ``mode = "sentinel"`` with a
``redis+sentinel://host:port[,host:port]/service`` URL asks the sentinels
for the current primary.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import coredis
import trio
from coredis.connection import TCPLocation
from trio_util import AsyncValue  # type: ignore[import-untyped]

from adapters.base import FailureKind

from ..config.cluster import ClusterConfig, sentinel_url
from ..engine.report import ProbeResult, ProbeStatus
from .state import HealthState

__all__ = ["ClusterCoordinator", "Lease", "result_from_json", "result_to_json"]

logger = logging.getLogger("router_health.cluster")

# Take the lease and a fencing token in one step (KEYS: lease, fence;
# ARGV: instance id, ttl ms). Returns the token, or 0 if someone holds it.
_ACQUIRE: Final = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""

# Store and publish a result only if its token is still the adapter's
# latest (KEYS: fence, result; ARGV: token, payload, ttl ms, channel).
_SHARE: Final = """
if tonumber(redis.call('GET', KEYS[1]) or '0') == tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  redis.call('PUBLISH', ARGV[4], ARGV[2])
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to probe one adapter this interval, with its fencing token."""

    model: str
    provider: str
    token: int


def result_to_json(result: ProbeResult, *, instance: str, token: int) -> str:
    """A result as shared in Redis (never anything secret: errors are already redacted)."""
    data = {
        # First, so an instance can skip its own messages without parsing them.
        "instance": instance,
        "model": result.model,
        "provider": result.provider,
        "adapter": result.adapter,
        "status": result.status.value,
        "latency_ms": result.latency_ms,
        "checked_at": result.checked_at,
        "http_status": result.http_status,
        "error": result.error,
        "failure": None if result.failure is None else result.failure.value,
        "retry_after": result.retry_after,
        "source": result.source,
        "samples": result.samples,
        "token": token,
    }
    return json.dumps(data, separators=(",", ":"))


def result_from_json(payload: str | bytes) -> tuple[ProbeResult, str, int]:
    """(result, instance, token) from :func:`result_to_json`; ValueError if malformed."""
    try:
        data = json.loads(payload)
        result = ProbeResult(
            model=str(data["model"]),
            provider=str(data["provider"]),
            adapter=str(data["adapter"]),
            status=ProbeStatus(data["status"]),
            latency_ms=_number(data.get("latency_ms")),
            checked_at=float(data["checked_at"]),
            http_status=data.get("http_status"),
            error=data.get("error"),
            failure=None if data.get("failure") is None else FailureKind(data["failure"]),
            retry_after=_number(data.get("retry_after")),
            source=data.get("source"),
            samples=data.get("samples"),
        )
        return result, str(data["instance"]), int(data["token"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a shared result: {type(exc).__name__}: {exc}") from None


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class ClusterCoordinator:
    """Leases, shared results and the subscription of one instance (see the module doc)."""

    def __init__(
        self,
        config: ClusterConfig,
        state: HealthState,
        *,
        known: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.config = config
        self.state = state
        self.instance = config.instance_id or _default_instance_id()
        # The adapters this instance knows: shared results about others are ignored.
        self.known = set(known)
        self.channel = f"{config.key_prefix}:results"
        self._client: Any = None
        self._acquire: Any = None
        self._share: Any = None
        self._scope = trio.CancelScope()
        # When another instance last shared a result per adapter (trio clock).
        self._heard: dict[tuple[str, str], float] = {}
        self._own = json.dumps({"instance": self.instance})[:-1] + ","
        #: Whether the last Redis call succeeded, as a value tasks can wait on.
        self.connected: AsyncValue = AsyncValue(False)
        self._reachable = False
        self._since = time.time()
        self._error: str | None = "not connected yet"
        # Counters (for tests, metrics and the benchmark).
        self.leases_won = 0
        self.leases_lost = 0
        self.followed = 0  # ticks skipped without asking Redis: another instance is on it
        self.local_probes = 0  # probes made without a lease because Redis was unreachable
        self.shared = 0
        self.received = 0

    def __repr__(self) -> str:
        state = "reachable" if self._reachable else "unreachable"
        return f"ClusterCoordinator({self.config.display_url}, {self.instance!r}, {state})"

    # -- status --------------------------------------------------------------------

    @property
    def reachable(self) -> bool:
        return self._reachable

    def status(self) -> dict[str, Any]:
        """What ``/readyz`` and reports say about the cluster backend."""
        data: dict[str, Any] = {
            "backend": "redis",
            "url": self.config.display_url,
            "instance": self.instance,
            "status": "connected" if self._reachable else "unreachable",
            "since": round(self._since, 3),
        }
        if not self._reachable:
            data["checks"] = "local: every adapter is probed by this instance until Redis is back"
            if self._error:
                data["error"] = self._error
        return data

    def _ok(self) -> None:
        if not self._reachable:
            self._reachable, self._since, self._error = True, time.time(), None
            self.connected.value = True
            logger.info("cluster: Redis at %s reachable; sharing checks", self.config.display_url)

    def _failed(self, what: str, exc: BaseException | None) -> None:
        error = f"{what}: {type(exc).__name__}: {exc}" if exc else f"{what}: no answer within {self.config.timeout:g} s"
        error = error.replace(self.config.redis_url.reveal(), self.config.display_url)
        if self._reachable or self._error is None:
            logger.warning(
                "cluster: Redis at %s unreachable (%s); checking locally",
                self.config.display_url,
                error,
            )
            self._since = time.time()
        self._reachable, self._error = False, error
        self.connected.value = False

    # -- keys ----------------------------------------------------------------------

    def _keys(self, model: str, provider: str) -> tuple[str, str, str]:
        tag = f"{{{quote(model, safe='')}:{quote(provider, safe='')}}}"
        base = f"{self.config.key_prefix}:{tag}"
        return f"{base}:lease", f"{base}:fence", f"{base}:result"

    # -- the connection ------------------------------------------------------------

    async def _open_client(self, stack: AsyncExitStack) -> Any:
        """The client for the configured mode, entered on ``stack``."""
        if self.config.mode != "sentinel":
            return await stack.enter_async_context(self._new_client())
        sentinels, service, password, db = sentinel_url(self.config.redis_url.reveal())
        timeout = self.config.timeout
        sentinel = coredis.Sentinel(
            [TCPLocation(host, port) for host, port in sentinels],
            decode_responses=True,
            connect_timeout=timeout,
            stream_timeout=timeout,
            password=password,
            db=db,
        )
        await stack.enter_async_context(sentinel)
        # The primary the sentinels name now; after a failover the client asks again.
        return await stack.enter_async_context(sentinel.primary_for(service))

    def _new_client(self) -> Any:
        url = self.config.redis_url.reveal()
        timeout = self.config.timeout
        if self.config.mode == "cluster":
            return coredis.RedisCluster.from_url(
                url, decode_responses=True, connect_timeout=timeout, stream_timeout=timeout
            )
        return coredis.Redis.from_url(
            url, decode_responses=True, connect_timeout=timeout, stream_timeout=timeout
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, load the shared results, and follow the channel until cancelled.

        Reports started once the first connection attempt is over (successful
        or not): an instance never waits for Redis to start checking.
        """
        started = False
        with self._scope:
            try:
                async with AsyncExitStack() as stack:
                    client = await self._open_client(stack)
                    self._client = client
                    self._acquire = client.register_script(_ACQUIRE)
                    self._share = client.register_script(_SHARE)
                    try:
                        await self._load()
                        task_status.started()
                        started = True
                        await self._follow()
                    finally:
                        self._client = None
            except* Exception as group:
                # The client's own clean-up on dead connections while we stop;
                # or a bug of ours or the client's: then this instance goes on
                # checking locally (acquire says so) rather than taking the
                # service down with it.
                if not self._scope.cancel_called:
                    self._failed("the Redis client stopped", group.exceptions[0])
                    logger.error("cluster: coordinator stopped; checks stay local", exc_info=group)
        if not started:
            task_status.started()

    def stop(self) -> None:
        """End :meth:`run` (the app calls it at shutdown)."""
        self._scope.cancel()

    async def _call(self, what: str, operation: Any) -> tuple[bool, Any]:
        """``await operation()`` under the Redis deadline: (ok, value); failures are noted."""
        if self._client is None:
            return False, None
        value: Any = None
        with trio.move_on_after(self.config.timeout) as scope:
            try:
                value = await operation()
            except Exception as exc:  # any client or connection error means "not now"
                self._failed(what, exc)
                return False, None
        if scope.cancelled_caught:
            self._failed(what, None)
            return False, None
        self._ok()
        return True, value

    async def _load(self) -> None:
        """Fill the live state with the results other instances stored."""
        for model, provider in sorted(self.known):
            _, _, result_key = self._keys(model, provider)
            ok, payload = await self._call("loading results", lambda k=result_key: self._client.get(k))
            if not ok:
                return
            if payload:
                self._take(payload)

    async def _follow(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with self._client.pubsub(channels=[self.channel]) as pubsub:
                    backoff = 0.1
                    async for message in pubsub:
                        if message.get("type") == "message":
                            self._take(message["data"])
            except* Exception as group:  # a cancellation in the group still propagates
                self._failed("subscription", group.exceptions[0])
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _take(self, payload: str | bytes) -> None:
        if isinstance(payload, str) and payload.startswith(self._own):
            return  # our own share, recorded when we probed: not even parsed
        try:
            result, instance, token = result_from_json(payload)
        except ValueError as exc:
            logger.warning("cluster: ignoring a malformed shared result (%s)", exc)
            return
        # A fenced-off writer never gets here: the share script refuses it in
        # Redis itself, so whatever is published is the adapter's latest.
        del token
        key = (result.model, result.provider)
        if key not in self.known or instance == self.instance:
            return  # not one of ours, or our own (recorded when we probed)
        self._heard[key] = trio.current_time()
        self.received += 1
        self.state.record(result)

    # -- leases and results ------------------------------------------------------------

    def covered(self, model: str, provider: str, within: float) -> bool:
        """Another instance shared this adapter's result less than ``within`` seconds ago.

        Then this tick need not even ask Redis: the holder is alive and on it.
        Asking only once its results stop coming keeps the Redis calls per
        interval near one per adapter instead of one per adapter per instance.
        """
        heard = self._heard.get((model, provider))
        if not self._reachable or heard is None or trio.current_time() - heard >= within:
            return False
        self.followed += 1
        return True

    async def acquire(self, model: str, provider: str, ttl: float) -> Lease | bool | None:
        """Try to take this adapter for ``ttl`` seconds.

        A :class:`Lease` if this instance won it; ``None`` if another
        instance holds it (skip this tick); ``False`` if Redis is
        unreachable (probe locally).
        """
        lease_key, fence_key, _ = self._keys(model, provider)
        ttl_ms = max(1, int(ttl * 1000))
        ok, token = await self._call(
            "taking a lease",
            lambda: self._acquire(keys=[lease_key, fence_key], args=[self.instance, ttl_ms]),
        )
        if not ok:
            self.local_probes += 1
            return False
        if not token:
            self.leases_lost += 1
            return None
        self.leases_won += 1
        return Lease(model, provider, int(token))

    async def share(self, lease: Lease, result: ProbeResult, ttl: float) -> bool:
        """Store and publish ``result`` if ``lease`` is still the adapter's latest."""
        _, fence_key, result_key = self._keys(lease.model, lease.provider)
        payload = result_to_json(result, instance=self.instance, token=lease.token)
        ok, stored = await self._call(
            "sharing a result",
            lambda: self._share(
                keys=[fence_key, result_key],
                args=[lease.token, payload, max(1, int(ttl * 1000)), self.channel],
            ),
        )
        if ok and stored:
            self.shared += 1
            return True
        if ok:
            logger.info(
                "cluster: %s/%s result not shared: a newer lease exists (token %d)",
                lease.model,
                lease.provider,
                lease.token,
            )
        return False

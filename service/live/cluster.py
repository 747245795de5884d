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

**What arrives is checked, never trusted.** Anything with access to the
Redis can publish on the channel, and another instance's clock can be
wrong, so every shared result (published or loaded) is validated field by
field before it reaches the live state (:func:`result_from_json`: JSON
object of bounded size, types, finite numbers in range, known enum values,
bounded strings, a wildcard's listed model ids each a valid name; then the
coordinator: an adapter configured here, and a ``checked_at`` no more than
:data:`MAX_CLOCK_SKEW` seconds ahead of this instance's clock, nor older
than the adapter's ``max_age`` plus that skew).
What fails is dropped and counted (``status()["rejected"]``), logged once
and then at most once a minute, never per message. A result that passes
with a ``checked_at`` ahead of this instance's clock is recorded as of
*now*: the live state orders results by ``checked_at`` (newest wins), and a
peer whose clock runs fast must not make its result look newer than the
next probe this instance makes.

**A hanging Redis is one line.** coredis logs every failed connection
attempt with a long traceback; its records are re-levelled to DEBUG here,
and this module logs one WARNING when Redis becomes unreachable and one
INFO when it is back (the failures in between at DEBUG).

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

import dataclasses
import json
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Final, NoReturn
from urllib.parse import quote

import trio
from trio_util import AsyncValue  # type: ignore[import-untyped]

from adapters.base import MAX_LISTED, FailureKind

from ..config.cluster import ClusterConfig, sentinel_url
from ..config.values import name_problem
from ..engine.report import ProbeResult, ProbeStatus
from .state import HealthState

__all__ = [
    "MAX_CLOCK_SKEW",
    "ClusterCoordinator",
    "Lease",
    "result_from_json",
    "result_to_json",
]

logger = logging.getLogger("router_health.cluster")

#: How far (seconds) a shared result's ``checked_at`` may run ahead of this
#: instance's clock, and how much older than ``max_age`` it may be: clocks
#: kept by NTP agree within far less; a peer outside it is misconfigured
#: (its results are rejected, counted and logged).
MAX_CLOCK_SKEW: Final = 300.0
#: Rejections are logged at most this often (seconds); the count is live.
REJECTION_LOG_INTERVAL: Final = 60.0
#: A shared result is well under 3 KB, or a few hundred with a wildcard's
#: listed model ids (up to MAX_LISTED of them); anything larger is not one.
MAX_PAYLOAD: Final = 512 * 1024
#: What the listed ids may take of it when shared (JSON-encoded): everything else
#: fits in the rest; a list that would not (long non-ASCII ids) is shared cut short.
LISTED_PAYLOAD: Final = MAX_PAYLOAD - 64 * 1024
MAX_NAME_CHARS: Final = 1024  # model, provider (and they must be configured here)
MAX_LISTED_CHARS: Final = 256  # one listed model id
MAX_PROBE_TOKENS: Final = 1_000_000_000  # one probe's billed tokens: far beyond any real one
MAX_INSTANCE_CHARS: Final = 256
MAX_ADAPTER_CHARS: Final = 128
MAX_ERROR_CHARS: Final = 2000  # adapters keep 200 upstream characters, plus notes
MAX_LATENCY_MS: Final = 86_400_000.0  # a day: no probe deadline is longer
MAX_RETRY_AFTER: Final = 604_800.0  # a week: the adapters' own cap on Retry-After
MAX_SAMPLES: Final = 1_000_000_000
MAX_TOKEN: Final = 2**63 - 1  # Redis INCR's range
#: 9999-12-31T23:59:59Z: the last second a datetime (and ISO 8601) can show.
LAST_TIMESTAMP: Final = 253_402_300_799.0
SOURCES: Final = ("passive", "retry_after")
_STATUSES: Final = tuple(s.value for s in ProbeStatus)
_FAILURES: Final = tuple(f.value for f in FailureKind)


class _ClientDetails(logging.Filter):
    """coredis's own records (a traceback per failed connection attempt) at DEBUG only.

    While Redis hangs, coredis logs each failed attempt at ERROR with a
    130-line traceback, several times a second; the coordinator already says
    "unreachable" once. Installed on the ``coredis`` logger (all of coredis
    logs through that one), so the details stay available with DEBUG on.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return _CLIENT_LOGGER.isEnabledFor(logging.DEBUG)


_CLIENT_LOGGER: Final = logging.getLogger("coredis")
_CLIENT_DETAILS: Final = _ClientDetails()
_CLIENT_LOGGER.addFilter(_CLIENT_DETAILS)  # once: addFilter ignores a filter it already has

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
        "tokens": result.tokens if _tokens_ok(result.tokens) else None,
        "listed_models": _shared_listed(result.listed_models),
        "budget_fallback": result.budget_fallback,
        "token": token,
    }
    return json.dumps(data, separators=(",", ":"))


def _tokens_ok(tokens: int | None) -> bool:
    return tokens is not None and 0 <= tokens <= MAX_PROBE_TOKENS


def _listed_id_ok(model_id: object) -> bool:
    """A listed model id a peer takes: a name (no control characters) of bounded length."""
    return (
        isinstance(model_id, str)
        and 0 < len(model_id) <= MAX_LISTED_CHARS
        and name_problem(model_id) is None
    )


def _shared_listed(listed: tuple[str, ...] | None) -> list[str] | None:
    """The listed ids a peer will take, as many as fit :data:`LISTED_PAYLOAD`.

    An id a peer would refuse would make it drop the whole result: it is left
    out here instead (the local result keeps it).
    """
    if listed is None:
        return None
    shared, size = [], 0
    for model_id in listed[:MAX_LISTED]:
        if not _listed_id_ok(model_id):
            continue
        size += len(json.dumps(model_id)) + 1
        if size > LISTED_PAYLOAD:
            break
        shared.append(model_id)
    return shared


def result_from_json(payload: str | bytes) -> tuple[ProbeResult, str, int]:
    """(result, instance, token) from :func:`result_to_json`; ValueError if malformed.

    Every field is checked (what anything with access to the Redis may
    publish must not reach the live state unchecked): a JSON object of at
    most :data:`MAX_PAYLOAD` characters, no ``NaN``/``Infinity``; names and
    texts strings of bounded length; ``status``/``failure``/``source`` known
    values; ``latency_ms`` in [0, :data:`MAX_LATENCY_MS`], ``http_status``
    100..599, ``retry_after`` in [0, :data:`MAX_RETRY_AFTER`], ``samples``
    and ``token`` non-negative / positive integers, ``tokens`` in
    [0, :data:`MAX_PROBE_TOKENS`]; ``checked_at`` a positive unix time a
    datetime can show; ``listed_models`` at most ``MAX_LISTED`` names of at
    most :data:`MAX_LISTED_CHARS` characters; ``budget_fallback`` a boolean.
    Unknown keys are ignored (a newer version may add some). Whether the
    adapter is configured here and the time is plausible is the
    coordinator's question (it knows both).
    The error never quotes the payload's values.
    """
    if len(payload) > MAX_PAYLOAD:
        _invalid(f"{len(payload)} characters, more than {MAX_PAYLOAD}")
    try:
        data = json.loads(payload, parse_constant=_no_constant)
    except _NotANumber:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        _invalid(f"not JSON ({type(exc).__name__})")
    if not isinstance(data, dict):
        _invalid(f"not a JSON object ({type(data).__name__})")
    fields = _Fields(data)
    failure = fields.optional_choice("failure", _FAILURES)
    result = ProbeResult(
        model=fields.text("model", MAX_NAME_CHARS),
        provider=fields.text("provider", MAX_NAME_CHARS),
        adapter=fields.text("adapter", MAX_ADAPTER_CHARS),
        status=ProbeStatus(fields.choice("status", _STATUSES)),
        latency_ms=fields.optional_number("latency_ms", 0.0, MAX_LATENCY_MS),
        checked_at=fields.timestamp("checked_at"),
        http_status=fields.optional_integer("http_status", 100, 599),
        error=fields.optional_text("error", MAX_ERROR_CHARS),
        failure=None if failure is None else FailureKind(failure),
        retry_after=fields.optional_number("retry_after", 0.0, MAX_RETRY_AFTER),
        source=fields.optional_choice("source", SOURCES),
        samples=fields.optional_integer("samples", 0, MAX_SAMPLES),
        tokens=fields.optional_integer("tokens", 0, MAX_PROBE_TOKENS),
        listed_models=fields.optional_names("listed_models", MAX_LISTED),
        budget_fallback=fields.flag("budget_fallback"),
    )
    instance = fields.text("instance", MAX_INSTANCE_CHARS)
    token = fields.integer("token", 1, MAX_TOKEN)
    return result, instance, token


def _invalid(reason: str) -> NoReturn:
    raise ValueError(f"not a shared result: {reason}")


class _NotANumber(ValueError):
    pass


def _no_constant(name: str) -> NoReturn:
    """``json.loads``'s hook for ``NaN``, ``Infinity``, ``-Infinity``: not JSON, refused."""
    raise _NotANumber(f"not a shared result: {name} is not a JSON number")


class _Fields:
    """Typed, bounded reads of one shared result's fields; ValueError naming the field.

    The optional readers take a missing key and ``null`` alike as None.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def _required(self, name: str) -> Any:
        value = self.data.get(name)
        if value is None:
            _invalid(f"{name}: {'null' if name in self.data else 'missing'}")
        return value

    def text(self, name: str, limit: int) -> str:
        value = self._required(name)
        if not isinstance(value, str):
            _invalid(f"{name}: a {type(value).__name__}, not a string")
        if not value or len(value) > limit:
            _invalid(f"{name}: {len(value)} characters, not 1 to {limit}")
        return value

    def optional_text(self, name: str, limit: int) -> str | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            _invalid(f"{name}: a {type(value).__name__}, not a string")
        if len(value) > limit:
            _invalid(f"{name}: {len(value)} characters, more than {limit}")
        return value

    def choice(self, name: str, values: tuple[str, ...]) -> str:
        value = self._required(name)
        if not isinstance(value, str) or value not in values:
            _invalid(f"{name}: not one of {', '.join(values)}")
        return value

    def optional_choice(self, name: str, values: tuple[str, ...]) -> str | None:
        return None if self.data.get(name) is None else self.choice(name, values)

    def number(self, name: str, low: float, high: float) -> float:
        value = self._required(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            _invalid(f"{name}: a {type(value).__name__}, not a number")
        try:
            number = float(value)
        except OverflowError:  # a JSON integer beyond any float
            _invalid(f"{name}: not a number in [{low:g}, {high:g}]")
        if not (math.isfinite(number) and low <= number <= high):
            _invalid(f"{name}: not a number in [{low:g}, {high:g}]")
        return number

    def optional_number(self, name: str, low: float, high: float) -> float | None:
        return None if self.data.get(name) is None else self.number(name, low, high)

    def timestamp(self, name: str) -> float:
        """A unix time after 1970 that a datetime (and ISO 8601) can show."""
        value = self.number(name, 0.0, LAST_TIMESTAMP)
        if value == 0.0:
            _invalid(f"{name}: not a time after 1970")
        return value

    def integer(self, name: str, low: int, high: int) -> int:
        value = self._required(name)
        if isinstance(value, bool) or not isinstance(value, int):
            _invalid(f"{name}: a {type(value).__name__}, not an integer")
        if not low <= value <= high:
            _invalid(f"{name}: not an integer in [{low}, {high}]")
        return value

    def optional_integer(self, name: str, low: int, high: int) -> int | None:
        return None if self.data.get(name) is None else self.integer(name, low, high)

    def flag(self, name: str) -> bool:
        """A boolean; missing or ``null`` is False (results from before the field)."""
        value = self.data.get(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            _invalid(f"{name}: a {type(value).__name__}, not a boolean")
        return value

    def optional_names(self, name: str, limit: int) -> tuple[str, ...] | None:
        """A list of at most ``limit`` model ids, each one a name a peer may show."""
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, list):
            _invalid(f"{name}: a {type(value).__name__}, not a list")
        if len(value) > limit:
            _invalid(f"{name}: {len(value)} entries, more than {limit}")
        for i, item in enumerate(value):
            if not _listed_id_ok(item):
                _invalid(
                    f"{name}[{i}]: not a name of 1 to {MAX_LISTED_CHARS} characters "
                    "without control characters"
                )
        return tuple(value)


def _shown(text: str) -> str:
    """A peer-supplied name for a log line: quoted (control characters escaped), cut short."""
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _cancelled() -> bool:
    """Whether the calling task is being cancelled (shutdown): its failures are no news."""
    return trio.current_effective_deadline() == -math.inf


_NOT_CONNECTED: Final = "not connected yet"


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
        self._error: str | None = _NOT_CONNECTED
        self._said_unreachable = False  # the WARNING for this outage is out
        # Shared results dropped as malformed, implausible or not ours to take.
        self.rejected = 0
        self._last_rejection: str | None = None
        self._rejections_logged = 0  # ``rejected`` when the last line about them went out
        self._rejection_logged_at = -math.inf  # trio clock
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
            # Shared results dropped (see the module doc); the latest reason.
            "rejected": self.rejected,
        }
        if self._last_rejection is not None:
            data["last_rejected"] = self._last_rejection
        if not self._reachable:
            data["checks"] = "local: every adapter is probed by this instance until Redis is back"
            if self._error:
                data["error"] = self._error
        return data

    def _ok(self) -> None:
        if not self._reachable:
            self._reachable, self._since, self._error = True, time.time(), None
            self._said_unreachable = False
            self.connected.value = True
            logger.info("cluster: Redis at %s reachable; sharing checks", self.config.display_url)

    def _failed(self, what: str, exc: BaseException | None) -> None:
        """Note a failed Redis call: one WARNING per outage, each failure at DEBUG."""
        error = f"{what}: {type(exc).__name__}: {exc}" if exc else f"{what}: no answer within {self.config.timeout:g} s"
        error = error.replace(self.config.redis_url.reveal(), self.config.display_url)
        if not self._said_unreachable:
            # Connected -> unreachable, or the very first attempt failing.
            logger.warning(
                "cluster: Redis at %s unreachable (%s); checking locally",
                self.config.display_url,
                error,
            )
            self._said_unreachable, self._since = True, time.time()
        else:
            logger.debug("cluster: Redis still unreachable (%s)", error)
        self._reachable, self._error = False, error
        self.connected.value = False

    def _reject(self, reason: str, instance: str | None = None) -> None:
        """Drop a shared result: counted at once, logged once and then at most once a minute."""
        self.rejected += 1
        sender = "" if instance is None else f" from {_shown(instance)}"
        self._last_rejection = f"{reason}{sender}"[:300]
        logger.debug("cluster: rejected a shared result%s: %s", sender, reason)
        now = trio.current_time()
        if now - self._rejection_logged_at < REJECTION_LOG_INTERVAL:
            return
        if self._rejections_logged == 0:
            logger.warning(
                "cluster: rejected a shared result%s (%s); more are counted in the cluster "
                "status (\"rejected\") and logged at most once a minute",
                sender,
                reason,
            )
        else:
            logger.warning(
                "cluster: rejected %d more shared results since the last report (latest: %s)",
                self.rejected - self._rejections_logged,
                self._last_rejection,
            )
        self._rejection_logged_at, self._rejections_logged = now, self.rejected

    # -- keys ----------------------------------------------------------------------

    def _keys(self, model: str, provider: str) -> tuple[str, str, str]:
        tag = f"{{{quote(model, safe='')}:{quote(provider, safe='')}}}"
        base = f"{self.config.key_prefix}:{tag}"
        return f"{base}:lease", f"{base}:fence", f"{base}:result"

    # -- the connection ------------------------------------------------------------

    async def _open_client(self, stack: AsyncExitStack) -> Any:
        """The client for the configured mode, entered on ``stack``."""
        # coredis comes with the cluster extra; the config refuses [cluster] without it.
        import coredis
        from coredis.connection import TCPLocation

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
        import coredis

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
                if not _cancelled():
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
                if not _cancelled():  # at shutdown the client's clean-up fails: no news
                    self._failed("subscription", group.exceptions[0])
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _take(self, payload: str | bytes) -> None:
        """Record a shared result if it passes every check; otherwise count and drop it."""
        if isinstance(payload, str) and payload.startswith(self._own):
            return  # our own share, recorded when we probed: not even parsed
        try:
            result, instance, token = result_from_json(payload)
        except ValueError as exc:
            self._reject(str(exc).removeprefix("not a shared result: "))
            return
        except Exception as exc:  # a bug of ours: still never the subscription's end
            logger.debug("cluster: a shared result broke the parser", exc_info=True)
            self._reject(f"unreadable ({type(exc).__name__})")
            return
        # A fenced-off writer never gets here: the share script refuses it in
        # Redis itself, so whatever is published is the adapter's latest.
        del token
        if instance == self.instance:
            return  # our own (recorded when we probed)
        key = (result.model, result.provider)
        if key not in self.known:
            self._reject("model/provider: not an adapter configured here", instance)
            return
        problem = self._implausible_time(result)
        if problem is not None:
            self._reject(problem, instance)
            return
        if result.checked_at > time.time():
            # Within the allowed skew, but ahead of our clock: as of now, so
            # the next local probe (stamped by our clock) is never "older".
            result = dataclasses.replace(result, checked_at=time.time())
        self._heard[key] = trio.current_time()
        self.received += 1
        self.state.record(result)

    def _implausible_time(self, result: ProbeResult) -> str | None:
        """Why ``result.checked_at`` cannot be a shared result's time now, or None.

        Results are shared right after their probe and stored for
        ``max_age``, so a real one is never older than that, nor in the
        future, give or take :data:`MAX_CLOCK_SKEW`.
        """
        now = time.time()
        ahead = result.checked_at - now
        if ahead > MAX_CLOCK_SKEW:
            return (
                f"checked_at: {ahead:.0f} s ahead of this instance's clock (more than "
                f"{MAX_CLOCK_SKEW:g} s: is a clock wrong?)"
            )
        max_age = self.state.schedule_for(result.model, result.provider).served_max_age
        age = -ahead
        if age > max_age + MAX_CLOCK_SKEW:
            return (
                f"checked_at: {age:.0f} s old, more than max_age ({max_age:g} s) + "
                f"{MAX_CLOCK_SKEW:g} s (a replay, or a clock behind?)"
            )
        return None

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

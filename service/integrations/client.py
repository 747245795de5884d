"""A router's client of router-health: routable sets in, traffic reports out, off the request path.

One daemon thread, running a Trio loop of its own, does all the I/O:

* each model the router asked about in the last ``idle_after`` seconds has its
  routable set polled from ``GET /v1/route/{model}`` at most every
  ``poll_interval`` seconds, with ``If-None-Match`` (a 304 confirms the set held);
* reported outcomes wait in a bounded queue and go to
  ``POST /v1/health/observations`` in batches.

The router's own threads only touch memory: :meth:`RouterHealthClient.route_set`
reads the cache, :meth:`RouterHealthClient.report` appends (a full queue drops and
counts). So router-health being down, slow or wrong never slows or fails a
request: a set not confirmed for ``stale_after`` seconds is not served, and the
router keeps its own choice (fail-open).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import httpx
import trio

from ..config.values import check_seconds, display_url, url_problem

__all__ = [
    "ENV_PREFIX",
    "ClientSettings",
    "ClientStats",
    "Observation",
    "RouteSet",
    "RouterHealthClient",
    "parse_route",
]

logger = logging.getLogger("router_health.integrations")

#: Each setting ``x`` not given is read from ``ROUTER_HEALTH_X`` (``ROUTER_HEALTH_URL``...).
ENV_PREFIX: Final = "ROUTER_HEALTH_"
_SECONDS: Final = (
    "poll_interval", "route_timeout", "stale_after", "idle_after",
    "flush_interval", "send_timeout", "max_backoff",
)
_COUNTS: Final = ("batch_size", "max_queue")
#: Statuses a routable set excludes for that are no verdict on the deployment.
_NOT_A_VERDICT: Final = frozenset({"unsupported"})
#: Route requests in flight at once (one per model due).
_MAX_CONCURRENT_POLLS: Final = 8


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Where router-health is and how the client treats it (seconds unless said)."""

    url: str  # router-health's base URL, e.g. http://127.0.0.1:8000
    observe_token: str | None = field(default=None, repr=False)  # None: outcomes are not sent
    poll_interval: float = 2.0  # at most one route request per model this often
    route_timeout: float = 0.2  # a route answer slower than this counts as none
    stale_after: float = 10.0  # a set not confirmed for this long is not used (fail-open)
    idle_after: float = 60.0  # a model not asked about for this long is no longer polled
    flush_interval: float = 1.0  # the longest an outcome waits in the queue while all is well
    send_timeout: float = 2.0  # one observations request
    max_backoff: float = 30.0  # the longest pause between sends while router-health is down
    batch_size: int = 500  # observations per request (router-health takes 1,000 by default)
    max_queue: int = 10_000  # outcomes waiting; past it new ones are dropped and counted

    def __post_init__(self) -> None:
        problem = url_problem(self.url) if isinstance(self.url, str) else "must be a string"
        if problem is not None:
            raise ValueError(f"router-health url {display_url(str(self.url))} {problem}")
        if self.observe_token is not None and (
            not isinstance(self.observe_token, str) or not self.observe_token.strip()
        ):
            raise ValueError("observe_token must be a non-empty string (or None: send nothing)")
        for name in _SECONDS:
            check_seconds(name, getattr(self, name))
        for name in _COUNTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **given: Any) -> ClientSettings:
        """Settings from ``given`` (None counts as not given), else ``ROUTER_HEALTH_<NAME>``."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise TypeError(f"unknown router-health setting(s): {', '.join(unknown)}")
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name in names:
            if given.get(name) is not None:
                values[name] = given[name]
                continue
            variable = ENV_PREFIX + name.upper()
            raw = env.get(variable, "").strip()
            if raw:
                values[name] = raw if name in ("url", "observe_token") else _number(variable, raw)
        if "url" not in values:
            raise ValueError(
                "router-health's URL is not set: pass url=... or export "
                f"{ENV_PREFIX}URL=http://host:port"
            )
        return cls(**values)


def _number(variable: str, raw: str) -> float | int:
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{variable} must be a number, got {raw[:40]!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{variable} must be a finite number, got {raw[:40]!r}")
    return value


@dataclass(frozen=True, slots=True)
class Observation:
    """One real call's outcome, as ``POST /v1/health/observations`` takes it."""

    model: str
    provider: str
    ok: bool
    status_code: int | None = None
    error_kind: str | None = None  # a failure kind (adapters.base.FailureKind value)
    latency_ms: float | None = None
    at: float | None = None  # unix seconds the call ended

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"model": self.model, "provider": self.provider, "ok": self.ok}
        for key in ("status_code", "error_kind", "latency_ms", "at"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data


@dataclass(frozen=True, slots=True)
class RouteSet:
    """One model's routable set as router-health last answered it."""

    model: str
    use: tuple[str, ...]  # provider names to route to, best first
    # Provider names to leave out (none in panic). Not those excluded as ``unsupported``:
    # router-health cannot check them, which says nothing against routing to them.
    excluded: frozenset[str]
    panic: bool
    etag: str | None
    confirmed: float  # time.monotonic() of the last 200 or 304

    def fresh(self, now: float, stale_after: float) -> bool:
        return now - self.confirmed <= stale_after


def parse_route(model: str, body: Any, etag: str | None, now: float) -> RouteSet | None:
    """A ``GET /v1/route/{model}`` answer as a :class:`RouteSet`; None if not shaped like one."""
    if not isinstance(body, dict):
        return None
    panic = body.get("panic", False)
    use = _providers(body.get("deployments"))
    excluded = _providers(body.get("excluded", []))
    if use is None or excluded is None or not isinstance(panic, bool):
        return None
    down = frozenset(name for name, status in excluded if status not in _NOT_A_VERDICT)
    return RouteSet(model, tuple(name for name, _ in use), down, panic, etag, now)


def _providers(entries: Any) -> list[tuple[str, Any]] | None:
    """(provider, status) of each entry; None unless every entry names its provider."""
    if not isinstance(entries, list):
        return None
    found = []
    for entry in entries:
        name = entry.get("provider") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            return None
        found.append((name, entry.get("status")))
    return found


@dataclass(frozen=True, slots=True)
class ClientStats:
    """What happened to the outcomes reported and the route requests made, so far."""

    queued: int = 0  # waiting to be sent
    sent: int = 0  # accepted by router-health
    rejected: int = 0  # refused one by one by router-health (an unknown provider...)
    dropped: int = 0  # never queued: the queue was full
    lost: int = 0  # in a batch that could not be delivered (router-health down or refusing)
    route_answers: int = 0  # 200s with a routable set
    route_not_modified: int = 0  # 304s
    route_failures: int = 0  # unreachable, too slow, an error status or a bad shape


class RouterHealthClient:
    """Routable sets and traffic reports, all I/O on a thread of its own (started on first use)."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()  # held only to touch the fields below, never across I/O
        self._queue: deque[Observation] = deque()
        self._sets: dict[str, RouteSet] = {}
        self._asked: dict[str, float] = {}  # model -> time.monotonic() it was last asked for
        self._counts = {f.name: 0 for f in dataclasses.fields(ClientStats) if f.name != "queued"}
        self._troubled: set[str] = set()  # what was warned about, until it works again
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closed = False
        self._crashed_in = 0  # the pid whose thread died of a bug: not restarted in it
        self._running = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._sender_wake: trio.Event | None = None
        self._poller_wake: trio.Event | None = None

    # -- the router's side: memory only ------------------------------------------

    def route_set(self, model: str) -> RouteSet | None:
        """The model's set if router-health confirmed it recently; None: use the router's own."""
        now = time.monotonic()
        with self._lock:
            new = model not in self._asked
            self._asked[model] = now
            current = self._sets.get(model)
        self._ensure_started()
        if new:
            self._nudge("poller")
        if current is None or not current.fresh(now, self.settings.stale_after):
            return None
        return current

    def report(self, observation: Observation) -> bool:
        """Queue one outcome to send; False when it is not (no observe token, or the queue full)."""
        if self.settings.observe_token is None:
            return False
        with self._lock:
            if len(self._queue) >= self.settings.max_queue:
                self._counts["dropped"] += 1
                return False
            self._queue.append(observation)
            batch_ready = len(self._queue) >= self.settings.batch_size
        self._ensure_started()
        if batch_ready:
            self._nudge("sender")
        return True

    def stats(self) -> ClientStats:
        with self._lock:
            return ClientStats(queued=len(self._queue), **self._counts)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (one try, within ``send_timeout``), then stop the thread."""
        self._closed = True
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self._running.wait(timeout)
        self._call_soon(self._stopping)
        thread.join(timeout)

    # -- the thread ----------------------------------------------------------------

    def _ensure_started(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            return
        with self._start_lock:
            thread = self._thread
            if (
                self._closed
                or self._crashed_in == os.getpid()
                or (thread is not None and thread.is_alive() and self._pid == os.getpid())
            ):
                return
            # First use, or a forked child (the parent's thread did not come along).
            self._pid = os.getpid()
            self._token = None
            self._running.clear()
            self._thread = threading.Thread(target=self._run, name="router-health", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException:  # the router must not notice: only the filtering stops
            self._crashed_in = os.getpid()
            logger.exception("router-health client stopped; the router keeps its own choices")

    async def _main(self) -> None:
        self._stop = trio.Event()
        self._sender_wake = trio.Event()
        self._poller_wake = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        self._running.set()
        async with httpx.AsyncClient(base_url=self.settings.url) as http:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_loop, http)
                nursery.start_soon(self._poll_loop, http)
                await self._stop.wait()
                nursery.cancel_scope.cancel()
            with trio.move_on_after(self.settings.send_timeout):
                while batch := self._take():
                    await self._send(http, batch)

    def _call_soon(self, function: Any, *args: Any) -> None:
        token = self._token
        if token is None:  # not running yet: it looks at the queue and the models when it starts
            return
        with contextlib.suppress(trio.RunFinishedError):  # the thread is stopping anyway
            token.run_sync_soon(function, *args)

    def _nudge(self, which: str) -> None:
        self._call_soon(self._wake, which)

    def _wake(self, which: str) -> None:  # in the client's thread
        event = self._sender_wake if which == "sender" else self._poller_wake
        if event is not None:
            event.set()

    def _stopping(self) -> None:  # in the client's thread
        if self._stop is not None:
            self._stop.set()

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _trouble(self, what: str, message: str) -> None:
        """Warn once when something stops working (and once more when it works again)."""
        if what not in self._troubled:
            self._troubled.add(what)
            logger.warning("router-health %s: %s", what, message)

    def _fine(self, what: str) -> None:
        if what in self._troubled:
            self._troubled.discard(what)
            logger.info("router-health %s: working again", what)

    # -- traffic reports out -----------------------------------------------------------

    def _take(self) -> list[Observation]:
        with self._lock:
            n = min(len(self._queue), self.settings.batch_size)
            return [self._queue.popleft() for _ in range(n)]

    async def _send_loop(self, http: httpx.AsyncClient) -> None:
        pause = 0.0  # > 0 while router-health is down or asked us to wait
        while True:
            if pause:
                await trio.sleep(pause)
            else:
                with trio.move_on_after(self.settings.flush_interval):
                    assert self._sender_wake is not None
                    await self._sender_wake.wait()
            self._sender_wake = trio.Event()
            while batch := self._take():
                wait = await self._send(http, batch)
                if wait is not None:
                    pause = min(self.settings.max_backoff, max(wait, 2 * pause))
                    break
                pause = 0.0

    async def _send(self, http: httpx.AsyncClient, batch: list[Observation]) -> float | None:
        """Deliver one batch; None when delivered, else how long to wait before the next.

        A batch that cannot be delivered is dropped and counted (``lost``):
        observations describe recent traffic, and once router-health is back,
        new traffic describes it better than old.
        """
        settings = self.settings
        what = "observations"
        try:
            with trio.fail_after(settings.send_timeout):
                response = await http.post(
                    "/v1/health/observations",
                    json={"observations": [o.as_json() for o in batch]},
                    headers={"authorization": f"Bearer {settings.observe_token}"},
                    timeout=settings.send_timeout,
                )
        except (httpx.HTTPError, trio.TooSlowError) as exc:
            self._count("lost", len(batch))
            self._trouble(what, f"{display_url(settings.url)} unreachable ({_why(exc)}); "
                                "outcomes are dropped until it answers")
            return settings.flush_interval
        if response.status_code == 200:
            rejected = _rejected(response)
            self._count("sent", len(batch) - len(rejected))
            self._count("rejected", len(rejected))
            self._fine(what)
            if rejected:
                logger.debug("router-health refused %d observation(s), first: %s",
                             len(rejected), rejected[0])
            return None
        self._count("lost", len(batch))
        message = f"HTTP {response.status_code}: {_error_text(response)}"
        if response.status_code == 429:
            return _retry_after(response) or settings.flush_interval
        if response.status_code in (401, 403, 404, 413, 400):  # needs a config change: rarely retry
            self._trouble(what, message + " (check observe_token and the batch size)")
            return settings.max_backoff
        self._trouble(what, message)
        return settings.flush_interval

    # -- routable sets in ----------------------------------------------------------------

    async def _poll_loop(self, http: httpx.AsyncClient) -> None:
        settings = self.settings
        limiter = trio.CapacityLimiter(_MAX_CONCURRENT_POLLS)
        next_poll: dict[str, float] = {}
        while True:
            self._poller_wake = trio.Event()  # a model asked for from here on wakes the wait below
            now = time.monotonic()
            with self._lock:
                for model, asked in list(self._asked.items()):
                    if now - asked > settings.idle_after:
                        del self._asked[model]
                        self._sets.pop(model, None)
                        next_poll.pop(model, None)
                wanted = list(self._asked)
            due = [m for m in wanted if next_poll.get(m, 0.0) <= now]
            async with trio.open_nursery() as nursery:
                for model in due:
                    next_poll[model] = now + settings.poll_interval
                    nursery.start_soon(self._poll, http, model, limiter)
            upcoming = min((next_poll[m] for m in wanted), default=now + settings.idle_after)
            with trio.move_on_after(max(0.0, upcoming - time.monotonic())):
                await self._poller_wake.wait()

    async def _poll(
        self, http: httpx.AsyncClient, model: str, limiter: trio.CapacityLimiter
    ) -> None:
        settings = self.settings
        what = "routable sets"
        async with limiter:
            with self._lock:
                current = self._sets.get(model)
            headers = {"if-none-match": current.etag} if current and current.etag else {}
            try:
                with trio.fail_after(settings.route_timeout):
                    response = await http.get(
                        f"/v1/route/{quote(model, safe='')}",
                        headers=headers,
                        timeout=settings.route_timeout,
                    )
            except (httpx.HTTPError, trio.TooSlowError) as exc:
                self._count("route_failures")
                self._trouble(what, f"{display_url(settings.url)} unreachable or slower than "
                                    f"{settings.route_timeout:g} s ({_why(exc)}); "
                                    "the router keeps its own choices")
                return
        now = time.monotonic()
        route: RouteSet | None = None
        if response.status_code == 304 and current is not None:
            route = dataclasses.replace(current, confirmed=now)
            self._count("route_not_modified")
        elif response.status_code == 200:
            route = parse_route(model, _json(response), response.headers.get("etag"), now)
            if route is None:
                self._count("route_failures")
                self._trouble(what, f"GET /v1/route/{model}: not a routable set")
                return
            self._count("route_answers")
        else:
            self._count("route_failures")
            with self._lock:
                self._sets.pop(model, None)  # router-health no longer vouches for the old one
            if response.status_code != 404:  # 404: a model router-health does not check
                self._trouble(what, f"GET /v1/route/{model}: HTTP {response.status_code}: "
                                    f"{_error_text(response)}")
            return
        self._fine(what)
        with self._lock:
            if model in self._asked:
                self._sets[model] = route


def _why(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError | httpx.TimeoutException):
        return "timed out"
    return str(exc) or type(exc).__name__


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_text(response: httpx.Response) -> str:
    body = _json(response)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:200]
    return response.text[:200]


def _rejected(response: httpx.Response) -> list[Any]:
    body = _json(response)
    rejected = body.get("rejected") if isinstance(body, dict) else None
    return rejected if isinstance(rejected, list) else []


def _retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None

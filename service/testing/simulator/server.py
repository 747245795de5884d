"""The :class:`Simulator`: one HTTP/1.1 server on raw Trio sockets for every provider.

It owns all state (providers, counters, random generators, the concurrency
limit's places) and turns each provider request into an answer: validation
(:mod:`.routes`), then ``concurrency_limit``, ``error_rate`` and the mode.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import socket
from collections.abc import Callable, Iterable
from typing import Any, Final

import h11
import trio

from .behavior import (
    _BASE_SUFFIX,
    _BEHAVIOR_FIELDS,
    _STATS_FIELDS,
    Behavior,
    ProviderStats,
    SimProvider,
    UnknownProviderError,
)
from .connection import _ClientGone, _Conn, _json_reply, _read_request, _Request
from .control import _control
from .kinds import wire_for
from .modes import _SIMULATED_ERROR, _send_mode_reply
from .routes import _route, _Routed

log = logging.getLogger(__name__)

_BACKLOG: Final = 65535


def _url_host(bound: str) -> str:
    """The host to put in URLs for a bound address: a wildcard is reached via loopback.

    Built from the address actually bound rather than the name asked for, so
    ``--host localhost`` cannot hand out a URL that resolves to the other family.
    """
    if bound in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bound == "::":
        return "[::1]"
    return f"[{bound}]" if ":" in bound else bound


class Simulator:
    """Serves every configured :class:`SimProvider` from one HTTP/1.1 server.

    All state lives on this object and is only touched from Trio tasks of one
    run, so no locking is needed; control methods (``set_behavior``,
    ``add_provider``...) are plain synchronous calls for the same reason.

    Each provider is served under ``/{name}``; the one named by ``at_root``
    also answers every path under no provider's name, so its base URL's
    origin is the server's (a probe path such as vLLM's ``/health`` reaches it).
    """

    def __init__(
        self,
        providers: Iterable[SimProvider],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        at_root: str | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._seed = seed
        self._providers: dict[str, SimProvider] = {}
        self._stats: dict[str, ProviderStats] = {}
        self._error_rng: dict[str, random.Random] = {}
        self._jitter_rng: dict[str, random.Random] = {}
        self._root_url: str | None = None
        self._busy = 0  # in_flight summed over providers, kept for a cheap wait_idle
        # Per provider: requests being answered that count against its
        # ``concurrency_limit`` (in_flight minus the ones being refused, so a
        # refusal still being written never makes the next request look over).
        self._admitted: dict[str, int] = {}
        #: TCP connections accepted so far: shows whether clients reuse connections.
        self.connections_opened = 0
        self._changed: trio.Event | None = None  # created only while someone waits
        for provider in providers:
            self.add_provider(provider)
        # The provider that also answers paths under no provider's name, as if
        # it were the whole server: what a base URL's *origin* reaches (vLLM's
        # /health next to /v1), which a name prefix cannot give.
        if at_root is not None:
            self.provider(at_root)
        self._at_root = at_root

    # -- configuration and inspection ------------------------------------------

    @property
    def root_url(self) -> str:
        """``http://host:port`` of the running server (after ``serve`` started)."""
        if self._root_url is None:
            raise RuntimeError(
                "the simulator is not serving yet: use `await nursery.start(sim.serve)`"
            )
        return self._root_url

    def provider(self, name: str) -> SimProvider:
        """The simulator's own copy of a provider; its ``behavior`` is what new requests get.

        Change behaviour through :meth:`set_behavior`, which validates.
        """
        try:
            return self._providers[name]
        except KeyError:
            raise UnknownProviderError(name) from None

    def base_url(self, name: str) -> str:
        """The ``base_url`` an adapter of this provider's kind should be configured with.

        The provider served ``at_root`` has its base URL at the server's root
        (it still answers under ``/{name}`` too).
        """
        provider = self.provider(name)
        mount = "" if name == self._at_root else f"/{name}"
        return f"{self.root_url}{mount}{_BASE_SUFFIX[provider.kind]}"

    def add_provider(self, p: SimProvider) -> None:
        """Serve one more provider (also while running). Names must be unique.

        The simulator keeps its own copy (models and behaviour included), so
        two providers built with one shared ``Behavior`` object cannot steer
        each other, and later edits to the caller's object change nothing:
        use :meth:`set_behavior`.
        """
        if not isinstance(p, SimProvider):
            raise TypeError(f"expected a SimProvider, got {type(p).__name__}")
        if p.name in self._providers:
            raise ValueError(f"duplicate provider name {p.name!r}")
        p = dataclasses.replace(p, models=list(p.models), behavior=dataclasses.replace(p.behavior))
        self._providers[p.name] = p
        self._stats[p.name] = ProviderStats()
        self._admitted[p.name] = 0
        # Per-provider generators, started from the number given to the
        # constructor and the provider's name: the same number gives the same
        # error pattern run after run, and a provider's pattern depends only
        # on its own request order, not on traffic to the others.
        self._error_rng[p.name] = random.Random(f"{self._seed}:{p.name}:errors")
        self._jitter_rng[p.name] = random.Random(f"{self._seed}:{p.name}:jitter")

    def set_behavior(self, name: str, **changes: Any) -> None:
        """Change fields of a provider's :class:`Behavior`, all or nothing.

        Raises ``ValueError`` for an unknown provider, field, mode or a bad
        value. Requests already being answered keep the behaviour they started
        with; the change applies from the next request.
        """
        provider = self.provider(name)
        unknown = set(changes) - _BEHAVIOR_FIELDS
        if unknown:
            raise ValueError(f"unknown Behavior field(s): {', '.join(sorted(unknown))}")
        candidate = dataclasses.replace(provider.behavior, **changes)  # validates
        for key in changes:
            setattr(provider.behavior, key, getattr(candidate, key))

    def stats(self, name: str) -> ProviderStats:
        """A snapshot of one provider's counters (later traffic does not change it)."""
        self.provider(name)
        return dataclasses.replace(self._stats[name])

    def total_stats(self) -> ProviderStats:
        """A snapshot of the counters summed over every provider."""
        total = ProviderStats()
        for stats in self._stats.values():
            for key in _STATS_FIELDS:
                setattr(total, key, getattr(total, key) + getattr(stats, key))
        return total

    def reset_stats(self) -> None:
        """Zero every counter except ``in_flight`` (those requests are still running)."""
        for stats in self._stats.values():
            for key in _STATS_FIELDS:
                if key != "in_flight":
                    setattr(stats, key, 0)
        self._notify()

    def provider_entries(self) -> list[dict[str, Any]]:
        """Config-ready provider dicts pointing at this simulator (needs it running)."""
        entries: list[dict[str, Any]] = []
        for name, provider in self._providers.items():
            entry: dict[str, Any] = {
                "name": name,
                "type": provider.kind,
                "base_url": self.base_url(name),
            }
            if provider.api_key is not None:
                entry["api_key"] = provider.api_key
            model = entry["model"] = provider.models[0]
            if provider.mode_of(model) != "chat":
                entry["mode"] = provider.mode_of(model)
            entries.append(entry)
        return entries

    # -- waiting ---------------------------------------------------------------

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true, re-checking it on every stats change.

        Event-driven (no polling), so tests can wait for "the request reached
        the upstream" or "the upstream saw the disconnect" without sleeping.
        """
        if predicate():
            await trio.lowlevel.checkpoint()
            return
        while not predicate():
            if self._changed is None:
                self._changed = trio.Event()
            await self._changed.wait()

    async def wait_idle(self) -> None:
        """Return once no provider has a request in flight."""
        await self.wait_until(lambda: self._busy == 0)

    # -- serving ---------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, report ``root_url`` through ``task_status``, serve until cancelled.

        Every connection runs in a task of the nursery inside this call, so
        cancelling ``serve`` closes all of them; nothing outlives it.
        """
        infos = await trio.socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        if not infos:
            raise OSError(f"cannot resolve {self._host!r}")
        family, type_, proto, _, sockaddr = infos[0]
        sock = trio.socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            await sock.bind(sockaddr)
            sock.listen(_BACKLOG)
        except BaseException:
            sock.close()
            raise
        listener = trio.SocketListener(sock)
        bound_host, port = sock.getsockname()[:2]
        self._root_url = f"http://{_url_host(bound_host)}:{port}"
        async with listener:
            task_status.started(self._root_url)
            await trio.serve_listeners(self._serve_connection, [listener])

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        """Answer requests on one keep-alive connection until either side closes it.

        Any error stays inside this connection: it is logged and the socket
        closed, and the server keeps serving everyone else.
        """
        conn = _Conn(stream)
        self.connections_opened += 1
        try:
            while True:
                request = await _read_request(conn)
                if request is None:
                    return
                await self._dispatch(conn, request)
                if conn.closed:
                    return
                if conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
                    return  # MUST_CLOSE (Connection: close, HTTP/1.0) or an error
                conn.h11.start_next_cycle()
        except _ClientGone:
            pass
        except Exception:
            log.exception("simulator: connection handler failed")
        finally:
            await trio.aclose_forcefully(stream)

    async def _dispatch(self, conn: _Conn, req: _Request) -> None:
        conn.head = req.method == "HEAD"
        if req.path == "/_sim" or req.path.startswith("/_sim/"):
            await conn.send_reply(_control(self, req))
            return
        name, _, tail = req.path[1:].partition("/")
        provider = self._providers.get(name)
        if provider is None and self._at_root is not None:
            await self._handle_provider(conn, self._providers[self._at_root], req.path, req)
            return
        if provider is None:
            reply = _json_reply(404, {"error": {"message": f"no simulated provider {name!r}"}})
            await conn.send_reply(reply)
            return
        await self._handle_provider(conn, provider, "/" + tail, req)

    # -- provider requests -----------------------------------------------------

    async def _handle_provider(
        self, conn: _Conn, provider: SimProvider, rest: str, req: _Request
    ) -> None:
        """Count the request and answer it; in_flight is restored on every exit path."""
        name = provider.name
        stats = self._stats[name]
        stats.requests += 1
        stats.in_flight += 1
        self._busy += 1
        self._notify()
        finished = False
        try:
            await self._answer(conn, provider, rest, req)
            finished = True
        finally:
            stats.in_flight -= 1
            self._busy -= 1
            if finished:
                stats.completed += 1
            else:
                stats.disconnected += 1
            self._notify()

    def _delay(self, name: str, behavior: Behavior) -> float:
        delay = behavior.latency
        if behavior.jitter > 0:
            delay += self._jitter_rng[name].uniform(-behavior.jitter, behavior.jitter)
        return max(0.0, delay)

    async def _answer(self, conn: _Conn, provider: SimProvider, rest: str, req: _Request) -> None:
        """Validate, then answer according to the provider's behaviour.

        Order, the same for every kind: path (404), method (405), required
        headers/query (Azure ``api-version``, ``anthropic-version``), key (401),
        body and model (400/404) -- then ``concurrency_limit`` (an immediate
        429), then ``error_rate``, then the mode. Every other answer, validation
        errors included, waits the latency first: a real upstream takes a round
        trip to refuse a key too. Every request not refused, validation errors
        and hanging ones included, holds one of the limit's places during its
        latency (a hanging one: until the client leaves).
        """
        behavior = dataclasses.replace(provider.behavior)  # one behaviour per request
        # Modes that answer 401 do so whatever key was sent (echo_key must echo
        # even a wrong key, or a redaction test could pass without a leak).
        check_auth = behavior.mode not in ("unauthorized", "echo_key")
        routed = _route(provider, rest, req, self._stats[provider.name], check_auth=check_auth)
        self._notify()  # probe counters may have moved
        if routed.probe and self._over_limit(provider.name, behavior):
            await self._refuse(conn, provider, behavior)
            return
        name = provider.name
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self._admitted[name] -= 1

        self._admitted[name] += 1
        try:
            await self._answer_admitted(conn, provider, routed, behavior, req, release)
        finally:
            release()

    def _over_limit(self, name: str, behavior: Behavior) -> bool:
        limit = behavior.concurrency_limit
        return limit > 0 and self._admitted[name] >= limit

    async def _refuse(self, conn: _Conn, provider: SimProvider, behavior: Behavior) -> None:
        """Over ``concurrency_limit``: a 429 at once, as a provider's rate limiter answers.

        No latency first: real limiters refuse before the request reaches a
        model, and that is what makes an aggressive client burn through them.
        """
        self._stats[provider.name].rate_limited += 1
        self._notify()
        await conn.send_reply(wire_for(provider.kind).rate_limited(behavior.retry_after))

    async def _answer_admitted(
        self,
        conn: _Conn,
        provider: SimProvider,
        routed: _Routed,
        behavior: Behavior,
        req: _Request,
        release: Callable[[], None],
    ) -> None:
        kind = provider.kind
        delay = self._delay(provider.name, behavior)

        async def work() -> None:
            # The request holds its place under ``concurrency_limit`` while the
            # upstream works on it (the latency) and gives it back before the
            # answer is written: a client that sends its next request as soon
            # as it reads this answer must find the place free, as it would at
            # a real provider (else a client keeping exactly to the limit is
            # refused because this task has not resumed yet).
            await conn.pause(delay)
            release()

        if not routed.probe:
            await work()
            await conn.send_reply(routed.reply)
            return
        if (
            behavior.error_rate > 0
            and self._error_rng[provider.name].random() < behavior.error_rate
        ):
            await work()
            await conn.send_reply(wire_for(kind).error_reply(500, _SIMULATED_ERROR))
            return
        mode = behavior.mode
        if mode == "hang":
            await conn.pause(math.inf)  # only a disconnect or cancellation ends this
            return
        await work()
        await _send_mode_reply(conn, kind, behavior, routed.reply, req, self._stats[provider.name])

"""AdapterManager: models -> adapters, and the lifetime of their HTTP clients."""

from __future__ import annotations

import difflib
import logging
import os
import ssl
import urllib.request
from collections.abc import Collection, Iterable, Sequence
from types import TracebackType
from typing import Final, Self, Unpack
from urllib.parse import urlsplit

import httpx
import trio

from adapters import ADAPTER_TYPES
from adapters.base import Adapter, HttpAdapter
from adapters.custom import SyncCallableAdapter
from adapters.transport import ConnectionBudget, HttpConnection, HttpxTransport, ProbeTransport

from ..config import Config, ProviderConfig, tag_problem
from ..config.values import name_problem
from .checker import HealthChecker
from .passive import PassivePolicy, ReportedRequest
from .settings import CheckerSettings
from .shards import ShardError, ShardPool, plan_shards
from .telemetry import TracingExport, open_tracing

logger = logging.getLogger("router_health.manager")

__all__ = ["AdapterManager", "UnknownModelError", "raise_open_file_limit", "socket_budget"]

#: File descriptors left to everything but probe sockets: the server's own
#: connections, log files, the event loop, a TLS CA bundle being read...
FD_RESERVE: Final = 256


class UnknownModelError(KeyError):
    """A model name that is not configured; ``available`` holds every one that is.

    The message lists them all while there are at most :attr:`LISTED`;
    past that, only a few close to ``name`` (difflib) and how many there are:
    a config of ten thousand models must not make a one-line error a megabyte.
    """

    #: Every configured model is named while there are at most this many.
    LISTED: Final = 10
    #: Past that, at most this many close ones.
    CLOSE: Final = 5

    def __init__(self, name: str, available: Sequence[str]) -> None:
        self.name = name
        self.available = list(available)
        super().__init__(name)

    def __str__(self) -> str:
        shown = repr(self.name if len(self.name) <= 100 else self.name[:100] + "...")
        if len(self.available) <= self.LISTED:
            listed = ", ".join(self.available) or "(none)"
            return f"unknown model {shown}; configured models: {listed}"
        close = difflib.get_close_matches(self.name[:100], self.available, n=self.CLOSE)
        hint = f"did you mean {', '.join(map(repr, close))}?" if close else "no configured model is close"
        return f"unknown model {shown}; {hint} ({len(self.available):,} models configured)"


def build_adapter(provider: ProviderConfig, *, max_body_bytes: int) -> HttpAdapter:
    cls = ADAPTER_TYPES[provider.type]
    return cls(
        provider=provider.name,
        base_url=provider.base_url,
        model=provider.model,
        api_key=provider.api_key,
        probe=provider.active_probe,
        verify_model=provider.verify_model,
        max_body_bytes=max_body_bytes,
        timeout=provider.timeout,
        options=provider.options,
        mode=provider.mode,
        reasoning=provider.reasoning,
        probe_model=provider.probe_model,
        max_tokens=provider.max_tokens,
        probe_path=provider.probe_path,
        headers=provider.headers,
        expect_status=provider.expect_status,
        allow_image_probe=provider.allow_image_probe,
    )


class AdapterManager:
    """Owns the adapters of every configured model and their HTTP connections.

    Use it as ``async with manager:``; the connections open on demand inside
    it and all close on exit. Each HTTP adapter gets an
    :class:`~adapters.transport.HttpConnection` of its own (HTTP/1.1 straight over
    a Trio socket, kept alive from one run to the next): measured at 1,000
    concurrent probes it costs about a third of the CPU of an httpx client per
    adapter, and a sixth of one shared httpx client (a sixtieth when that
    pool keeps every connection alive: its bookkeeping grows with the
    connections it holds). See benchmarks/RESULTS.md. Adapters
    whose URL the environment sends through a proxy get an httpx client
    instead. One TLS context is shared by all, since building one is costly.

    All sockets share one :class:`~adapters.transport.ConnectionBudget`, sized
    from ``RLIMIT_NOFILE`` (the CLI first raises its soft limit towards the
    hard one when the fleet needs it: :func:`raise_open_file_limit`): 10,000
    adapters cannot exhaust the process's file descriptors, they queue for
    sockets instead.
    """

    def __init__(self, config: Config, *, checker: HealthChecker | None = None) -> None:
        self.config = config
        self.health_checker = checker or HealthChecker(CheckerSettings.from_config(config.checks))
        self.health_checker.add_secrets(
            [
                config.server.auth_token,
                *(secret for m in config.models for p in m.providers for secret in p.secrets),
            ]
        )
        self.model_adapters: dict[str, list[Adapter]] = {
            model.name: [
                build_adapter(p, max_body_bytes=config.checks.max_body_bytes)
                for p in model.providers
            ]
            for model in config.models
        }
        unchecked = [
            f"{model.name}/{p.name}" for model in config.models for p in model.providers
            if p.type == "unsupported"
        ]
        if unchecked:
            # Said once here; each run then reports them without a warning.
            logger.info(
                "%d deployment(s) will not be checked (type \"unsupported\"): %s",
                len(unchecked),
                ", ".join(unchecked[:10]) + (", ..." if len(unchecked) > 10 else ""),
            )
        # (model, provider) -> the adapter's effective tags (its model's and its own).
        self.adapter_tags: dict[tuple[str, str], frozenset[str]] = {
            (model.name, p.name): frozenset(model.effective_tags(p))
            for model in config.models
            for p in model.providers
        }
        # Passive entries are judged by the traffic the router reports (observe()).
        for model in config.models:
            for entry, adapter in zip(model.providers, self.model_adapters[model.name], strict=True):
                if entry.passive:
                    schedule = config.checks.schedule_for(model.name, entry.name)
                    self.health_checker.passive.watch(
                        model.name,
                        adapter,
                        PassivePolicy(schedule.passive_window, schedule.passive_error_rate),
                    )
        self.sync_limiter = trio.CapacityLimiter(config.checks.sync_threads)
        self._clients: list[ProbeTransport] = []
        self.connection_budget: ConnectionBudget | None = None
        self._tracing: TracingExport | None = None  # [telemetry], while open
        self._shards: ShardPool | None = None  # worker processes, while open (large fleets)
        self._open = False

    @classmethod
    def from_config(cls, config: Config, *, checker: HealthChecker | None = None) -> Self:
        return cls(config, checker=checker)

    def __repr__(self) -> str:
        adapters = sum(len(a) for a in self.model_adapters.values())
        return (
            f"AdapterManager(models={len(self.model_adapters)}, adapters={adapters}, "
            f"open={self._open})"
        )

    # -- the v1 accessors -----------------------------------------------------

    def get_available_models(self) -> list[str]:
        return list(self.model_adapters)

    def get_model_adapters(self, model_name: str) -> list[Adapter]:
        try:
            return self.model_adapters[model_name]
        except KeyError:
            raise UnknownModelError(model_name, list(self.model_adapters)) from None

    def all_adapters(self) -> list[tuple[str, Adapter]]:
        return [(m, a) for m, adapters in self.model_adapters.items() for a in adapters]

    @property
    def is_open(self) -> bool:
        return self._open

    def select(
        self,
        models: Collection[str] | None = None,
        providers: Collection[str] | None = None,
        tags: Iterable[str] = (),
        exclude: Iterable[str] = (),
    ) -> dict[str, list[Adapter]]:
        """The plan for a selection: model -> its adapters that match, in config order.

        ``models``/``providers`` (None = all) restrict by name; an adapter is
        kept when its effective tags include *all* of ``tags`` and *none* of
        ``exclude``. Models left without adapters are left out. Raises
        :class:`UnknownModelError` for a model name that is not configured.
        """
        if models is not None:
            for name in models:
                if name not in self.model_adapters:
                    raise UnknownModelError(name, list(self.model_adapters))
        wanted, unwanted = frozenset(tags), frozenset(exclude)
        plan: dict[str, list[Adapter]] = {}
        for model, adapters in self.model_adapters.items():
            if models is not None and model not in models:
                continue
            kept = [
                a
                for a in adapters
                if (providers is None or a.provider in providers)
                and wanted <= (own := self.adapter_tags.get((model, a.provider), frozenset()))
                and not unwanted & own
            ]
            if kept:
                plan[model] = kept
        return plan

    def observe(
        self, model: str, provider: str, *, ok: bool, **request: Unpack[ReportedRequest]
    ) -> bool:
        """Report one request the router sent through ``model``'s ``provider``.

        ``request`` may say ``latency_ms``, ``http_status``, ``failure`` and
        ``error``. Passive adapters (``probe = "passive"``) are judged by these
        reports instead of probes while traffic flows (see
        :mod:`service.engine.passive`). Returns whether the report counted
        (False: that adapter is not passive). Raises
        :class:`UnknownModelError` or ``ValueError`` (an unknown provider, or
        values that cannot describe a request).
        """
        adapters = self.get_model_adapters(model)
        if not any(a.provider == provider for a in adapters):
            listed = ", ".join(a.provider for a in adapters)
            raise ValueError(
                f"model {model!r} has no provider named {provider!r}; its providers: {listed}"
            )
        return self.health_checker.observe(model, provider, ok=ok, **request)

    def register_adapter(
        self,
        model_name: str,
        adapter: Adapter,
        *,
        tags: Iterable[str] = (),
        passive: PassivePolicy | None = None,
    ) -> None:
        """Add an adapter of your own (see ``adapters.custom``) to a model, new or existing.

        ``tags`` are its effective tags for :meth:`select` (the filters).
        ``passive``: judge it by reported traffic (:meth:`observe`) while
        there is some, probing it only when quiet.
        """
        if not isinstance(adapter, Adapter):
            raise TypeError(
                f"{adapter!r} is not an adapter: it needs `provider`, `adapter_name` "
                "and `async def check_health()`"
            )
        for what, name in (("model", model_name), ("provider", adapter.provider)):
            problem = name_problem(name) if isinstance(name, str) else "must be a string"
            if problem is not None:
                raise ValueError(f"{what} name {problem}")
        tags = frozenset(tags)
        for tag in sorted(tags):
            problem = tag_problem(tag)
            if problem is not None:
                raise ValueError(problem)
        adapters = self.model_adapters.setdefault(model_name, [])
        if any(a.provider == adapter.provider for a in adapters):
            raise ValueError(
                f"model {model_name!r} already has a provider named {adapter.provider!r}"
            )
        if isinstance(adapter, SyncCallableAdapter) and adapter.limiter is None:
            adapter.limiter = self.sync_limiter
        if isinstance(adapter, HttpAdapter) and self._open:
            adapter.bind_client(self._new_client(adapter))
        self.health_checker.add_secrets(
            getattr(adapter, "secrets", None) or [getattr(adapter, "api_key", None)]
        )
        adapters.append(adapter)
        self.adapter_tags[(model_name, adapter.provider)] = tags
        if passive is not None:
            self.health_checker.passive.watch(model_name, adapter, passive)

    # -- lifetime ----------------------------------------------------------------

    def _new_client(self, adapter: HttpAdapter) -> ProbeTransport:
        client: ProbeTransport
        if _proxied(adapter.base_url):
            timeout = adapter.timeout or self.health_checker.settings.adapter_timeout
            client = HttpxTransport(
                httpx.AsyncClient(
                    verify=self._ssl_context,
                    # The checker's Trio deadline is the real bound; this only keeps a
                    # client used outside the checker from waiting forever.
                    timeout=httpx.Timeout(timeout + 1.0),
                    limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
                    follow_redirects=False,
                )
            )
        else:
            client = HttpConnection(ssl_context=self._ssl_context, budget=self.connection_budget)
        self._clients.append(client)
        return client

    async def __aenter__(self) -> Self:
        if self._open:
            raise RuntimeError("AdapterManager is already open")
        # The exporter is one more HTTP client: it lives as long as the others.
        self._tracing = open_tracing(self.config.telemetry, self.health_checker.tracing)
        self._ssl_context = ssl.create_default_context()
        http_adapters = [a for _, a in self.all_adapters() if isinstance(a, HttpAdapter)]
        self.connection_budget = ConnectionBudget(socket_budget(len(http_adapters)))
        for adapter in http_adapters:
            adapter.bind_client(self._new_client(adapter))
        self._open = True
        try:
            await self._start_shards()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def _start_shards(self) -> None:
        """Worker processes for a large fleet (:mod:`service.engine.shards`), if it needs them."""
        checker = self.health_checker
        pool = plan_shards(
            self.config,
            self.model_adapters,
            checker.settings,
            shardable=checker.shardable,
            secrets=checker.known_secrets,
        )
        if pool is None:
            return
        try:
            await pool.start()
        except ShardError as exc:
            logger.warning(
                "Could not start %d worker processes (%s): this process probes every adapter "
                "itself; set [checks] workers = 1 to silence this",
                len(pool.workers),
                exc,
            )
            return
        self._shards = pool
        checker.shards = pool
        logger.info(
            "Probing %d adapters in %d worker processes (pids %s)",
            sum(pool.sizes),
            len(pool.workers),
            ", ".join(map(str, pool.pids())),
        )

    def shard_pids(self) -> list[int]:
        """Process ids of the live worker processes (empty when the fleet is not sharded)."""
        return [] if self._shards is None else self._shards.pids()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every HTTP connection and worker process; safe to call twice, and when cancelled."""
        self._open = False
        shards, self._shards = self._shards, None
        if shards is not None:
            if self.health_checker.shards is shards:
                self.health_checker.shards = None
            await shards.aclose()  # shielded and bounded, like the closes below
        for _, adapter in self.all_adapters():
            if isinstance(adapter, HttpAdapter):
                adapter.bind_client(None)
        clients, self._clients = self._clients, []
        # Shielded with a bound: closing must finish even during a shutdown
        # cancellation, but must not hang it either.
        with trio.move_on_after(5) as scope:
            scope.shield = True
            for client in clients:
                await client.aclose()
        tracing, self._tracing = self._tracing, None
        if tracing is not None:
            await tracing.aclose()


def raise_open_file_limit(sockets_wanted: int) -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` so ``sockets_wanted`` probe sockets fit.

    The soft default is often 1,024 while the hard limit is much higher. A
    process-wide side effect, so the library never does it by itself: the
    ``router-health`` command calls it with the fleet's size, and an
    embedder with a large fleet may too, before opening the manager.
    Returns the soft limit now in force (-1 for unlimited or unknown).
    """
    try:
        import resource
    except ImportError:  # not a POSIX system: no limit we can change
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _open_fds() + FD_RESERVE + sockets_wanted
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
            soft = new_soft
        except (ValueError, OSError):
            pass  # keep the old limit; socket_budget() respects it
    return -1 if soft == resource.RLIM_INFINITY else soft


def socket_budget(sockets_wanted: int) -> int:
    """How many probe sockets this process may hold open at once.

    Leaves :data:`FD_RESERVE` descriptors and those already open to
    everything else, within the soft ``RLIMIT_NOFILE`` as it is (see
    :func:`raise_open_file_limit` to raise it first).
    """
    try:
        import resource
    except ImportError:  # not a POSIX system: no limit we can read
        return max(sockets_wanted, 1)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max(sockets_wanted, 1)
    return max(soft - _open_fds() - FD_RESERVE, 16)


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64  # a guess where /proc is missing (macOS): fds of a fresh process


def _proxied(url: str) -> bool:
    """Whether the environment names a proxy for ``url`` (as httpx would use it)."""
    proxies = urllib.request.getproxies_environment()
    if not proxies:
        return False
    parts = urlsplit(url)
    if parts.scheme not in proxies and "all" not in proxies:
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")

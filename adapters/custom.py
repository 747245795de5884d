"""Adapters for checks you write yourself: any async or blocking callable.

Register one with ``AdapterManager.register_adapter(model, adapter)``::

    async def ping_my_gateway() -> bool:
        ...

    manager.register_adapter("gpt-4", CallableAdapter("my-gateway", ping_my_gateway))
    manager.register_adapter("gpt-4", SyncCallableAdapter("legacy-sdk", legacy_client.ping))

A callable returns ``True``/``False`` or a :class:`~adapters.base.ProbeOutcome`
(to report an HTTP status or an error message); raising counts as unhealthy.
``timeout=`` (seconds) gives the adapter a deadline of its own instead of
``[checks] adapter_timeout``, as a provider's ``timeout`` key does.
Any object with ``provider``, ``adapter_name`` and ``async def check_health()``
works too: the checker needs nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import trio

from .base import FailureKind, ProbeOutcome

__all__ = ["CallableAdapter", "SyncCallableAdapter"]

AsyncCheck = Callable[[], Awaitable[bool | ProbeOutcome]]
SyncCheck = Callable[[], bool | ProbeOutcome]


def _checked_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
        math.isfinite(timeout) and timeout > 0
    ):
        raise ValueError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
    return float(timeout)


def _as_outcome(value: object, provider: str) -> ProbeOutcome:
    if isinstance(value, ProbeOutcome):
        return value
    if value is True:
        return ProbeOutcome.ok()
    if value is False:
        return ProbeOutcome.fail(FailureKind.EXCEPTION, "check returned False")
    return ProbeOutcome.fail(
        FailureKind.EXCEPTION,
        f"check for {provider!r} returned {type(value).__name__}; expected bool or ProbeOutcome",
    )


class CallableAdapter:
    """Wraps an async callable. Cancellation reaches it like any Trio code."""

    def __init__(
        self,
        provider: str,
        check: AsyncCheck,
        *,
        adapter_name: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self.provider: str = provider
        self.adapter_name: str = adapter_name or str(getattr(check, "__name__", "CallableAdapter"))
        self.timeout = _checked_timeout(timeout)
        self._check = check

    def __repr__(self) -> str:
        return f"CallableAdapter(provider={self.provider!r}, adapter_name={self.adapter_name!r})"

    async def check_health(self) -> ProbeOutcome:
        return _as_outcome(await self._check(), self.provider)


class SyncCallableAdapter:
    """Wraps blocking code (an SDK without async support) in a worker thread.

    The thread is *abandoned* when the deadline passes, so blocking code can
    neither freeze the event loop nor stretch a deadline. An abandoned thread
    keeps its limiter token until it really returns, so these adapters get a
    limiter of their own (set by the manager) rather than Trio's default one,
    which Trio also uses for DNS lookups: a stuck SDK must not starve those.
    """

    def __init__(
        self,
        provider: str,
        check: SyncCheck,
        *,
        adapter_name: str | None = None,
        limiter: trio.CapacityLimiter | None = None,
        timeout: float | None = None,
    ) -> None:
        self.provider: str = provider
        self.adapter_name: str = adapter_name or str(getattr(check, "__name__", "SyncCallableAdapter"))
        self.limiter = limiter
        self.timeout = _checked_timeout(timeout)
        self._check = check

    def __repr__(self) -> str:
        return f"SyncCallableAdapter(provider={self.provider!r}, adapter_name={self.adapter_name!r})"

    async def check_health(self) -> ProbeOutcome:
        value = await trio.to_thread.run_sync(
            self._check, abandon_on_cancel=True, limiter=self.limiter
        )
        return _as_outcome(value, self.provider)

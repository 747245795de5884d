"""Sending an alert through Apprise: off the event loop, one at a time per channel, secrets masked.

Apprise is synchronous (``requests`` underneath), so each message is sent by
``trio.to_thread.run_sync`` with the channel's own ``CapacityLimiter(1)``:
a channel has at most one thread at a time, and a slow or hanging one never
holds up the event loop or another channel. The notifier abandons a send
past its ``timeout`` (``abandon_on_cancel``); the thread runs on until
Apprise's own timeouts end it, keeping the channel's limiter meanwhile, so
the channel's next sends time out too instead of piling threads up.

Apprise and ``urllib3`` log URLs, payloads and, at Apprise's TRACE level,
every token of a URL. While a notifier runs, and while any of its threads
still does, a filter on those loggers masks every secret of every channel in
every record (message, arguments and traceback). Apprise is imported here
only, when a notifier with channels starts: the base install does not need it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any, Final

import trio

from adapters.base import Secret, scrub

from ..config.alerts import APPRISE_MISSING, AlertChannelConfig
from .alerts_messages import AlertMessage
from .log_scrub import ScrubFilter

__all__ = ["SCRUBBED_LOGGERS", "AlertDeliveryError", "AppriseTransport", "LogGuard"]

#: Loggers (and their children) that may see a channel's URL, tokens or payload.
SCRUBBED_LOGGERS: Final = ("apprise", "urllib3", "requests", "requests_oauthlib", "oauthlib")
#: Longest failure reason kept from Apprise's own log of a send.
_MAX_REASON: Final = 200


class AlertDeliveryError(Exception):
    """A message was not delivered; the text is safe to show (secrets masked)."""


class LogGuard:
    """The scrub filter on :data:`SCRUBBED_LOGGERS` while anyone holds the guard.

    Held by a running notifier and by each of its sending threads, so a
    thread abandoned at a timeout that logs after the notifier stopped is
    still masked. Thread-safe.
    """

    def __init__(self, secrets: Iterable[Secret | str]) -> None:
        self._filter = ScrubFilter(list(secrets))
        self._lock = threading.Lock()
        self._holders = 0
        self._loggers: list[logging.Logger] = []

    def acquire(self) -> None:
        """Hold the guard; every logger under :data:`SCRUBBED_LOGGERS` now has the filter.

        Looked up again at every acquire (each send): a module imported since
        (``urllib3.connectionpool`` once Apprise pulls ``requests`` in) has a
        logger of its own, and a parent's filter does not see a child's records.
        """
        with self._lock:
            self._holders += 1
            for each in _loggers_under(SCRUBBED_LOGGERS):
                if each not in self._loggers:
                    each.addFilter(self._filter)
                    self._loggers.append(each)

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                for each in self._loggers:
                    each.removeFilter(self._filter)
                self._loggers = []

    @property
    def held(self) -> bool:
        return self._holders > 0


def _loggers_under(prefixes: Iterable[str]) -> list[logging.Logger]:
    """Every existing logger named ``prefix`` or ``prefix.*`` (a filter is per logger)."""
    names = set(prefixes)
    found = {name: logging.getLogger(name) for name in sorted(names)}
    for name, each in list(logging.root.manager.loggerDict.items()):
        if isinstance(each, logging.Logger) and name.split(".", 1)[0] in names:
            found[name] = each
    return list(found.values())


class _Call:
    """Whether a send's thread started (it releases the guard) or was abandoned before."""

    __slots__ = ("abandoned", "lock", "started")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = False
        self.abandoned = False


class AppriseTransport:
    """Sends one channel's messages through an ``apprise.Apprise`` holding its one URL."""

    def __init__(self, config: AlertChannelConfig, guard: LogGuard) -> None:
        self.config = config
        self._guard = guard
        self._secrets = config.secrets()
        self._limiter = trio.CapacityLimiter(1)
        self._apprise: Any = None

    def __repr__(self) -> str:
        return f"AppriseTransport({self.config.name!r}, {self.config.display_url!r})"

    async def open(self) -> None:
        """Build the Apprise object (in a thread: the first one loads every plugin)."""
        await self._in_thread(self._open)

    async def send(self, message: AlertMessage) -> None:
        """Deliver ``message``; :class:`AlertDeliveryError` when Apprise could not."""
        await self._in_thread(self._notify, message)

    async def _in_thread(self, function: Any, *args: Any) -> None:
        call = _Call()
        self._guard.acquire()  # released by the thread, however late it ends
        try:
            await trio.to_thread.run_sync(
                self._guarded, call, function, *args, abandon_on_cancel=True, limiter=self._limiter
            )
        finally:
            with call.lock:
                if not call.started:  # cancelled waiting for the limiter: no thread will run
                    call.abandoned = True
                    self._guard.release()

    def _guarded(self, call: _Call, function: Any, *args: Any) -> None:
        with call.lock:
            if call.abandoned:
                return
            call.started = True
        try:
            function(*args)
        finally:
            self._guard.release()

    def _open(self) -> None:
        try:
            import apprise
        except ImportError:
            raise AlertDeliveryError(APPRISE_MISSING) from None
        target = apprise.Apprise(asset=apprise.AppriseAsset(storage_mode="memory"))
        if not target.add(self.config.url.reveal()):
            raise AlertDeliveryError(
                f"Apprise cannot use {self.config.display_url} (it accepted it when the "
                "config loaded: is a plugin's library missing now?)"
            )
        self._apprise = target

    def _notify(self, message: AlertMessage) -> None:
        if self._apprise is None:
            self._open()
        import apprise

        result = self._apprise.notify(
            body=message.body,
            title=message.title,
            notify_type=apprise.NotifyType(message.severity),
            body_format=apprise.NotifyFormat.TEXT,
            # No call timeout: Apprise would return and leave its own thread sending
            # (and logging) past our guard. The notifier abandons this thread instead.
        )
        if result:
            return
        reasons = [
            entry.message
            for entry in result.logs()
            if entry.level in ("WARNING", "ERROR", "CRITICAL", "DEPRECATION WARNING")
        ]
        reason = reasons[-1] if reasons else f"Apprise reported {result.status!s}"
        raise AlertDeliveryError(scrub(reason, self._secrets, limit=_MAX_REASON))

"""Alert channels (``[[alerts]]``): the state's transitions, de-flapped and grouped, through Apprise.

An :class:`AlertNotifier` subscribes to :meth:`HealthState.subscribe` (before
the first probe: the app starts it next to the webhook) and runs, in its own
nursery:

* the *drain*, reading every transition at once and handing it to each
  channel that wants the adapter (``models``, ``tags``), whose
  :class:`~.alerts_rules.ChannelRules` decide what becomes an alert and when;
* per channel, a *scheduler* waking at the rules' next deadline (an outage
  lasting ``min_duration``, a ``repeat_every`` reminder, a ``digest`` closing)
  and a *sender* taking the channel's messages one at a time from a bounded
  queue (:data:`OUTBOX_LIMIT`) to its transport (Apprise, in a thread:
  :mod:`.alerts_apprise`). A send past the channel's ``timeout`` is
  abandoned. A full queue drops its oldest message, counted; the first drop
  of a run of them is logged. A failed message is not retried (a reminder
  follows while the outage lasts).

So a slow or hanging channel never holds up the state (the drain never
waits) nor another channel (each sends on its own). Timing runs on Trio's
clock: tests drive it with ``trio.testing.MockClock``.

Across a restart: storage restores each adapter's last verdict silently (no
transition), so at start the notifier reads what was restored
(:meth:`HealthState.restored`) and, for every adapter that was down (or
degraded), resumes its spell from when it began (``restored_since``: the
stored transition into that level, else the verdict's own time): see
:meth:`~.alerts_rules.ChannelRules.resume`. An outage goes on across a
rolling deploy: announced after ``min_duration`` from its real start,
reminded on schedule, and its recovery tells the whole duration.

When the state's channel ends (shutdown) every open digest goes out at once,
within :attr:`AlertNotifier.final_flush` seconds; what is still queued then
is dropped and counted, and :meth:`AlertNotifier.run` returns. Spells not yet
announced are never announced.

Secrets: a channel's URL shows as ``scheme://…`` in every log line, repr and
statistic; Apprise's and urllib3's records are scrubbed while it runs.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import trio

from adapters.base import scrub

from ..config.alerts import AlertChannelConfig
from ..engine.report import ProbeStatus
from .alerts_apprise import AlertDeliveryError, AppriseTransport, LogGuard
from .alerts_messages import AlertMessage, render
from .alerts_rules import ChannelRules
from .state import HealthState, Transition, level

__all__ = [
    "OUTBOX_LIMIT",
    "OUTCOMES",
    "AlertNotifier",
    "AlertTransport",
    "ChannelStatistics",
]

logger = logging.getLogger("router_health.alerts")

#: Messages waiting per channel at most; one more drops the oldest.
OUTBOX_LIMIT: Final = 100
#: The state's channel buffer: a whole fleet flipping in one tick must not drop us.
CHANNEL_BUFFER: Final = 10_000
#: ``outcome`` label values of the messages counter.
OUTCOMES: Final = ("delivered", "failed", "timeout", "dropped")

Key = tuple[str, str]


class AlertTransport(Protocol):
    """Delivers one channel's messages (Apprise in production, a recorder in tests)."""

    async def open(self) -> None: ...

    async def send(self, message: AlertMessage) -> None:
        """Deliver ``message``, or raise (an ``AlertDeliveryError`` says why, safely)."""
        ...


@dataclass(frozen=True, slots=True)
class ChannelStatistics:
    """One channel's counters since the notifier was created."""

    name: str
    target: str  # scheme://… (never more of the URL)
    delivered: int  # messages the transport accepted
    failed: int  # messages it refused or failed on
    timeout: int  # sends abandoned at the channel's timeout
    dropped: int  # messages lost: the queue was full, or still queued at shutdown
    pending: int  # messages queued now, the one being sent included
    last_error: str | None  # why the last failed send failed, masked; None after a success

    def counts(self) -> dict[str, int]:
        """The messages counter, by outcome (:data:`OUTCOMES`)."""
        return {
            "delivered": self.delivered, "failed": self.failed,
            "timeout": self.timeout, "dropped": self.dropped,
        }


class _Channel:
    def __init__(self, config: AlertChannelConfig, transport: AlertTransport) -> None:
        self.config = config
        self.rules = ChannelRules(config)
        self.transport = transport
        self.outbox: deque[AlertMessage] = deque()
        self.sending: AlertMessage | None = None
        self.send_scope: trio.CancelScope | None = None  # the send under way, if any
        self.delivered = self.failed = self.timeout = self.dropped = 0
        self.overflowing = False  # dropping since the last send: logged once
        self.failing = 0  # consecutive failed sends
        self.last_error: str | None = None
        self.usable = True  # False when the transport could not even open

    def statistics(self) -> ChannelStatistics:
        return ChannelStatistics(
            name=self.config.name,
            target=self.config.display_url,
            delivered=self.delivered,
            failed=self.failed,
            timeout=self.timeout,
            dropped=self.dropped,
            pending=len(self.outbox) + (self.sending is not None),
            last_error=self.last_error,
        )

    def label(self) -> str:
        return f"{self.config.name!r} ({self.config.display_url})"


class AlertNotifier:
    """Sends ``channels``' alerts about ``state``'s transitions; start it with ``nursery.start(run)``.

    ``adapter_tags``: (model, provider) -> the adapter's effective tags (for
    the channels' ``tags`` filters). ``transport``: builds a channel's
    transport (default: Apprise). ``final_flush``: seconds the last messages
    get at shutdown. ``restored_since``: (model, provider) -> unix time the
    level of a restored verdict began (:func:`.storage_spells.restored_spell_starts`);
    missing: the verdict's ``checked_at``.
    """

    def __init__(
        self,
        channels: Sequence[AlertChannelConfig],
        state: HealthState,
        adapter_tags: Mapping[Key, frozenset[str]],
        *,
        transport: Callable[[AlertChannelConfig], AlertTransport] | None = None,
        final_flush: float = 5.0,
        outbox_limit: int = OUTBOX_LIMIT,
        restored_since: Mapping[Key, float] | None = None,
    ) -> None:
        if not channels:
            raise ValueError("an AlertNotifier needs at least one channel")
        self._state = state
        self._tags = adapter_tags
        self._restored_since = dict(restored_since or {})
        secrets = [s for c in channels for s in c.secrets()]
        self._guard = LogGuard(secrets)
        make = transport or (lambda config: AppriseTransport(config, self._guard))
        self._channels = [_Channel(config, make(config)) for config in channels]
        self.final_flush = final_flush
        self._outbox_limit = outbox_limit
        self._closing = False
        self._final_deadline = math.inf
        self._ran = False
        self._stopped = trio.Event()
        self._changed = trio.Event()

    def __repr__(self) -> str:
        shown = ", ".join(c.label() for c in self._channels)
        return f"AlertNotifier([{shown}])"

    # -- observing -------------------------------------------------------------

    def statistics(self) -> list[ChannelStatistics]:
        """Every channel's counters, in config order."""
        return [c.statistics() for c in self._channels]

    def channel(self, name: str) -> ChannelStatistics:
        """One channel's counters, by its ``name``."""
        for each in self._channels:
            if each.config.name == name:
                return each.statistics()
        raise KeyError(name)

    async def wait_until(
        self, predicate: Callable[[list[ChannelStatistics]], bool]
    ) -> list[ChannelStatistics]:
        """Return the statistics once ``predicate`` holds for them (event-driven, no polling)."""
        await trio.lowlevel.checkpoint()
        while not predicate(stats := self.statistics()):
            await self._changed.wait()
        return stats

    async def wait_stopped(self) -> None:
        """Return once :meth:`run` has ended (after the last messages at shutdown)."""
        await self._stopped.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- running ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, open the transports, report started, then alert until the state closes.

        Delivery problems never escape; cancellation does. A notifier runs once.
        """
        if self._ran:
            raise RuntimeError("an AlertNotifier runs once; create a new one")
        self._ran = True
        receive = self._state.subscribe(CHANNEL_BUFFER)
        self._guard.acquire()
        try:
            # No checkpoint since subscribing: no transition is missed or seen twice.
            resumed = self._resume()
            for channel in self._channels:
                await self._open(channel)
            if resumed:
                logger.info(
                    "alerts: %d adapter(s) down or degraded before the restart; their spells go on",
                    resumed,
                )
            task_status.started()
            async with trio.open_nursery() as nursery:
                for channel in self._channels:
                    nursery.start_soon(self._schedule, channel)
                    nursery.start_soon(self._send_loop, channel)
                await self._drain(receive)
                self._closing = True
                self._final_deadline = trio.current_time() + self.final_flush
                for channel in self._channels:
                    channel.rules.close()
                    self._enqueue(channel)
                    if channel.send_scope is not None:  # a send under way gets no longer
                        scope = channel.send_scope
                        scope.deadline = min(scope.deadline, self._final_deadline)
                self._notify()
        finally:
            self._stopped.set()
            receive.close()
            self._guard.release()

    async def _open(self, channel: _Channel) -> None:
        try:
            await channel.transport.open()
        except Exception as exc:
            channel.usable = False
            channel.last_error = self._describe(channel, exc)
            logger.warning(
                "alerts: channel %s cannot send (%s); its alerts are dropped",
                channel.label(), channel.last_error,
            )
        else:
            logger.info(
                "alerts: channel %s on %s", channel.label(), ", ".join(channel.config.on)
            )

    def _resume(self) -> int:
        """Resume the spells of adapters restored down or degraded (before a restart); how many."""
        now = trio.current_time()
        resumed = 0
        for restored in self._state.restored():
            key = (restored.model, restored.provider)
            current = self._state.get(*key)
            kind = level(restored.reported)
            if kind == "healthy" or current is None or level(current.reported) != kind:
                continue  # nothing to follow, or it moved since (a transition tells the channels)
            checked = restored.result.checked_at
            since = self._restored_since.get(key, checked)
            if not math.isfinite(since) or since > checked:
                since = checked
            started = restored.at - (checked - since)
            tags = self._tags.get(key, frozenset())
            followed = False
            for channel in self._channels:
                if channel.config.wants(restored.model, tags):
                    followed |= channel.rules.resume(
                        key, restored.reported, restored.result, started, since, now
                    )
            resumed += followed
        return resumed

    async def _drain(self, receive: trio.MemoryReceiveChannel[Transition]) -> None:
        async for transition in receive:
            now = trio.current_time()
            key = (transition.model, transition.provider)
            tags = self._tags.get(key, frozenset())
            note = None
            if transition.current is ProbeStatus.DEGRADED:
                adapter = self._state.get(*key)
                note = None if adapter is None else adapter.note
            for channel in self._channels:
                if channel.config.wants(transition.model, tags):
                    channel.rules.transition(transition, now, note)
                    self._enqueue(channel)
            self._notify()

    async def _schedule(self, channel: _Channel) -> None:
        """Wake at the rules' next deadline (or any change) and queue what became due."""
        while not self._closing:
            due = channel.rules.next_due()
            if due <= trio.current_time():
                channel.rules.advance(trio.current_time())
                if self._enqueue(channel):
                    self._notify()
                continue
            with trio.move_on_at(due):
                await self._changed.wait()

    def _enqueue(self, channel: _Channel) -> bool:
        """Render the rules' ready batches into the channel's queue; whether there were any."""
        batches = channel.rules.take()
        for batch in batches:
            channel.outbox.append(render(batch, prefix=channel.config.title))
        excess = len(channel.outbox) - self._outbox_limit
        if not channel.usable:
            excess = len(channel.outbox)
        if excess > 0:
            for _ in range(excess):
                channel.outbox.popleft()
            channel.dropped += excess
            if not channel.overflowing and channel.usable:
                logger.warning(
                    "alerts: more than %d messages queued for channel %s; dropping the oldest "
                    "(a digest = N seconds groups alerts into fewer messages)",
                    self._outbox_limit, channel.label(),
                )
            channel.overflowing = True
        return bool(batches)

    async def _send_loop(self, channel: _Channel) -> None:
        while True:
            while not channel.outbox:
                if self._closing:
                    return
                await self._changed.wait()
            if self._closing and trio.current_time() >= self._final_deadline:
                lost = len(channel.outbox)
                channel.outbox.clear()
                channel.dropped += lost
                logger.warning(
                    "alerts: %d message(s) for channel %s not sent before stopping",
                    lost, channel.label(),
                )
                self._notify()
                return
            message = channel.sending = channel.outbox.popleft()
            try:
                await self._send(channel, message)
            finally:
                channel.sending = None
                self._notify()

    async def _send(self, channel: _Channel, message: AlertMessage) -> None:
        timeout = channel.config.timeout
        deadline = min(trio.current_time() + timeout, self._final_deadline)
        error: str | None = None
        with trio.move_on_at(deadline) as scope:
            channel.send_scope = scope
            try:
                await channel.transport.send(message)
            except Exception as exc:
                error = self._describe(channel, exc)
            finally:
                channel.send_scope = None
        if scope.cancelled_caught:
            channel.timeout += 1
            error = f"no answer within {timeout:g} s (abandoned)"
        elif error is not None:
            channel.failed += 1
        else:
            channel.delivered += 1
            channel.overflowing = False
            if channel.failing:
                logger.info(
                    "alerts: channel %s delivers again after %d failed message(s)",
                    channel.label(), channel.failing,
                )
            channel.failing = 0
            channel.last_error = None
            return
        channel.last_error = error
        channel.failing += 1
        log = logger.warning if channel.failing == 1 else logger.info
        log(
            "alerts: channel %s did not deliver %r (%s)",
            channel.label(), message.title, error,
        )

    def _describe(self, channel: _Channel, exc: BaseException) -> str:
        text = str(exc)
        if not isinstance(exc, AlertDeliveryError):
            text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        return scrub(text, channel.config.secrets(), limit=200)

"""Alert notifiers on Trio's MockClock with recording transports (tests/live/test_alerts*.py).

Clock 0 is :data:`EPOCH` in Unix time: results carry ``checked_at = EPOCH +
the mock clock``, so a message's times read as wall-clock dates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from adapters import FailureKind
from adapters.base import Secret
from service.config import AlertChannelConfig, CheckSchedule
from service.engine.report import ProbeStatus
from service.live.alerts import AlertNotifier, ChannelStatistics
from service.live.alerts_apprise import AlertDeliveryError
from service.live.alerts_messages import AlertMessage
from service.live.state import HealthState
from tests.support.fakes import probe_result

__all__ = ["EPOCH", "Recorder", "alerting", "channel", "delivered", "new_state", "record"]

#: Unix time at clock 0: results carry checked_at = EPOCH + the mock clock.
EPOCH = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC


@dataclass
class Recorder:
    """A transport: keeps every message with the clock time it was sent; ``mode`` says how."""

    mode: str = "ok"  # ok, fail, hang, hold (until ``release`` is set)
    sent: list[tuple[float, AlertMessage]] = field(default_factory=list)
    attempts: int = 0
    release: trio.Event = field(default_factory=trio.Event)

    async def open(self) -> None:
        pass

    async def send(self, message: AlertMessage) -> None:
        self.attempts += 1
        if self.mode == "hang":
            await trio.sleep_forever()
        if self.mode == "hold":
            await self.release.wait()
        if self.mode == "fail":
            raise AlertDeliveryError("HTTP 500 from the receiver")
        self.sent.append((trio.current_time(), message))

    @property
    def titles(self) -> list[str]:
        return [message.title for _, message in self.sent]

    @property
    def times(self) -> list[float]:
        return [at for at, _ in self.sent]


def channel(name: str = "ops", **options: object) -> AlertChannelConfig:
    return AlertChannelConfig(url=Secret(f"json://alerts.example/{name}"), name=name, **options)  # type: ignore[arg-type]


def new_state() -> HealthState:
    return HealthState(lambda model, provider: CheckSchedule(interval=10))


def record(
    state: HealthState, status: ProbeStatus, provider: str = "openai", *, model: str = "gpt-4",
    error: str | None = None, failure: FailureKind | None = None,
) -> None:
    """A result at the clock's time; a failing one is an HTTP status unless ``failure`` says."""
    if failure is None and not status.usable:
        failure = FailureKind.HTTP_STATUS
    state.record(
        probe_result(
            status, model=model, provider=provider, failure=failure, error=error,
            checked_at=EPOCH + trio.current_time(),
        )
    )


@asynccontextmanager
async def alerting(
    channels: Sequence[AlertChannelConfig], state: HealthState,
    tags: Mapping[tuple[str, str], frozenset[str]], **options: object,
) -> AsyncIterator[tuple[AlertNotifier, dict[str, Recorder]]]:
    """A running notifier whose channels send to recorders (by channel name); cancelled after."""
    recorders = {c.name: Recorder() for c in channels}
    notifier = AlertNotifier(
        channels, state, tags, transport=lambda c: recorders[c.name], **options  # type: ignore[arg-type]
    )
    # A regression fails here instead of jumping the mock clock forever.
    with trio.fail_after(100_000):
        async with trio.open_nursery() as nursery:
            await nursery.start(notifier.run)
            yield notifier, recorders
            nursery.cancel_scope.cancel()


def delivered(n: int, name: str = "ops") -> Callable[[list[ChannelStatistics]], bool]:
    """A ``wait_until`` predicate: channel ``name`` has delivered ``n`` messages."""

    def predicate(stats: list[ChannelStatistics]) -> bool:
        return next(s for s in stats if s.name == name).delivered >= n

    return predicate

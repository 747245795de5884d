"""The live event stream: every result as it completes, every transition, every run.

:class:`EventHub` fans events out to any number of subscribers, each with a
bounded buffer. Publishing never waits: a subscriber that falls
``buffer`` events behind is dropped (its stream ends with a ``dropped``
event), so one slow dashboard can never slow a health check down or make
the process hold an unbounded backlog.

Events (``GET /v1/health/stream``, Server-Sent Events, one JSON object in
each ``data:`` line):

``result``
    ``{"model", "provider", ...the report's detail fields}`` for
    every result of every check (live runs, background probes, refreshes), as
    soon as it exists — a run's results arrive one by one while it is still
    running.
``transition``
    ``{"model", "provider", "previous", "current", "at", "error"}`` when an
    adapter's reported level changes (background checks on).
``run``
    ``{"run_id", "strategy", "status", "execution_time", "adapters"}`` when a
    run finishes.
``hello`` / ``dropped``
    The first event of every stream (``{"background": bool}``), and the last
    one of a stream that fell too far behind.

Closing the stream (the client goes away) cancels only that subscriber.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Final

import trio
from trio_util import AsyncValue  # type: ignore[import-untyped]

from ..engine.report import HealthReport, ProbeResult
from .state import Transition

__all__ = ["HEARTBEAT_SECONDS", "Event", "EventHub", "sse"]

logger = logging.getLogger("router_health.stream")

#: A comment line this often keeps proxies from closing an idle stream.
HEARTBEAT_SECONDS: Final = 15.0


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    kind: str
    data: dict[str, Any]


def sse(event: Event) -> bytes:
    """``event`` as one Server-Sent Events message."""
    payload = json.dumps(event.data, separators=(",", ":"), allow_nan=False)
    return f"id: {event.id}\nevent: {event.kind}\ndata: {payload}\n\n".encode()


@dataclass(eq=False, slots=True)
class _Subscriber:
    send: trio.MemorySendChannel[Event]
    dropped: bool = False


class EventHub:
    """Fans events out to subscribers; never blocks the publisher."""

    def __init__(self, buffer: int = 1000) -> None:
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1, got {buffer!r}")
        self.buffer = buffer
        self._ids = itertools.count(1)
        self._subscribers: set[_Subscriber] = set()
        #: How many streams are open; ``await hub.open_streams.wait_value(0)``.
        self.open_streams: AsyncValue = AsyncValue(0)
        self.published = 0
        self.dropped = 0  # subscribers dropped for falling behind
        self._closed = False

    def __repr__(self) -> str:
        return f"EventHub(subscribers={len(self._subscribers)}, published={self.published})"

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def _count(self) -> None:
        self.open_streams.value = len(self._subscribers)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        if not self._subscribers:
            return  # nobody listens
        event = Event(next(self._ids), kind, data)
        self.published += 1
        for subscriber in list(self._subscribers):
            try:
                subscriber.send.send_nowait(event)
            except trio.WouldBlock:
                self._subscribers.discard(subscriber)
                self._count()
                subscriber.dropped = True
                self.dropped += 1
                logger.warning("dropping a stream subscriber: %d events unread", self.buffer)
                subscriber.send.close()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(subscriber)
                self._count()

    # The publish_* helpers return before building anything when nobody
    # listens: they run for every probe, and a probe's CPU is what we measure.

    def publish_result(self, result: ProbeResult) -> None:
        if self._subscribers:
            self.publish("result", {"model": result.model, "provider": result.provider,
                                    **result.to_dict()})

    def publish_run(self, report: HealthReport, strategy: str) -> None:
        if not self._subscribers:
            return
        self.publish(
            "run",
            {
                "run_id": report.run_id,
                "strategy": strategy,
                "status": report.status.value,
                "execution_time": round(report.execution_time, 3),
                "adapters": len(report.results()),
            },
        )

    def publish_transition(self, transition: Transition) -> None:
        if not self._subscribers:
            return
        self.publish(
            "transition",
            {
                "model": transition.model,
                "provider": transition.provider,
                "previous": None if transition.previous is None else transition.previous.value,
                "current": transition.current.value,
                "at": round(transition.result.checked_at, 3),
                "error": transition.result.error,
            },
        )

    def open(self) -> None:
        """Take subscribers again (the app is starting, perhaps once more)."""
        self._closed = False

    def close(self) -> None:
        """End every stream, and any opened from now on until :meth:`open` (the app is stopping)."""
        self._closed = True
        subscribers, self._subscribers = self._subscribers, set()
        self._count()
        for subscriber in subscribers:
            subscriber.send.close()

    async def stream(self, hello: dict[str, Any]) -> AsyncGenerator[bytes, None]:
        """One subscriber's SSE bytes: ``hello``, then every event, with heartbeats.

        Ends when the hub closes or drops it (then with a ``dropped`` event);
        the caller going away (the generator closed or cancelled)
        unsubscribes it.
        """
        if self._closed:  # opened while the app stops: nothing will come
            yield sse(Event(0, "hello", hello))
            return
        send, receive = trio.open_memory_channel[Event](self.buffer)
        subscriber = _Subscriber(send)
        self._subscribers.add(subscriber)
        self._count()
        try:
            yield b"retry: 2000\n\n" + sse(Event(0, "hello", hello))
            while True:
                with trio.move_on_after(HEARTBEAT_SECONDS) as idle:
                    try:
                        event = await receive.receive()
                    except trio.EndOfChannel:
                        break
                if idle.cancelled_caught:
                    yield b": keep-alive\n\n"
                    continue
                yield sse(event)
            if subscriber.dropped:
                yield sse(Event(0, "dropped", {"reason": "this stream fell too far behind"}))
        finally:
            self._subscribers.discard(subscriber)
            self._count()
            send.close()
            receive.close()

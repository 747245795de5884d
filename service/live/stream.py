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
``route``
    ``{"model", "panic", "deployments"}`` (provider names, best first) when a
    model's routable set changes order or panic (background checks on;
    :mod:`service.live.route`).
``hello`` / ``dropped``
    The first event of every stream (``{"background": bool}``), and the last
    one of a stream that fell too far behind.

Closing the stream (the client goes away) cancels only that subscriber.

Caps (:meth:`EventHub.limit`): at most so many streams at once, and so many
per client. A stream holds its place from the moment :meth:`EventHub.stream`
admits it (before its first byte: a burst cannot slip past the cap between
the route and the body) until it ends, or until it is dropped unstarted
(its client went away first). Past either cap :meth:`EventHub.stream`
raises :class:`StreamsFull` at once.
"""

from __future__ import annotations

import itertools
import json
import logging
import weakref
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Final

import trio
from trio_util import AsyncValue  # type: ignore[import-untyped]

from ..engine.report import HealthReport, ProbeResult
from .route import RoutableSet
from .state import Transition

__all__ = ["HEARTBEAT_SECONDS", "Event", "EventHub", "EventStream", "StreamsFull", "sse"]

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


class StreamsFull(Exception):
    """No place for another stream: ``limit`` streams are open (from this client, if ``per_client``)."""

    def __init__(self, limit: int, *, per_client: bool) -> None:
        scope = "from one client" if per_client else "in all"
        super().__init__(f"{limit} event stream(s) open {scope}")
        self.limit = limit
        self.per_client = per_client


@dataclass(eq=False, slots=True)
class _Place:
    """An admitted stream's place, given back once (when it ends or is dropped unstarted)."""

    hub: EventHub
    client: str
    held: bool = True

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self.hub._give_back(self.client)


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
        # Caps (None: none); see limit().
        self.max_streams: int | None = None
        self.max_streams_per_client: int | None = None
        self.streams = 0  # admitted and not ended: the count the caps apply to
        self.refused = 0  # streams refused by a cap, since creation
        self._per_client: dict[str, int] = {}

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

    def publish_route(self, routable: RoutableSet) -> None:
        if not self._subscribers:
            return
        self.publish(
            "route",
            {
                "model": routable.model,
                "panic": routable.panic,
                "deployments": list(routable.providers),
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

    def limit(self, max_streams: int, per_client: int) -> None:
        """At most ``max_streams`` streams open at once, ``per_client`` from any one client."""
        if max_streams < 1 or per_client < 1:
            raise ValueError(f"stream caps must be at least 1, got {max_streams}, {per_client}")
        self.max_streams, self.max_streams_per_client = max_streams, per_client

    def _admit(self, client: str) -> _Place:
        held = self._per_client.get(client, 0)
        if self.max_streams is not None and self.streams >= self.max_streams:
            self.refused += 1
            raise StreamsFull(self.max_streams, per_client=False)
        if self.max_streams_per_client is not None and held >= self.max_streams_per_client:
            self.refused += 1
            raise StreamsFull(self.max_streams_per_client, per_client=True)
        self.streams += 1
        self._per_client[client] = held + 1
        return _Place(self, client)

    def _give_back(self, client: str) -> None:
        self.streams -= 1
        held = self._per_client.pop(client, 1) - 1
        if held:
            self._per_client[client] = held

    def stream(self, hello: dict[str, Any], *, client: str = "") -> EventStream:
        """One subscriber's SSE bytes: ``hello``, then every event, with heartbeats.

        Admitted now, for ``client`` (any key: the route passes the client's
        address), or :class:`StreamsFull` past a cap. Ends when the hub closes
        or drops it (then with a ``dropped`` event); the caller going away
        (the stream closed or cancelled) unsubscribes it. Its place is given
        back when it ends, is closed, or is dropped unstarted.
        """
        if self._closed:  # opened while the app stops: nothing will come, nothing held
            place = _Place(self, client, held=False)
            return EventStream(_hello_only(hello), place)
        place = self._admit(client)
        return EventStream(self._events(hello, place), place)

    async def _events(self, hello: dict[str, Any], place: _Place) -> AsyncGenerator[bytes, None]:
        if self._closed:  # closed between admission and the first byte
            place.give_back()
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
            place.give_back()


class EventStream:
    """The async iterator :meth:`EventHub.stream` returns: SSE bytes, and ``aclose()``.

    Closing it (started or not) gives its place back; so does dropping it
    unstarted (a finalizer), e.g. when the client went away before its first
    byte was sent.
    """

    __slots__ = ("__weakref__", "_events", "_place")

    def __init__(self, events: AsyncGenerator[bytes, None], place: _Place) -> None:
        self._events = events
        self._place = place
        weakref.finalize(self, place.give_back)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> bytes:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        try:
            await self._events.aclose()
        finally:
            self._place.give_back()


async def _hello_only(hello: dict[str, Any]) -> AsyncGenerator[bytes, None]:
    yield sse(Event(0, "hello", hello))

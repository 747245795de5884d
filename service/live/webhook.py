"""Webhook notifications: POST status transitions to a URL, batched and rate-limited.

A :class:`WebhookNotifier` subscribes to :meth:`HealthState.subscribe` and runs
two tasks in its own nursery:

* the *drain* reads the state's channel continuously into a bounded pending
  list (so the state never drops the notifier as a slow subscriber). Past
  ``max_pending`` transitions the oldest are dropped and counted; the next
  body that gets through says how many (``"dropped"``);
* the *sender* POSTs everything pending as one JSON body, at most one POST
  per ``min_interval`` (measured start to start, retries included). The first
  transition after a quiet period goes out at once.

Body (``Content-Type: application/json``, oldest transition first)::

    {"transitions": [{"model": "gpt-4", "provider": "openai",
                      "previous": "healthy", "current": "unhealthy",
                      "at": 1796043967.318, "latency_ms": 54.8,
                      "failure": "http_status", "error": "HTTP 503: ...",
                      "http_status": 503}],
     "dropped": 0, "sent_at": 1796043967.402}

``previous`` is null for an adapter's first result; ``at`` is when the probe
behind the transition finished (unix time); ``dropped`` counts transitions
lost to ``max_pending`` since the last POST that got through.

Failures (connect error, TLS, non-2xx answer — redirects are not followed —,
no complete answer within ``timeout``) never drop anything by themselves:
the batch goes back to the front of the pending list and the next attempt
sends it again with whatever arrived meanwhile. Attempts back off
exponentially: ``min_interval``, then 2x, 4x... (at least 0.1 s, at most
``max(min_interval, 60 s)``); a success resets it. Every ``retries + 1``
consecutive failed attempts count as one failed delivery (``failed``) and log
a warning; the transitions stay pending, bounded by ``max_pending``, so a
receiver that is down for a while gets what it missed (or a ``dropped``
count) when it comes back.

When the state's channel ends (``HealthState.close()`` at shutdown) the
notifier lets a POST in flight finish, then makes at most one more, right
away and without retries, for what is still pending — the one exception to
``min_interval`` — counts whatever that could not deliver as dropped, and
:meth:`WebhookNotifier.run` returns (within about ``2 x timeout``).
Cancelling it stops everything at once: an in-flight POST is abandoned (its
transitions stay counted as pending).

Secrets: the token (``Authorization: Bearer ...``) and the URL's userinfo and
query string appear in no log line, exception message or ``repr``; the URL is
shown as ``scheme://host[:port]/path``. While it runs, the notifier also
scrubs them from the ``httpx`` logger's request lines.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, Final

import httpx
import trio

from adapters.base import Secret, scrub

from ..config.webhook import WebhookConfig, display_url
from .log_scrub import ScrubFilter
from .state import HealthState, Transition

__all__ = ["WebhookNotifier", "WebhookStatistics", "webhook_payload"]

logger = logging.getLogger("router_health.webhook")

#: The shortest wait between two attempts after a failure (when ``min_interval`` is smaller).
RETRY_FLOOR: Final = 0.1
#: The longest backoff between two attempts (unless ``min_interval`` is longer).
RETRY_CAP: Final = 60.0
#: The state's channel buffer is at least this: a whole fleet flipping in one
#: scheduler tick must not get the notifier dropped as a slow subscriber.
CHANNEL_BUFFER: Final = 10_000
#: How much of a receiver's answer body is read (then the connection is dropped).
_MAX_ANSWER_BYTES: Final = 64 * 1024
#: Seconds closing our own client may take when run() ends.
_CLOSE_SECONDS: Final = 2.0


@dataclass(frozen=True, slots=True)
class WebhookStatistics:
    """Counters since the notifier was created."""

    sent: int  # transitions delivered (in a POST answered 2xx)
    failed: int  # deliveries given up after retries + 1 failed attempts (transitions kept)
    dropped: int  # transitions lost: pending list full (max_pending) or not sent at shutdown
    pending: int  # transitions waiting now, the batch in flight included
    posts: int  # POSTs answered 2xx
    attempts: int  # POSTs started, successful or not
    last_error: str | None  # the last failed attempt, redacted; None after a success


def webhook_payload(transitions: Iterable[Transition], *, dropped: int = 0) -> dict[str, Any]:
    """The JSON body for ``transitions`` (oldest first)."""
    return {
        "transitions": [_transition_dict(t) for t in transitions],
        "dropped": dropped,
        "sent_at": round(time.time(), 3),
    }


def _transition_dict(transition: Transition) -> dict[str, Any]:
    result = transition.result
    return {
        "model": transition.model,
        "provider": transition.provider,
        "previous": None if transition.previous is None else transition.previous.value,
        "current": transition.current.value,
        "at": round(result.checked_at, 3),
        "latency_ms": None if result.latency_ms is None else round(result.latency_ms, 1),
        "failure": None if result.failure is None else result.failure.value,
        "error": result.error,
        "http_status": result.http_status,
    }


class _BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>``; as an httpx auth it also overrides URL userinfo."""

    def __init__(self, token: Secret) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.reveal()}"
        yield request

    def __repr__(self) -> str:
        return "_BearerAuth('***')"


class WebhookNotifier:
    """POSTs ``state``'s transitions to ``config.url``; start it with ``nursery.start(run)``.

    ``client``: an ``httpx.AsyncClient`` to use (its owner closes it);
    without one the notifier creates its own and closes it when ``run`` ends.
    """

    def __init__(
        self,
        config: WebhookConfig,
        state: HealthState,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self._state = state
        self._client = client
        self._url = display_url(config.url)
        self._secrets = config.secrets()
        self._auth = None if config.token is None else _BearerAuth(config.token)
        self._pending: deque[Transition] = deque()
        self._in_flight: list[Transition] = []
        self._unreported_drops = 0  # dropped since the last POST that got through
        self._sent = 0
        self._failed = 0
        self._dropped = 0
        self._posts = 0
        self._attempts = 0
        self._failures = 0  # consecutive failed attempts
        self._last_error: str | None = None
        self._next_attempt_at = -math.inf  # trio clock
        self._closing = False
        self._ran = False
        self._stopped = trio.Event()
        self._changed = trio.Event()

    def __repr__(self) -> str:
        return (
            f"WebhookNotifier(url={self._url!r}, pending={self._pending_count()}, "
            f"sent={self._sent}, failed={self._failed}, dropped={self._dropped})"
        )

    # -- observing -------------------------------------------------------------

    def statistics(self) -> WebhookStatistics:
        return WebhookStatistics(
            sent=self._sent,
            failed=self._failed,
            dropped=self._dropped,
            pending=self._pending_count(),
            posts=self._posts,
            attempts=self._attempts,
            last_error=self._last_error,
        )

    async def wait_stopped(self) -> None:
        """Return once :meth:`run` has ended (after the last POST at shutdown)."""
        await self._stopped.wait()

    async def wait_until(
        self, predicate: Callable[[WebhookStatistics], bool]
    ) -> WebhookStatistics:
        """Return the statistics once ``predicate`` holds for them (event-driven, no polling)."""
        await trio.lowlevel.checkpoint()
        while not predicate(stats := self.statistics()):
            await self._changed.wait()
        return stats

    def _pending_count(self) -> int:
        return len(self._pending) + len(self._in_flight)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_for(self, predicate: Callable[[], bool]) -> None:
        await trio.lowlevel.checkpoint()
        while not predicate():
            await self._changed.wait()

    # -- running ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, report started, then deliver until the state's channel ends.

        Network and HTTP problems never escape; cancellation does, with the
        subscription and (our own) client closed. A notifier runs once.
        """
        if self._ran:
            raise RuntimeError("a WebhookNotifier runs once; create a new one")
        self._ran = True
        receive = self._state.subscribe(max(self.config.max_pending, CHANNEL_BUFFER))
        own_client = self._client is None
        client = self._client if self._client is not None else httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(self.config.timeout),
            headers={"User-Agent": "router-health-webhook"},
        )
        scrub = ScrubFilter(self._secrets)
        httpx_logger = logging.getLogger("httpx")
        httpx_logger.addFilter(scrub)
        try:
            task_status.started()
            logger.info(
                "webhook: posting status transitions to %s (at most one POST per %g s)",
                self._url,
                self.config.min_interval,
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_loop, client)
                await self._drain(receive)
                logger.info("webhook: the status channel ended; sending what is left, stopping")
                self._closing = True
                self._notify()
        finally:
            self._stopped.set()
            receive.close()
            if own_client:
                with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_SECONDS):
                    await client.aclose()
            httpx_logger.removeFilter(scrub)

    async def _drain(self, receive: trio.MemoryReceiveChannel[Transition]) -> None:
        async for transition in receive:
            self._pending.append(transition)
            self._trim()
            self._notify()

    def _trim(self) -> None:
        """Drop the oldest waiting transitions past ``max_pending``."""
        excess = len(self._pending) - self.config.max_pending
        if excess <= 0:
            return
        if self._unreported_drops == 0:
            logger.warning(
                "webhook: more than %d transitions pending for %s; dropping the oldest",
                self.config.max_pending,
                self._url,
            )
        for _ in range(excess):
            self._pending.popleft()
        self._dropped += excess
        self._unreported_drops += excess

    async def _send_loop(self, client: httpx.AsyncClient) -> None:
        while True:
            await self._wait_for(lambda: bool(self._pending) or self._closing)
            if not self._pending:
                return  # the channel ended with nothing left to send
            if not self._closing and self._next_attempt_at > trio.current_time():
                with trio.move_on_at(self._next_attempt_at):
                    await self._wait_for(lambda: self._closing)
            final = self._closing
            await self._attempt(client)
            if final:
                lost = self._pending_count()
                if lost:
                    self._dropped += lost
                    self._pending.clear()
                    logger.warning(
                        "webhook: %d transition(s) not delivered to %s before stopping",
                        lost,
                        self._url,
                    )
                    self._notify()
                return

    async def _attempt(self, client: httpx.AsyncClient) -> None:
        """One POST of everything pending; on failure (or cancellation) it stays pending."""
        batch = self._in_flight = list(self._pending)
        self._pending.clear()
        drops = self._unreported_drops
        body = json.dumps(webhook_payload(batch, dropped=drops), separators=(",", ":")).encode()
        started = trio.current_time()
        self._attempts += 1
        error: str | None = "cancelled"
        try:
            error = await self._post(client, body)
        finally:
            self._in_flight = []
            if error is None:
                self._sent += len(batch)
                self._posts += 1
                self._unreported_drops -= drops
            else:
                self._pending.extendleft(reversed(batch))
                self._trim()
            self._notify()
        if error is None:
            if self._failures:
                logger.info(
                    "webhook: %s accepts deliveries again after %d failed attempt(s)",
                    self._url,
                    self._failures,
                )
            self._failures = 0
            self._last_error = None
            self._next_attempt_at = started + self.config.min_interval
            return
        self._failures += 1
        self._last_error = error
        base = max(self.config.min_interval, RETRY_FLOOR)
        cap = max(self.config.min_interval, RETRY_CAP)
        delay = min(base * 2 ** min(self._failures - 1, 30), cap)
        self._next_attempt_at = started + delay
        if self._failures % (self.config.retries + 1):
            logger.info(
                "webhook: POST to %s failed (%s); retrying in %.1f s",
                self._url,
                error,
                delay,
            )
        else:
            self._failed += 1
            logger.warning(
                "webhook: delivery to %s failed after %d attempt(s) (last: %s); "
                "keeping %d transition(s), next attempt in %.1f s",
                self._url,
                self.config.retries + 1,
                error,
                self._pending_count(),
                delay,
            )
        self._notify()

    async def _post(self, client: httpx.AsyncClient, body: bytes) -> str | None:
        """POST ``body``: None when answered 2xx, else a redacted description of the failure.

        Never raises but Cancelled: whatever goes wrong here must not take the
        app's lifetime nursery down with it.
        """
        with trio.move_on_after(self.config.timeout):
            try:
                async with client.stream(
                    "POST",
                    self.config.url,
                    content=body,
                    headers={"Content-Type": "application/json"},
                    auth=self._auth or httpx.USE_CLIENT_DEFAULT,
                    follow_redirects=False,
                ) as response:
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read > _MAX_ANSWER_BYTES:
                            break
                    if 200 <= response.status_code < 300:
                        return None
                    return f"HTTP {response.status_code}"
            except Exception as exc:
                return self._describe(exc)
        return f"no complete answer within {self.config.timeout:g} s"

    def _describe(self, exc: BaseException) -> str:
        text = str(exc)
        if isinstance(exc, OSError) and exc.strerror:
            text = exc.strerror
        described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        # Redacted whole, then cut: a cut first could leave a key's start behind.
        return scrub(described, self._secrets, limit=200)

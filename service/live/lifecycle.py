"""What runs between requests, opened in nesting order and closed in reverse: :func:`open_live`.

The live state's readers (the stream's transition forwarding, the webhook,
the alert channels) subscribe before its writers (cluster coordinator, background checker)
start; the writers stop before the state closes, and the readers end once it
has. Each task runs in a nursery of its own layer, so none outlives the block.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Final

import trio

from ..config import Config
from ..engine.checker import HealthChecker
from ..engine.manager import AdapterManager
from .alerts import AlertNotifier
from .background import BackgroundChecker
from .cluster import ClusterCoordinator
from .route import RouteEvents
from .state import HealthState
from .storage import Storage, hold_limit_for, open_storage
from .storage_spells import restored_spell_starts
from .stream import EventHub
from .webhook import WebhookNotifier

__all__ = ["UNWIND_SECONDS", "Live", "open_live"]

#: How long a stopping part (the background checker, shared runs) gets to unwind.
UNWIND_SECONDS: Final = 5.0


@dataclass(frozen=True, slots=True)
class Live:
    """What :func:`open_live` started; None for what is not configured."""

    background: BackgroundChecker | None = None
    cluster: ClusterCoordinator | None = None
    webhook: WebhookNotifier | None = None
    storage: Storage | None = None
    alerts: AlertNotifier | None = None


@contextlib.asynccontextmanager
async def open_live(
    config: Config, manager: AdapterManager, events: EventHub, health: HealthState | None
) -> AsyncIterator[Live]:
    """Open ``events`` to the checker and, with background checks on (``health``), run around it.

    Nesting, outermost first: event hub > transition forwarding > route events >
    webhook notifier > storage (loads the last verdicts) > alert channels (resume the
    outages restored) > the state (closed on the way out) > cluster coordinator >
    background checker. ``manager`` must be open for the whole block.
    """
    checker = manager.health_checker
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(_hub_open(events, checker))
        if health is None:
            yield Live()
            return
        await stack.enter_async_context(_forwarding(health, events))
        stack.enter_context(_route_events(config, manager, health, events))
        webhook = None
        if config.webhook is not None:
            # Subscribed before the first probe, so no first result is missed.
            webhook = WebhookNotifier(config.webhook, health)
            await stack.enter_async_context(_webhook_running(webhook))
        storage = None
        if config.storage.active(background=True):
            # Loads the last verdicts before the first probe; writes the rest
            # once the state has closed.
            storage = await stack.enter_async_context(
                open_storage(
                    config.storage, health,
                    known={(m, a.provider) for m, a in manager.all_adapters()},
                    hold_limit=hold_limit_for(
                        health.schedule_for(m, a.provider).interval
                        for m, a in manager.all_adapters()
                    ),
                )
            )
        alerts = None
        if config.alerts:
            # After storage has loaded, so outages going on at the last stop go on
            # (AlertNotifier reads HealthState.restored()); subscribed before the
            # first probe too; their last messages go out after the state closes.
            since = {} if storage is None else await restored_spell_starts(
                storage.config.path, health.restored()
            )
            alerts = AlertNotifier(
                config.alerts, health, manager.adapter_tags, restored_since=since
            )
            await stack.enter_async_context(_alerts_running(alerts))
        # Closing the state ends its readers: the forwarding, the webhook
        # after one last POST, and storage after its last write.
        stack.enter_context(contextlib.closing(health))
        cluster = None
        if config.cluster is not None:
            cluster = ClusterCoordinator(
                config.cluster, health, known={(m, a.provider) for m, a in manager.all_adapters()}
            )
            await stack.enter_async_context(_cluster_running(cluster))
        background = BackgroundChecker(checker, manager.all_adapters(), health, cluster=cluster)
        await stack.enter_async_context(_background_running(background))
        yield Live(background, cluster, webhook, storage, alerts)


@contextlib.contextmanager
def _hub_open(events: EventHub, checker: HealthChecker) -> Iterator[None]:
    """Every result and run of the checker published to ``events``; its streams end at the end."""
    events.open()
    checker.result_listeners.append(events.publish_result)
    checker.run_listeners.append(events.publish_run)
    try:
        yield
    finally:
        events.close()
        with contextlib.suppress(ValueError):
            checker.result_listeners.remove(events.publish_result)
        with contextlib.suppress(ValueError):
            checker.run_listeners.remove(events.publish_run)


async def _forward_transitions(
    health: HealthState,
    events: EventHub,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Copy the state's transitions into the event hub until the state closes."""
    with health.subscribe(buffer=10_000) as transitions:
        task_status.started()
        async for transition in transitions:
            events.publish_transition(transition)


@contextlib.asynccontextmanager
async def _forwarding(health: HealthState, events: EventHub) -> AsyncIterator[None]:
    # The forwarding ends by itself once the state closes (inside this
    # block); if the block fails instead, the nursery cancels it.
    async with trio.open_nursery() as nursery:
        await nursery.start(_forward_transitions, health, events)
        yield


@contextlib.contextmanager
def _route_events(
    config: Config, manager: AdapterManager, health: HealthState, events: EventHub
) -> Iterator[None]:
    """Each model's routable set published to ``events`` when it changes (``route`` events)."""
    watcher = RouteEvents(
        health, manager.model_adapters, events,
        panic_threshold=config.server.route_panic_threshold,
    )
    health.record_listeners.append(watcher.recorded)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            health.record_listeners.remove(watcher.recorded)


@contextlib.asynccontextmanager
async def _webhook_running(webhook: WebhookNotifier) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        await nursery.start(webhook.run)
        try:
            yield
        finally:
            # The state has closed: the notifier is making its last POST. Wait
            # for it (bounded, and shielded: the server's shutdown would
            # cancel that POST), then drop whatever is left of it.
            with trio.move_on_after(2 * webhook.config.timeout + 1, shield=True):
                await webhook.wait_stopped()
            nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def _alerts_running(alerts: AlertNotifier) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        await nursery.start(alerts.run)
        try:
            yield
        finally:
            # The state has closed: open digests are going out. Bounded and
            # shielded like the webhook's last POST; then whatever is left is dropped.
            with trio.move_on_after(alerts.final_flush + 1, shield=True):
                await alerts.wait_stopped()
            nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def _cluster_running(cluster: ClusterCoordinator) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        # Started once it has loaded what other instances stored; it never waits for Redis.
        await nursery.start(cluster.run)
        try:
            yield
        finally:
            cluster.stop()


@contextlib.asynccontextmanager
async def _background_running(background: BackgroundChecker) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        await nursery.start(background.run)
        try:
            yield
        finally:
            background.stop()
            # Its cancelled probes unwind before the state closes under them:
            # shielded (a shutdown deadline may already be running), but bounded.
            with trio.move_on_after(UNWIND_SECONDS, shield=True):
                await background.wait_stopped()

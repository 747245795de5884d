"""Alert channels of several replicas sharing results over a real Redis: one of them sends each message.

Each replica is a live state, a running :class:`ClusterCoordinator` and an
:class:`AlertNotifier` whose channel sends to one shared receiver (a
recording transport), all in this process, against a real ``redis-server``
(tests/support/redis.py). A result "shared" is recorded into every running
replica's state, as each coordinator records what the others publish: the
same ``checked_at`` everywhere. Tests wait for every replica to have handled
a message (delivered it, or counted it ``deduplicated``), never for time;
the rules' timing (a reminder's number) is tested on the MockClock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import coredis
import pytest
import trio
import trio.testing

from adapters import FailureKind
from adapters.base import Secret
from service.config import AlertChannelConfig, CheckSchedule
from service.config.cluster import ClusterConfig
from service.engine.report import ProbeStatus
from service.live.alerts import AlertNotifier, ChannelStatistics
from service.live.alerts_messages import AlertMessage
from service.live.alerts_rules import AlertEvent, ChannelRules
from service.live.cluster import ClusterCoordinator
from service.live.state import HealthState, Transition
from tests.support.fakes import probe_result
from tests.support.redis import RedisServer, needs_redis

pytestmark = needs_redis

TOKEN = "rhtesttoken-alerts-cluster-9b4e"
URL = f"json://ops:{TOKEN}@alerts.example/hook"
ADAPTER = ("gpt-4", "openai")
#: Redis calls' deadline: generous, so a busy machine is not "unreachable".
REDIS_TIMEOUT = 5.0
#: Bound on any wait.
PATIENCE = 60.0


@dataclass
class Receiver:
    """One receiver for every replica's channel: each message with the replica that sent it."""

    sent: list[tuple[str, AlertMessage]] = field(default_factory=list)

    def transport(self, replica: str) -> Sender:
        return Sender(self, replica)

    def titles(self, word: str) -> list[str]:
        return [replica for replica, message in self.sent if message.title.endswith(word)]


@dataclass
class Sender:
    receiver: Receiver
    replica: str

    async def open(self) -> None:
        pass

    async def send(self, message: AlertMessage) -> None:
        self.receiver.sent.append((self.replica, message))


@dataclass
class Replica:
    name: str
    state: HealthState
    cluster: ClusterCoordinator
    notifier: AlertNotifier
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def handled(self) -> int:
        """Messages this replica delivered or left to another (deduplicated)."""
        stats = self.notifier.statistics()[0]
        return stats.delivered + stats.deduplicated

    async def wait_handled(self, n: int) -> ChannelStatistics:
        def done(stats: list[ChannelStatistics]) -> bool:
            return stats[0].delivered + stats[0].deduplicated >= n

        with trio.fail_after(PATIENCE):
            return (await self.notifier.wait_until(done))[0]

    async def wait_idle(self) -> ChannelStatistics:
        """Until this replica follows no spell and has nothing left to send (or to claim)."""
        with trio.fail_after(PATIENCE):
            stats = await self.notifier.wait_until(
                lambda stats: stats[0].following == 0 and stats[0].pending == 0
            )
        return stats[0]

    def stop(self) -> None:
        self.scope.cancel()


def alert_channel(**options: object) -> AlertChannelConfig:
    return AlertChannelConfig(url=Secret(URL), name="ops", **options)  # type: ignore[arg-type]


async def _run(replica: Replica, *, task_status: trio.TaskStatus[None]) -> None:
    with replica.scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(replica.notifier.run)
            await nursery.start(replica.cluster.run)
            task_status.started()
            await trio.sleep_forever()


@asynccontextmanager
async def replicas(
    redis_url: str, count: int, channel: AlertChannelConfig, receiver: Receiver
) -> AsyncIterator[list[Replica]]:
    """``count`` running replicas sharing ``redis_url``, their channel sending to ``receiver``."""
    running = []
    async with trio.open_nursery() as nursery:
        for i in range(count):
            name = f"replica-{i}"
            state = HealthState(lambda model, provider: CheckSchedule(interval=10))
            cluster = ClusterCoordinator(
                ClusterConfig(redis_url=Secret(redis_url), instance_id=name, timeout=REDIS_TIMEOUT),
                state, known={ADAPTER},
            )
            notifier = AlertNotifier(
                [channel], state, {}, transport=lambda c, n=name: receiver.transport(n),
                claims=cluster,
            )
            replica = Replica(name, state, cluster, notifier)
            await nursery.start(_run, replica)
            running.append(replica)
        with trio.fail_after(PATIENCE):
            for replica in running:
                await replica.cluster.connected.wait_value(True)
        yield running
        nursery.cancel_scope.cancel()


async def claimed(redis_url: str, part: str) -> list[str]:
    """The claim keys in Redis whose name has ``part``."""
    raw = coredis.Redis.from_url(redis_url, decode_responses=True)
    async with raw:
        return [key async for key in raw.scan_iter(match="*") if part in key]


def share(running: Sequence[Replica], status: ProbeStatus, provider: str = "openai") -> None:
    """One result, as every running replica records it (the same ``checked_at`` everywhere)."""
    failure = None if status.usable else FailureKind.HTTP_STATUS
    result = probe_result(status, provider=provider, failure=failure, checked_at=time.time())
    for replica in running:
        if not replica.scope.cancel_called:
            replica.state.record(result)


async def test_three_replicas_send_one_down_and_one_recovered_per_outage(
    redis: RedisServer,
) -> None:
    receiver = Receiver()
    async with replicas(redis.url, 3, alert_channel(), receiver) as running:
        share(running, ProbeStatus.HEALTHY)
        share(running, ProbeStatus.UNHEALTHY)
        for replica in running:
            await replica.wait_handled(1)
        share(running, ProbeStatus.HEALTHY)
        stats = [await replica.wait_idle() for replica in running]
        won = sum(replica.cluster.claims_won for replica in running)
        lost = sum(replica.cluster.claims_lost for replica in running)
    assert len(receiver.titles(" is down")) == 1
    assert len(receiver.titles(" recovered")) == 1
    assert len(receiver.sent) == 2
    assert sum(s.delivered for s in stats) == 2
    assert sum(s.deduplicated for s in stats) == 4
    assert (won, lost) == (2, 4)


async def test_reminders_are_sent_once_each_whichever_replica_sends_them(
    redis: RedisServer,
) -> None:
    receiver = Receiver()
    async with replicas(redis.url, 3, alert_channel(repeat_every=0.3), receiver) as running:
        share(running, ProbeStatus.HEALTHY)
        share(running, ProbeStatus.UNHEALTHY)
        for replica in running:
            await replica.wait_handled(4)  # down and three reminders
        share(running, ProbeStatus.HEALTHY)
        # The recovery ends the spell: then no replica has a reminder left to send.
        for replica in running:
            await replica.wait_idle()
        numbers = await claimed(redis.url, ":still_down:")
    assert len(receiver.titles(" is down")) == 1
    assert len(receiver.titles(" recovered")) == 1
    # Every replica numbers its reminders alike: each number claimed once, sent once.
    assert len(numbers) >= 3
    assert len(receiver.titles(" is still down")) == len(numbers)


async def test_with_redis_stopped_every_replica_sends_its_own(redis: RedisServer) -> None:
    receiver = Receiver()
    async with replicas(redis.url, 2, alert_channel(), receiver) as running:
        share(running, ProbeStatus.HEALTHY)
        redis.stop()
        share(running, ProbeStatus.UNHEALTHY)
        stats = [await replica.wait_handled(1) for replica in running]
        reachable = [replica.cluster.reachable for replica in running]
    # At least once beats never: each replica announced the outage itself.
    assert sorted(replica for replica, _ in receiver.sent) == ["replica-0", "replica-1"]
    assert [s.delivered for s in stats] == [1, 1]
    assert reachable == [False, False]


async def test_the_replica_that_announced_stops_and_another_sends_reminders_and_recovery(
    redis: RedisServer,
) -> None:
    receiver = Receiver()
    async with replicas(redis.url, 3, alert_channel(repeat_every=0.3), receiver) as running:
        share(running, ProbeStatus.HEALTHY)
        share(running, ProbeStatus.UNHEALTHY)
        for replica in running:
            await replica.wait_handled(1)
        (announcer,) = receiver.titles(" is down")
        gone = next(r for r in running if r.name == announcer)
        gone.stop()
        others = [r for r in running if r is not gone]
        for replica in others:
            await replica.wait_handled(gone.handled() + 2)  # reminders go on without it
        share(others, ProbeStatus.HEALTHY)
        for replica in others:
            await replica.wait_idle()
    reminders_after = [r for r in receiver.titles(" is still down") if r != announcer]
    assert reminders_after
    (recovered_by,) = receiver.titles(" recovered")
    assert recovered_by != announcer


async def test_a_digest_goes_out_once_and_claim_keys_name_no_url_or_token(
    redis: RedisServer, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = Receiver()
    async with replicas(redis.url, 2, alert_channel(digest=0.2), receiver) as running:
        for provider in ("openai", "azure"):
            share(running, ProbeStatus.HEALTHY, provider)
            share(running, ProbeStatus.UNHEALTHY, provider)
        for replica in running:
            await replica.wait_handled(1)
        raw = coredis.Redis.from_url(redis.url, decode_responses=True)
        async with raw:
            keys = [key async for key in raw.scan_iter(match="*")]
            values = [await raw.get(key) for key in keys if ":{notify:" in key]
    ((_, digest),) = receiver.sent
    assert digest.title == "2 down"
    assert len([k for k in keys if ":{notify:" in k]) == 2
    for text in [*keys, *(v or "" for v in values), caplog.text]:
        assert TOKEN not in text and "alerts.example" not in text


# -- the rules: what every replica derives alike (MockClock) ------------------------


def _transition(status: ProbeStatus, checked_at: float) -> Transition:
    failure = None if status.usable else FailureKind.HTTP_STATUS
    result = probe_result(status, failure=failure, checked_at=checked_at)
    return Transition(*ADAPTER, None, status, result)


def _events(rules: ChannelRules) -> list[AlertEvent]:
    return [event for batch in rules.take() for event in batch.events]


def _follow(offset: float, lateness: Callable[[int], float]) -> list[AlertEvent]:
    """A spell followed by one replica hearing of it ``offset`` s late and waking late."""
    rules = ChannelRules(alert_channel(min_duration=10, repeat_every=60))
    start = 100.0 + offset
    rules.transition(_transition(ProbeStatus.UNHEALTHY, 1_800_000_000.0), start)
    events: list[AlertEvent] = []
    for wake in range(6):
        due = rules.next_due()
        rules.advance(due + lateness(wake))
        events += _events(rules)
    rules.transition(_transition(ProbeStatus.HEALTHY, 1_800_000_400.0), start + 400)
    return events + _events(rules)


def test_replicas_waking_at_different_times_derive_the_same_event_names_and_times() -> None:
    punctual = _follow(0.0, lambda wake: 0.0)
    late = _follow(0.05, lambda wake: 2.5 * (wake % 3))  # lateness never accumulates
    def names(events: list[AlertEvent]) -> list[tuple[str, float, int | None]]:
        return [(e.kind, e.cause_at, e.reminder) for e in events]
    assert names(punctual) == names(late)
    assert names(punctual) == [
        ("down", 1_800_000_000.0, None),
        *[("still_down", 1_800_000_000.0, n) for n in range(1, 6)],
        ("recovered", 1_800_000_400.0, None),
    ]


def test_a_late_wake_skips_the_reminders_it_slept_through_and_keeps_their_numbers() -> None:
    rules = ChannelRules(alert_channel(min_duration=0, repeat_every=60))
    rules.transition(_transition(ProbeStatus.UNHEALTHY, 1_800_000_000.0), 0.0)
    rules.advance(200.0)  # reminders at 60, 120, 180: one goes out, numbered for 60
    rules.advance(rules.next_due())  # 240
    events = _events(rules)
    assert [(e.kind, e.reminder) for e in events] == [("down", None), ("still_down", 1),
                                                     ("still_down", 4)]
    assert rules.next_due() == 300.0
    assert events[1].cause_at == 1_800_000_000.0


async def test_notifier_timing_is_unchanged_on_the_mock_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = HealthState(lambda model, provider: CheckSchedule(interval=10))
    receiver = Receiver()
    notifier = AlertNotifier(
        [alert_channel(min_duration=5, repeat_every=30)], state, {},
        transport=lambda c: receiver.transport("solo"),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run)
        state.record(probe_result(ProbeStatus.UNHEALTHY, failure=FailureKind.HTTP_STATUS,
                                  checked_at=1_800_000_000.0))
        await notifier.wait_until(lambda s: s[0].delivered >= 3)
        assert trio.current_time() == 65.0  # down at 5, reminders at 35 and 65
        nursery.cancel_scope.cancel()

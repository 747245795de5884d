"""Alert channels' timing and choices, on Trio's MockClock with a recording transport (tests/support/alerts.py).

What is tested here is *when* and *what*: de-flapping (``min_duration``),
reminders (``repeat_every``), digests, the recovered message's duration, the
filters, and that a slow, failing or hanging channel holds up nothing else.
Time passes on the mock clock (``autojump_clock``): a test sleeps to move it,
then checks what was sent and exactly when. Apprise itself, real sockets and
secrets in logs are tested in test_alerts_apprise.py and tests/system.
"""

from __future__ import annotations

import functools
import logging

import pytest
import trio
import trio.testing

from adapters import FailureKind
from adapters.base import Secret
from service.config import AlertChannelConfig
from service.engine.report import ProbeStatus
from service.live.alerts import AlertNotifier
from service.live.alerts_messages import duration_text, render
from service.live.alerts_rules import MAX_DIGEST_EVENTS, AlertEvent, Batch
from tests.support import alerts
from tests.support.alerts import EPOCH, Recorder, channel, delivered, new_state, record

H, D, U, T = (
    ProbeStatus.HEALTHY, ProbeStatus.DEGRADED, ProbeStatus.UNHEALTHY, ProbeStatus.TIMEOUT,
)
TAGS = {
    ("gpt-4", "openai"): frozenset({"prod", "us"}),
    ("gpt-4", "azure"): frozenset({"prod", "eu"}),
    ("claude", "anthropic"): frozenset({"prod", "eu"}),
    ("gpt-4", "backup"): frozenset(),
}


#: A running notifier over TAGS whose channels send to recorders (by channel name).
alerting = functools.partial(alerts.alerting, tags=TAGS)


# -- de-flapping and the recovered message ----------------------------------------


async def test_an_outage_is_announced_after_min_duration_and_its_recovery_says_how_long(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    async with alerting([channel(min_duration=30)], state) as (notifier, recorders):
        record(state, H)
        await trio.sleep(5)
        record(state, U, error="HTTP 503: upstream unavailable")  # down at 5
        await trio.sleep(29.9)
        assert recorders["ops"].sent == []  # not yet: 29.9 s down
        await notifier.wait_until(delivered(1))
        assert recorders["ops"].times == [35.0]
        await trio.sleep(65)
        record(state, H)  # up at 100: down for 95 s
        await notifier.wait_until(delivered(2))
    (_, down), (up_at, up) = recorders["ops"].sent
    assert down.title == "gpt-4 / openai is down"
    assert down.body == (
        "gpt-4 / openai has been down for 30s (since 2027-01-15 08:00:05 UTC).\n"
        "Last result: unhealthy (http_status): HTTP 503: upstream unavailable"
    )
    assert down.severity == "failure"
    assert up_at == 100.0
    assert up.title == "gpt-4 / openai recovered"
    assert up.body == (
        "gpt-4 / openai is healthy again after 1m 35s down "
        "(from 2027-01-15 08:00:05 UTC to 08:01:40 UTC)."
    )
    assert up.severity == "success"


async def test_a_recovery_within_min_duration_sends_nothing_at_all(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    async with alerting([channel(min_duration=30)], state) as (notifier, recorders):
        record(state, U)
        await trio.sleep(10)
        record(state, H)  # a flap: 10 s down
        await trio.sleep(600)
        assert recorders["ops"].sent == []
        assert recorders["ops"].attempts == 0
        assert notifier.channel("ops").pending == 0


async def test_a_new_outage_after_a_flap_waits_its_own_min_duration(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    async with alerting([channel(min_duration=30)], state) as (notifier, recorders):
        record(state, U)  # 0
        await trio.sleep(20)
        record(state, H)  # 20: a flap
        await trio.sleep(5)
        record(state, T, failure=FailureKind.TIMEOUT)  # 25: down again (timeout is down too)
        await notifier.wait_until(delivered(1))
    ((at, message),) = recorders["ops"].sent
    assert at == 55.0
    assert "since 2027-01-15 08:00:25 UTC" in message.body
    assert "Last result: timeout (timeout)" in message.body


async def test_without_min_duration_down_is_sent_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    async with alerting([channel()], state) as (notifier, recorders):
        await trio.sleep(3)
        record(state, U)
        await notifier.wait_until(delivered(1))
        record(state, H)
        await notifier.wait_until(delivered(2))
    assert recorders["ops"].times == [3.0, 3.0]
    assert recorders["ops"].titles == ["gpt-4 / openai is down", "gpt-4 / openai recovered"]
    assert "after 0.0s down" in recorders["ops"].sent[1][1].body


# -- reminders ---------------------------------------------------------------------


async def test_still_down_is_repeated_every_repeat_every_until_the_recovery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    async with alerting([channel(min_duration=10, repeat_every=60)], state) as (n, recorders):
        record(state, U)  # 0
        await n.wait_until(delivered(3))  # 10, 70, 130
        await trio.sleep(150 - trio.current_time())
        record(state, H)  # 150
        await n.wait_until(delivered(4))
        await trio.sleep(600)  # no reminder after the recovery
    assert recorders["ops"].times == [10.0, 70.0, 130.0, 150.0]
    assert recorders["ops"].titles == [
        "gpt-4 / openai is down", "gpt-4 / openai is still down",
        "gpt-4 / openai is still down", "gpt-4 / openai recovered",
    ]
    bodies = [message.body for _, message in recorders["ops"].sent]
    assert bodies[1].startswith("gpt-4 / openai has been down for 1m 10s (since ")
    assert bodies[2].startswith("gpt-4 / openai has been down for 2m 10s (since ")
    assert "after 2m 30s down" in bodies[3]


async def test_reminders_go_with_down_a_channel_only_on_recovered_gets_none(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    only_recovered = channel(on=("recovered",), min_duration=10, repeat_every=5)
    async with alerting([only_recovered], state) as (notifier, recorders):
        record(state, U)
        await trio.sleep(100)
        assert recorders["ops"].sent == []
        record(state, H)
        await notifier.wait_until(delivered(1))
    assert recorders["ops"].titles == ["gpt-4 / openai recovered"]
    assert "after 1m 40s down" in recorders["ops"].sent[0][1].body


# -- digests -------------------------------------------------------------------------


async def test_a_digest_sends_every_event_of_its_window_as_one_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    async with alerting([channel(digest=20)], state) as (notifier, recorders):
        record(state, U, "openai")  # 0: opens the window
        await trio.sleep(5)
        record(state, U, "azure")
        await trio.sleep(10)
        record(state, H, "openai")  # 15: recovered, same window
        record(state, U, "anthropic", model="claude")
        await notifier.wait_until(delivered(1))
        assert recorders["ops"].times == [20.0]
        await trio.sleep(5)
        record(state, H, "azure")  # 25: a new window
        await notifier.wait_until(delivered(2))
    (_, first), (second_at, second) = recorders["ops"].sent
    assert first.title == "3 down, 1 recovered"  # counts by kind
    assert first.body.splitlines() == [
        "DOWN gpt-4 / openai: down since 08:00:00 UTC, unhealthy (http_status)",
        "DOWN gpt-4 / azure: down since 08:00:05 UTC, unhealthy (http_status)",
        "RECOVERED gpt-4 / openai: healthy again after 15s down",
        "DOWN claude / anthropic: down since 08:00:15 UTC, unhealthy (http_status)",
    ]
    assert first.severity == "failure" and first.events == 4
    assert second_at == 45.0
    assert second.title == "gpt-4 / azure recovered"  # a window of one reads as one event


async def test_without_a_digest_every_transition_is_its_own_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    async with alerting([channel()], state) as (notifier, recorders):
        for provider in ("openai", "azure", "backup"):
            record(state, U, provider)
        await notifier.wait_until(delivered(3))
    assert recorders["ops"].titles == [
        "gpt-4 / openai is down", "gpt-4 / azure is down", "gpt-4 / backup is down",
    ]


async def test_a_digest_counts_what_it_does_not_list() -> None:
    def event(i: int) -> AlertEvent:
        return AlertEvent("down", "m", f"p{i}", U, "down", EPOCH, EPOCH + 60, 60.0)

    message = render(Batch(tuple(event(i) for i in range(60)), omitted=7), prefix="[prod]")
    lines = message.body.splitlines()
    assert message.title == "[prod] 60 down and 7 more"
    assert len(lines) == 51 and lines[-1] == "... and 17 more"
    assert message.events == 67
    assert MAX_DIGEST_EVENTS >= 1000


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.04, "0.0s"), (4.25, "4.2s"), (45, "45s"), (150, "2m 30s"), (3900, "1h 5m"),
     (183_600, "2d 3h")],
)
async def test_durations_read_as_a_person_would_write_them(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


# -- degraded ------------------------------------------------------------------------


async def test_degraded_is_told_only_to_channels_on_it_and_recovers_to_healthy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    watching = channel("slow", on=("degraded", "recovered"), min_duration=5)
    async with alerting([watching, channel()], state) as (notifier, recorders):
        record(state, H)
        record(state, D, error="HTTP 429: slow down", failure=FailureKind.RATE_LIMITED)  # 0
        await notifier.wait_until(delivered(1, "slow"))
        await trio.sleep(15)
        record(state, H)  # 20
        await notifier.wait_until(delivered(2, "slow"))
        await trio.sleep(60)
    (at, degraded), (_, recovered) = recorders["slow"].sent
    assert at == 5.0
    assert degraded.title == "gpt-4 / openai is degraded"
    assert degraded.body.endswith("Last result: degraded (rate_limited): HTTP 429: slow down")
    assert degraded.severity == "warning"
    assert "is healthy again after 20s degraded" in recovered.body
    assert recorders["ops"].sent == []  # on = ["down", "recovered"]: degraded is none of its business


async def test_down_then_degraded_is_a_recovery_and_degraded_then_down_is_an_outage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    async with alerting([channel(on=("down", "recovered", "degraded"))], state) as (n, rec):
        record(state, U)  # 0: down
        await n.wait_until(delivered(1))
        await trio.sleep(30)
        record(state, D, error="slow")  # 30: back up, degraded (a transient failure would not be)
        await n.wait_until(delivered(3))  # recovered, then degraded
        record(state, U)  # 30: down again: the degraded spell ends quietly
        await n.wait_until(delivered(4))
    assert rec["ops"].titles == [
        "gpt-4 / openai is down", "gpt-4 / openai recovered",
        "gpt-4 / openai is degraded", "gpt-4 / openai is down",
    ]
    assert "is degraded again after 30s down" in rec["ops"].sent[1][1].body


# -- filters -------------------------------------------------------------------------


async def test_models_and_tags_choose_the_adapters_a_channel_hears_of(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    channels = [
        channel("gpt", models=("gpt-4",)),
        channel("eu", tags=("prod", "eu")),  # every tag
        channel("gpt-eu", models=("gpt-4",), tags=("eu",)),
        channel("all"),
    ]
    async with alerting(channels, state) as (notifier, recorders):
        for model, provider in TAGS:
            record(state, U, provider, model=model)
        await notifier.wait_until(delivered(4, "all"))
        await trio.sleep(60)
    heard = {name: [t.removesuffix(" is down") for t in r.titles] for name, r in recorders.items()}
    assert heard == {
        "gpt": ["gpt-4 / openai", "gpt-4 / azure", "gpt-4 / backup"],
        "eu": ["gpt-4 / azure", "claude / anthropic"],
        "gpt-eu": ["gpt-4 / azure"],
        "all": ["gpt-4 / openai", "gpt-4 / azure", "claude / anthropic", "gpt-4 / backup"],
    }


async def test_the_title_prefix_starts_every_title(autojump_clock: trio.testing.MockClock) -> None:
    state = new_state()
    async with alerting([channel(title="[prod]")], state) as (notifier, recorders):
        record(state, U)
        await notifier.wait_until(delivered(1))
    assert recorders["ops"].titles == ["[prod] gpt-4 / openai is down"]


# -- slow, failing and hanging channels ----------------------------------------------


async def test_a_hanging_channel_is_abandoned_at_its_timeout_and_holds_up_no_other(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    channels = [channel("stuck", timeout=5), channel("fine")]
    async with alerting(channels, state) as (notifier, recorders):
        recorders["stuck"].mode = "hang"
        record(state, U, "openai")
        await notifier.wait_until(delivered(1, "fine"))
        assert recorders["fine"].times == [0.0]  # not after the stuck one
        for i in range(50):  # the state takes transitions on, never waiting for a channel
            record(state, H if i % 2 else U, "azure")
        await notifier.wait_until(delivered(51, "fine"))
        stats = await notifier.wait_until(lambda s: s[0].timeout >= 1)
        assert trio.current_time() == 5.0
        stuck = stats[0]
        assert stuck.last_error == "no answer within 5 s (abandoned)"
        assert stuck.delivered == 0 and stuck.failed == 0
        # The next one is tried (and abandoned) in turn: the queue moves on.
        await notifier.wait_until(lambda s: s[0].timeout >= 2)
        assert trio.current_time() == 10.0


async def test_a_failing_channel_counts_each_failure_warns_once_and_says_when_it_delivers_again(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="router_health.alerts")
    state = new_state()
    async with alerting([channel()], state) as (notifier, recorders):
        recorders["ops"].mode = "fail"
        record(state, U)
        record(state, H)
        stats = await notifier.wait_until(lambda s: s[0].failed == 2)
        assert stats[0].last_error == "HTTP 500 from the receiver"
        recorders["ops"].mode = "ok"
        record(state, U)
        stats = await notifier.wait_until(delivered(1))
        assert stats[0].last_error is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "alerts: channel 'ops' (json://…) did not deliver 'gpt-4 / openai is down' "
        "(HTTP 500 from the receiver)"
    ]
    assert any("delivers again after 2 failed" in r.getMessage() for r in caplog.records)
    assert stats[0].counts() == {"delivered": 1, "failed": 2, "timeout": 0, "dropped": 0}


async def test_a_full_queue_drops_the_oldest_counts_them_and_logs_once(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    state = new_state()
    async with alerting([channel()], state, outbox_limit=3) as (notifier, recorders):
        recorders["ops"].mode = "hold"
        record(state, U, "openai")
        await trio.testing.wait_all_tasks_blocked()  # its send has started, and is held
        assert recorders["ops"].attempts == 1
        for i in range(10):
            record(state, H if i % 2 else U, "azure")
        await trio.testing.wait_all_tasks_blocked()  # the drain has taken them in
        stats = notifier.statistics()
        assert (stats[0].dropped, stats[0].pending) == (7, 1 + 3)
        recorders["ops"].mode = "ok"
        recorders["ops"].release.set()
        stats = await notifier.wait_until(lambda s: s[0].pending == 0)
        assert trio.current_time() == 0.0  # released long before the timeout
    assert stats[0].delivered == 4
    # The newest three are kept: azure down, up, down... the last is i = 9 (recovered).
    assert recorders["ops"].titles[1:] == [
        "gpt-4 / azure recovered", "gpt-4 / azure is down", "gpt-4 / azure recovered",
    ]
    drops = [r for r in caplog.records if "dropping the oldest" in r.getMessage()]
    assert len(drops) == 1


# -- shutdown ------------------------------------------------------------------------


async def test_closing_the_state_sends_the_open_digest_at_once_and_ends_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = new_state()
    recorder = Recorder()
    notifier = AlertNotifier(
        [channel(digest=600, min_duration=10)], state, TAGS, transport=lambda c: recorder
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run)
        record(state, U, "openai")
        await trio.sleep(15)  # announced at 10, into the digest
        record(state, U, "azure")  # not announced yet: never will be
        await trio.sleep(1)
        state.close()
    # run() returned by itself (the nursery closed), the digest sent at 16, not 610.
    assert recorder.times == [16.0]
    assert recorder.titles == ["gpt-4 / openai is down"]
    assert notifier.channel("ops").pending == 0


async def test_closing_with_a_hanging_channel_is_bounded_by_final_flush(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    state = new_state()
    recorder = Recorder(mode="hang")
    notifier = AlertNotifier(
        [channel(timeout=60)], state, TAGS, transport=lambda c: recorder, final_flush=3
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run)
        record(state, U, "openai")  # hangs
        record(state, U, "azure")  # queued behind it
        await trio.sleep(1)
        state.close()
    assert trio.current_time() == 4.0  # closed at 1, final flush of 3 s
    stats = notifier.channel("ops")
    assert (stats.timeout, stats.dropped, stats.pending) == (1, 1, 0)
    assert any("1 message(s) for channel 'ops' (json://…) not sent" in r.getMessage()
               for r in caplog.records)


async def test_cancelling_run_leaves_nothing_running_and_unsubscribes() -> None:
    state = new_state()
    recorder = Recorder(mode="hang")
    notifier = AlertNotifier([channel()], state, TAGS, transport=lambda c: recorder)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(notifier.run)
            record(state, U)
            await trio.testing.wait_all_tasks_blocked()
            assert recorder.attempts == 1  # hanging
            nursery.cancel_scope.cancel()
    record(state, H)  # the closed subscription is dropped on the next publish
    assert state._subscribers == []
    with pytest.raises(RuntimeError, match="runs once"):
        await notifier.run()


async def test_reprs_and_statistics_show_the_scheme_only() -> None:
    secret = "rhtesttoken-alerts-repr-77c1"
    config = AlertChannelConfig(url=Secret(f"gotify://127.0.0.1:9/{secret}"), name="ops")
    notifier = AlertNotifier([config], new_state(), TAGS, transport=lambda c: Recorder())
    texts = [repr(config), str(config), repr(notifier), str(notifier.statistics())]
    assert all(secret not in text for text in texts)
    assert "gotify://…" in repr(config) and "gotify://…" in repr(notifier)
    assert notifier.channel("ops").target == "gotify://…"

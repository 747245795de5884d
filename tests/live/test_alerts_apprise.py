"""Alert channels through the real Apprise, to a local receiver over loopback (real clock).

Apprise's ``json://``, ``ntfy://`` and ``gotify://`` plugins post to one
trio + h11 receiver (tests/support/receivers.py). What is checked: what each
receives, what a refusal and a hang become (a failed message with Apprise's
reason; a send abandoned at the channel's timeout, its thread letting go of
the channel later), and that no token reaches a log record at any level,
Apprise's TRACE included, not even from a thread finishing after the
notifier stopped. Waits are for conditions; timings are bounds.

Secrets use the ``rhtestkey`` / ``rhtesttoken`` prefixes CI greps a whole
run's DEBUG log for (see tests/system/test_secrets.py).
"""

from __future__ import annotations

import base64
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import trio

from adapters import FailureKind
from adapters.base import Secret
from service.config import AlertChannelConfig, CheckSchedule
from service.engine.report import ProbeStatus
from service.live.alerts import AlertNotifier
from service.live.alerts_apprise import SCRUBBED_LOGGERS, LogGuard
from service.live.state import HealthState
from tests.support import eventually
from tests.support.fakes import probe_result
from tests.support.receivers import HttpReceiver
from tests.support.served import GUARD, deadline_bound

JSON_PASSWORD = "rhtestkey-alerts-json-pw-41d2"
PATH_SECRET = "rhtestkey-alerts-json-path-e610"  # like a Slack or Discord webhook's path
NTFY_TOPIC = "rhtesttoken-alerts-topic-9a7c"
GOTIFY_TOKEN = "rhtesttoken-alerts-gotify-0b3e"
SECRETS = (JSON_PASSWORD, NTFY_TOPIC, GOTIFY_TOKEN, PATH_SECRET)
U = ProbeStatus.UNHEALTHY


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> HttpReceiver:
    found = HttpReceiver()
    await nursery.start(found.serve)
    return found


def channels(port: int, **options: object) -> list[AlertChannelConfig]:
    """A json://, an ntfy:// and a gotify:// channel, all posting to 127.0.0.1:``port``."""
    host = f"127.0.0.1:{port}"
    urls = {
        "json": f"json://ops:{JSON_PASSWORD}@{host}/hook",
        "ntfy": f"ntfy://{host}/{NTFY_TOPIC}",
        "gotify": f"gotify://{host}/{GOTIFY_TOKEN}",
    }
    return [
        AlertChannelConfig(url=Secret(url), name=name, **options)  # type: ignore[arg-type]
        for name, url in urls.items()
    ]


def new_state() -> HealthState:
    return HealthState(lambda model, provider: CheckSchedule(interval=10))


def down(state: HealthState, provider: str = "openai") -> None:
    state.record(probe_result(U, provider=provider, error="HTTP 503: unavailable",
                              http_status=503, failure=FailureKind.HTTP_STATUS))


@asynccontextmanager
async def alerting(configs: Sequence[AlertChannelConfig], state: HealthState) -> AsyncIterator[
    AlertNotifier
]:
    notifier = AlertNotifier(configs, state, {})
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run)
        yield notifier
        nursery.cancel_scope.cancel()


async def test_json_ntfy_and_gotify_targets_receive_the_alert(receiver: HttpReceiver) -> None:
    state = new_state()
    with trio.fail_after(GUARD * 2):
        async with alerting(channels(receiver.port), state) as notifier:
            down(state)
            await notifier.wait_until(lambda stats: all(s.delivered == 1 for s in stats))
    title = "gpt-4 / openai is down"
    (hook,) = receiver.to("/hook")  # json://: a POST of Apprise's JSON document
    assert hook.method == "POST"
    basic = base64.b64encode(f"ops:{JSON_PASSWORD}".encode()).decode()
    assert hook.headers["authorization"] == f"Basic {basic}"
    body = hook.json()
    assert (body["version"], body["title"], body["type"]) == ("1.0", title, "failure")
    assert body["message"].startswith("gpt-4 / openai went down at 2023-11-14 22:13:20 UTC.")
    assert body["message"].endswith("Last result: unhealthy (http_status): HTTP 503: unavailable")
    (ntfy,) = receiver.to("/")  # ntfy://: the topic goes in the JSON body
    assert ntfy.json()["topic"] == NTFY_TOPIC
    assert ntfy.json()["title"] == title
    (gotify,) = receiver.to("/message")  # gotify://: the token goes in a header
    assert gotify.headers["x-gotify-key"] == GOTIFY_TOKEN
    assert gotify.json()["title"] == title
    assert gotify.json()["message"] == body["message"]


async def test_a_refusing_receiver_is_a_failed_message_with_apprises_reason(
    receiver: HttpReceiver,
) -> None:
    receiver.mode = "fail"
    state = new_state()
    with trio.fail_after(GUARD * 2):
        async with alerting(channels(receiver.port)[2:], state) as notifier:
            down(state)
            (stats,) = await notifier.wait_until(lambda stats: stats[0].failed == 1)
    assert stats.last_error is not None
    assert "Gotify" in stats.last_error and "500" in stats.last_error
    assert GOTIFY_TOKEN not in stats.last_error
    assert (stats.delivered, stats.timeout, stats.pending) == (0, 0, 0)


async def test_a_hanging_receiver_is_abandoned_at_the_timeout_and_its_thread_lets_go_later(
    receiver: HttpReceiver,
) -> None:
    receiver.mode = "hang"
    timeout = 1.0
    state = new_state()
    # rto: Apprise's own read timeout, so the abandoned thread ends soon after.
    (config,) = [
        AlertChannelConfig(url=Secret(c.url.reveal() + "?rto=2"), name=c.name, timeout=timeout)
        for c in channels(receiver.port)[:1]
    ]
    with trio.fail_after(GUARD * 3):
        async with alerting([config], state) as notifier:
            down(state)
            await receiver.wait_until(lambda: receiver.requests)
            started = receiver.requests[0].at
            (stats,) = await notifier.wait_until(lambda stats: stats[0].timeout == 1)
            assert trio.current_time() - started < deadline_bound(timeout)
            assert stats.last_error == "no answer within 1 s (abandoned)"
            # The thread runs on until Apprise gives up; then the channel sends again.
            await receiver.wait_until(lambda: receiver.disconnects >= 1)
            receiver.mode = "ok"
            down(state, "azure")
            (stats,) = await notifier.wait_until(lambda stats: stats[0].delivered == 1)
    assert stats.timeout == 1
    assert [r.json()["title"] for r in receiver.requests] == [
        "gpt-4 / openai is down", "gpt-4 / azure is down",
    ]


async def test_no_secret_reaches_any_log_record_not_even_at_trace(
    receiver: HttpReceiver, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(1)  # everything, Apprise's TRACE (9) included
    for name in SCRUBBED_LOGGERS:
        caplog.set_level(1, logger=name)
    state = new_state()
    refused = AlertChannelConfig(
        url=Secret(f"gotify://127.0.0.1:1/{GOTIFY_TOKEN}x"), name="refused", timeout=5
    )
    # rto: Apprise's read timeout, so abandoned threads end soon after the test.
    configs = [
        AlertChannelConfig(
            url=Secret(c.url.reveal().replace("/hook", f"/hook/{PATH_SECRET}") + "?rto=2"),
            name=c.name, timeout=1.0,
        )
        for c in channels(receiver.port)
    ] + [refused]
    texts: list[str] = []
    json_and_gotify = (0, 2)  # ntfy: Apprise spaces its messages 5.5 s apart (its throttle)
    with trio.fail_after(GUARD * 4):
        async with alerting(configs, state) as notifier:
            down(state, "a")  # delivered
            await notifier.wait_until(
                lambda stats: stats[-1].failed == 1 and all(s.delivered == 1 for s in stats[:-1])
            )
            receiver.mode = "fail"
            down(state, "b")
            await notifier.wait_until(
                lambda stats: all(stats[i].failed == 1 for i in json_and_gotify)
            )
            receiver.mode = "hang"
            down(state, "c")
            await notifier.wait_until(
                lambda stats: all(stats[i].timeout == 1 for i in json_and_gotify)
            )
            texts += [repr(notifier), str(notifier.statistics()), *map(repr, configs)]
        # The abandoned threads end later, logging: still masked, then the filters go.
        guard = notifier._guard
        await eventually(lambda: not guard.held, within=GUARD * 4)
    assert all(not logging.getLogger(name).filters for name in SCRUBBED_LOGGERS)
    names = {r.name for r in caplog.records}
    # The paths really ran: Apprise (TRACE included) and urllib3 logged...
    assert {"apprise", "urllib3.connectionpool"} <= names
    assert any(r.levelno < logging.DEBUG for r in caplog.records if r.name == "apprise")
    assert any("Socket Exception" in r.getMessage() for r in caplog.records)
    assert receiver.to(f"/hook/{PATH_SECRET}")  # urllib3 logged this path: masked below
    # (every part of an alert URL is masked, "hook" included)
    assert any('"POST /***/*** HTTP/1.1"' in r.getMessage()
               for r in caplog.records if r.name == "urllib3.connectionpool")
    # ...with the secrets masked in every record, however it is rendered.
    rendered = [caplog.text, *texts]
    for record in caplog.records:
        rendered.append(record.getMessage())
        rendered.append(logging.Formatter().format(record))
    for secret in SECRETS:
        assert all(secret not in text for text in rendered), secret


def test_the_guard_covers_loggers_created_after_it_was_first_taken() -> None:
    guard = LogGuard([PATH_SECRET])
    guard.acquire()  # the notifier starts (urllib3 may not be imported yet)
    late = logging.getLogger("urllib3.rh_test_late_module")
    guard.acquire()  # a send
    assert guard._filter in late.filters
    record = late.makeRecord(late.name, logging.DEBUG, __file__, 1, "POST /hook/%s", (PATH_SECRET,),
                             None)
    assert late.filter(record) and PATH_SECRET not in record.getMessage()
    guard.release()
    assert guard.held
    guard.release()
    assert not guard.held
    assert all(not logging.getLogger(name).filters for name in (*SCRUBBED_LOGGERS, late.name))


async def test_a_channel_that_cannot_open_drops_its_messages_and_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    (config,) = channels(9)[:1]  # checked while Apprise was there
    monkeypatch.setitem(sys.modules, "apprise", None)  # gone now
    state = new_state()
    with trio.fail_after(GUARD):
        async with alerting([config], state) as notifier:
            down(state)
            (stats,) = await notifier.wait_until(lambda stats: stats[0].dropped == 1)
    assert stats.last_error is not None
    assert "pip install 'router-health[alerts]'" in stats.last_error
    assert "channel 'json' (json://…) cannot send" in caplog.text

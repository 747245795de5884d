"""[[alerts]] end to end: the real service, the simulator flipping providers, Apprise posting to a local receiver.

The service checks the simulated fleet in the background; the simulator
turns providers down (HTTP 503) and back; three channels, Apprise's
``json://``, ``ntfy://`` and ``gotify://`` plugins, post to one receiver on
127.0.0.1 (tests/support/receivers.py):

* ``hook`` (json, gpt-4 only): down after ``min_duration``, a ``still down``
  reminder after ``repeat_every``, then recovered with the outage's duration;
* ``ntfy``: a ``digest`` that lists both gpt-4 adapters in one message;
* ``flaps`` (gotify, claude only): a ``min_duration`` the test's flap ends
  within, so it sends nothing at all.

No token reaches a log record (any level, Apprise's TRACE included),
``/metrics`` or ``/readyz``. Waits are for conditions; timings are lower bounds.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from service.api.app import EXTENSION_KEY
from service.live.alerts_apprise import SCRUBBED_LOGGERS
from tests.support.receivers import HttpReceiver, Received
from tests.support.served import GUARD, running_service

JSON_PASSWORD = "rhtestkey-alerts-e2e-json-7d21"
NTFY_TOPIC = "rhtesttoken-alerts-e2e-topic-33a0"
GOTIFY_TOKEN = "rhtesttoken-alerts-e2e-gotify-c5e9"
SECRETS = (JSON_PASSWORD, NTFY_TOPIC, GOTIFY_TOKEN)
MIN_DURATION = 1.0
REPEAT_EVERY = 1.5
DIGEST = 3.0  # both adapters' transitions land in one window, even on a busy machine
#: What delivery may take off a gap between two arrivals (threads, loopback, a busy machine).
ARRIVAL_JITTER = 0.3
#: Background checks every quarter second; each flip is seen within about one interval.
CHECKS = {"interval": 0.25, "jitter": 0}


def alert_sections(port: int) -> dict[str, Any]:
    host = f"127.0.0.1:{port}"
    return {
        "storage": {"enabled": False},
        "alerts": [
            {"name": "hook", "url": f"json://ops:{JSON_PASSWORD}@{host}/hook",
             "models": ["gpt-4"], "min_duration": MIN_DURATION, "repeat_every": REPEAT_EVERY,
             "title": "[e2e]"},
            {"name": "ntfy", "url": f"ntfy://{host}/{NTFY_TOPIC}", "models": ["gpt-4"],
             "digest": DIGEST},
            {"name": "flaps", "url": f"gotify://{host}/{GOTIFY_TOKEN}", "models": ["claude-3-haiku"],
             "min_duration": 60},
        ],
    }


def titles(requests: list[Received]) -> list[str]:
    return [r.json()["title"] for r in requests]


def samples(text: str, name: str) -> dict[tuple[str, ...], float]:
    found: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sample.labels.values())] = sample.value
    return found


async def test_down_reminder_recovered_digest_and_a_flap_that_sends_nothing(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(1)  # every record, Apprise's TRACE included
    for name in SCRUBBED_LOGGERS:
        caplog.set_level(1, logger=name)
    receiver = HttpReceiver()
    await nursery.start(receiver.serve)
    async with running_service(
        checks=CHECKS, sections=alert_sections(receiver.port), guard=60
    ) as service:
        sim, state = service.sim, service.app.extensions[EXTENSION_KEY]
        health = state.health
        assert state.alerts is not None
        with trio.fail_after(GUARD):
            await health.changes.wait_value(
                lambda _: all(health.get(m, p) for m, p in service.manager.adapter_tags)
            )
        assert receiver.requests == []  # first results, all healthy: nothing to say

        # A flap on claude, shorter than its channel's min_duration: nothing at all.
        def claude_is(up: bool) -> bool:
            adapter = health.get("claude-3-haiku", "anthropic")
            return adapter is not None and adapter.up is up

        sim.set_behavior("anthropic", mode="status", status=503)
        with trio.fail_after(GUARD):
            await health.changes.wait_value(lambda _: claude_is(False))
        sim.set_behavior("anthropic", mode="ok")
        with trio.fail_after(GUARD):
            await health.changes.wait_value(lambda _: claude_is(True))

        # gpt-4's two providers go down together.
        flipped = trio.current_time()
        for provider in ("openai", "openai-backup"):
            sim.set_behavior(provider, mode="status", status=503)
        with trio.fail_after(GUARD * 2):
            # Each gpt-4 adapter: down, then one reminder, on the hook channel.
            await receiver.wait_until(lambda: len(receiver.to("/hook")) >= 4)
            await receiver.wait_until(lambda: len(receiver.to("/")) >= 1)  # ntfy's digest
        for provider in ("openai", "openai-backup"):
            sim.set_behavior(provider, mode="ok")
        with trio.fail_after(GUARD * 4):  # ntfy: Apprise spaces its messages 5.5 s apart
            await receiver.wait_until(
                lambda: len(receiver.to("/hook")) >= 6 and len(receiver.to("/")) >= 2
            )
        metrics = (await service.client.get("/metrics")).text
        ready = (await service.client.get("/readyz")).text

    hook = receiver.to("/hook")
    assert sorted(titles(hook)) == sorted([
        "[e2e] gpt-4 / openai is down", "[e2e] gpt-4 / openai-backup is down",
        "[e2e] gpt-4 / openai is still down", "[e2e] gpt-4 / openai-backup is still down",
        "[e2e] gpt-4 / openai recovered", "[e2e] gpt-4 / openai-backup recovered",
    ])
    for provider in ("openai", "openai-backup"):
        mine = [r for r in hook if f"gpt-4 / {provider} " in r.json()["title"]]
        down, reminder, recovered = mine
        assert down.at - flipped >= MIN_DURATION
        assert reminder.at - down.at >= REPEAT_EVERY - ARRIVAL_JITTER
        assert down.json()["type"] == "failure" and recovered.json()["type"] == "success"
        assert "Last result: unhealthy (http_status): HTTP 503" in down.json()["message"]
        # The outage lasted at least min_duration + repeat_every: the recovery says so.
        took = re.search(r"is healthy again after (\d+\.\d)s down", recovered.json()["message"])
        assert took is not None, recovered.json()["message"]
        assert float(took.group(1)) >= MIN_DURATION + REPEAT_EVERY - ARRIVAL_JITTER

    digest_down, digest_up = (r.json() for r in receiver.to("/"))
    assert digest_down["topic"] == NTFY_TOPIC
    assert digest_down["title"] == "2 down"
    lines = digest_down["message"].splitlines()
    assert sorted(line.split(": down since ")[0] for line in lines) == [
        "DOWN gpt-4 / openai", "DOWN gpt-4 / openai-backup",
    ]
    assert digest_up["title"] == "2 recovered"
    assert len(digest_up["message"].splitlines()) == 2

    assert receiver.to("/message") == []  # the flap: gotify never heard of it

    messages = samples(metrics, "router_health_alert_messages_total")
    assert messages[("hook", "delivered")] == 6
    assert messages[("ntfy", "delivered")] >= 1  # the second may be after the scrape
    assert messages[("flaps", "delivered")] == 0
    assert all(messages[(c, o)] == 0 for c in ("hook", "ntfy", "flaps")
               for o in ("failed", "timeout", "dropped"))

    rendered = [caplog.text, metrics, ready]
    rendered += [logging.Formatter().format(record) for record in caplog.records]
    assert any(r.name == "apprise" and r.levelno < logging.DEBUG for r in caplog.records)
    assert any(r.name == "router_health.alerts" for r in caplog.records)
    for secret in SECRETS:
        assert all(secret not in text for text in rendered), secret

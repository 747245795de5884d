"""An outage going on across a restart of the whole service (a rolling deploy), alerted once.

The first service, with [storage] on a SQLite file and one alert channel
posting to a local receiver (tests/support/receivers.py), sees a simulated
provider go down (HTTP 503) and announces it after ``min_duration``; it
stops while the provider is still down. The second one, on the same file,
restores the down verdict silently and resumes the outage from the stored
transition: no second "down" (it was announced before the restart), and
when the provider comes back the "recovered" message tells the whole
outage, from the first service's down transition. Waits are for conditions;
durations are checked as lower bounds.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from service.api.app import EXTENSION_KEY
from service.live.state import HealthState
from service.testing.simulator import Behavior
from tests.support.receivers import HttpReceiver
from tests.support.served import GUARD, running_service, simulated_fleet

MODELS = {"gpt-4": ("openai", "openai-backup")}
CHECKS = {"interval": 0.25, "jitter": 0}
MIN_DURATION = 0.5
#: Seconds the first service goes on checking the down provider after the outage began.
LATER = 2.0
#: Wall clock (results) against Trio's clock (the test), rounding of the message's duration.
SLACK = 0.6


def sections(port: int, database: Path) -> dict[str, Any]:
    return {
        "storage": {"enabled": True, "path": str(database), "flush_interval": 0.05},
        "alerts": [
            {"name": "hook", "url": f"json://127.0.0.1:{port}/hook", "models": ["gpt-4"],
             "min_duration": MIN_DURATION},
        ],
    }


def openai_is(health: HealthState, up: bool, after: float = 0.0) -> bool:
    """gpt-4 / openai is reported up (or down) by a verdict checked after ``after`` (unix)."""
    adapter = health.get("gpt-4", "openai")
    return adapter is not None and adapter.up is up and adapter.latest.checked_at > after


def utc(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def seconds(text: str) -> float:
    """A message's duration (``4.2s``, ``45s``, ``2m 30s``) in seconds."""
    found = re.fullmatch(r"(?:(\d+)m )?(\d+(?:\.\d)?)s", text)
    assert found is not None, text
    return int(found.group(1) or 0) * 60 + float(found.group(2))


async def test_an_outage_across_a_restart_is_announced_once_and_recovers_with_its_whole_duration(
    nursery: trio.Nursery, tmp_path: Path,
) -> None:
    receiver = HttpReceiver()
    await nursery.start(receiver.serve)
    database = tmp_path / "health.db"

    async with running_service(
        checks=CHECKS, models=MODELS, sections=sections(receiver.port, database)
    ) as first:
        health = first.app.extensions[EXTENSION_KEY].health
        with trio.fail_after(GUARD):
            await health.changes.wait_value(lambda _: openai_is(health, up=True))
        first.sim.set_behavior("openai", mode="status", status=503)
        with trio.fail_after(GUARD):
            await health.changes.wait_value(lambda _: openai_is(health, up=False))
        down_seen = trio.current_time()
        went_down = health.get("gpt-4", "openai").latest.checked_at
        with trio.fail_after(GUARD):
            await receiver.wait_until(lambda: receiver.to("/hook"))
            # Still down, checked well after the spell began: the last stored verdict is
            # LATER than the outage's start, which the restarted service must find.
            await health.changes.wait_value(
                lambda _: openai_is(health, False, went_down + LATER)
            )
        last_before = health.get("gpt-4", "openai").latest.checked_at
    # Stopped while openai is down: storage wrote its verdicts and the transition on the way out.
    (down,) = receiver.to("/hook")
    assert down.json()["title"] == "gpt-4 / openai is down"
    since = re.search(r"(?:since|down at) (\d{4}-\d\d-\d\d [\d:]{8}) UTC", down.json()["message"])
    assert since is not None, down.json()["message"]

    providers = simulated_fleet()
    for provider in providers:
        if provider.name == "openai":
            provider.behavior = Behavior(latency=0.0, mode="status", status=503)
    async with running_service(
        checks=CHECKS, models=MODELS, providers=providers,
        sections=sections(receiver.port, database),
    ) as second:
        state = second.app.extensions[EXTENSION_KEY]
        health = state.health
        assert [(r.provider, r.reported.usable) for r in health.restored()
                if r.provider == "openai"] == [("openai", False)]
        with trio.fail_after(GUARD):  # checked again after the restart: still down
            await health.changes.wait_value(lambda _: openai_is(health, False, last_before))
        second.sim.set_behavior("openai", mode="ok")
        up_set = trio.current_time()
        assert state.alerts is not None
        with trio.fail_after(GUARD):
            await receiver.wait_until(lambda: len(receiver.to("/hook")) >= 2)
            stats = await state.alerts.wait_until(lambda stats: stats[0].pending == 0)
        assert stats[0].delivered == 1  # the recovered, and no second down

    down_again, recovered = receiver.to("/hook")[:2]
    assert down_again is down  # nothing before the recovery: no duplicate "down"
    assert len(receiver.to("/hook")) == 2
    assert recovered.json()["title"] == "gpt-4 / openai recovered"
    told = re.fullmatch(
        r"gpt-4 / openai is healthy again after (.+) down \(from (.+) UTC to (.+) UTC\)\.",
        recovered.json()["message"],
    )
    assert told is not None, recovered.json()["message"]
    # From the first service's down transition (the same second, give or take its rounding)...
    assert abs(utc(told.group(2)) - utc(since.group(1))) <= 1
    # ...to the recovery: at least from when the first service saw it down to when it came back.
    assert seconds(told.group(1)) >= up_set - down_seen - SLACK

"""History, uptime and incidents go on across a restart of the whole service (issue 16).

The first service checks two providers every quarter second with [storage]
on a SQLite file; one of them goes down (HTTP 503), so an incident opens.
It stops while that provider is still down. The second service, on the same
file, answers from the first one's data at once: the history pages reach
back past the restart, uptime covers time from before it, and the open
incident is the same one (same start). When the provider comes back, that
incident is resolved with a duration spanning the restart. Waits are for
conditions, never for time to pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from service.api.app import EXTENSION_KEY
from service.live.state import HealthState
from service.testing.simulator import Behavior
from tests.support import eventually
from tests.support.served import GUARD, running_service, simulated_fleet

MODELS = {"gpt-4": ("openai", "openai-backup")}
CHECKS = {"interval": 0.25, "jitter": 0}


def storage(database: Path) -> dict[str, Any]:
    return {"storage": {"path": str(database), "flush_interval": 0.05}}


def openai_is(health: HealthState, up: bool, after: float = 0.0) -> bool:
    adapter = health.get("gpt-4", "openai")
    return adapter is not None and adapter.up is up and adapter.latest.checked_at > after


async def test_history_uptime_and_incidents_continue_across_a_restart(tmp_path: Path) -> None:
    database = tmp_path / "health.db"
    async with running_service(checks=CHECKS, models=MODELS, sections=storage(database)) as first:
        state = first.app.extensions[EXTENSION_KEY]
        health = state.health
        with trio.fail_after(GUARD):
            await health.changes.wait_value(lambda _: openai_is(health, up=True))
        first.sim.set_behavior("openai", mode="status", status=503)
        with trio.fail_after(GUARD):
            await health.changes.wait_value(lambda _: openai_is(health, up=False))
        went_down = health.get("gpt-4", "openai").latest.checked_at
        with trio.fail_after(GUARD):  # one more down verdict after the transition
            await health.changes.wait_value(lambda _: openai_is(health, False, went_down))
        await eventually(lambda: state.storage.stats()["pending"] == 0, within=GUARD)
        before = (await first.client.get("/v1/health/incidents?model=gpt-4")).json()
        uptime_before = (await first.client.get("/v1/health/uptime?window=1h")).json()
        last_before = health.get("gpt-4", "openai").latest.checked_at
    (incident,) = before["incidents"]
    assert incident["status"] == "open"
    assert incident["adapters"] == ["openai"]
    covered_before = next(
        a for a in uptime_before["adapters"] if a["provider"] == "openai"
    )["covered_seconds"]
    assert covered_before > 0

    providers = simulated_fleet()
    for provider in providers:
        if provider.name == "openai":
            provider.behavior = Behavior(latency=0.0, mode="status", status=503)
    async with running_service(
        checks=CHECKS, models=MODELS, providers=providers, sections=storage(database)
    ) as second:
        state = second.app.extensions[EXTENSION_KEY]
        health = state.health
        # At once, before any new probe is needed: the stored past.
        answer = (await second.client.get("/v1/health/models/gpt-4")).json()
        assert answer["providers"]["openai"] in ("unhealthy", "timeout"), answer
        page = (await second.client.get(
            "/v1/health/history?model=gpt-4&provider=openai&limit=1000"
        )).json()
        (adapter,) = page["adapters"]
        times = [entry["checked_at"] for entry in adapter["history"]]
        assert min(times) < went_down <= last_before <= max(times)  # reaches past the restart
        uptime = (await second.client.get("/v1/health/uptime?window=1h")).json()
        openai = next(a for a in uptime["adapters"] if a["provider"] == "openai")
        assert openai["covered_seconds"] >= covered_before
        (still_open,) = (await second.client.get("/v1/health/incidents?model=gpt-4")).json()[
            "incidents"
        ]
        assert still_open["status"] == "open"
        assert still_open["started_at"] == incident["started_at"]  # the same incident

        second.sim.set_behavior("openai", mode="ok")
        with trio.fail_after(GUARD):
            await health.changes.wait_value(lambda _: openai_is(health, up=True))
        await eventually(lambda: state.storage.stats()["pending"] == 0, within=GUARD)
        recovered_at = health.get("gpt-4", "openai").latest.checked_at
        (resolved,) = (await second.client.get(
            "/v1/health/incidents?model=gpt-4&status=resolved"
        )).json()["incidents"]
    assert resolved["started_at"] == incident["started_at"]
    assert resolved["ended_at"] > last_before  # ended after the restart...
    assert resolved["ended_at"] <= recovered_at + 0.001
    # ...and lasted from the first service's down transition across the restart.
    assert resolved["duration_seconds"] >= last_before - incident["started_at"]

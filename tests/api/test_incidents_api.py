"""``GET /v1/health/incidents`` over a real service (issue 16, item 2).

hypercorn on loopback, the simulator upstream, real background checks, and
``[storage]`` on a SQLite file in tmp_path. Providers are turned down and
back up with the simulator; each test waits for the answer it expects (the
checks and storage's flushes bring it about), never for time to pass. How
transitions make incidents is tested on hand-written lists in tests/live.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.api.app import EXTENSION_KEY
from service.engine.report import ProbeStatus
from tests.support import eventually
from tests.support.served import (
    GUARD,
    MODELS,
    Service,
    answer_until,
    running_service,
    storage_on,
)

CHECKS = {"interval": 0.1, "jitter": 0}
TOKEN = "rhtestkey-incidents-token-8d41f0"


async def all_healthy(service: Service) -> None:
    """Every adapter has reported healthy: later downs are incidents among known providers."""
    health = service.app.extensions[EXTENSION_KEY].health

    def reported() -> bool:
        states = [health.get(m, p) for m, providers in MODELS.items() for p in providers]
        return all(s is not None and s.reported is ProbeStatus.HEALTHY for s in states)

    await eventually(reported, within=GUARD)


async def incidents_until(
    service: Service, query: str, condition: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The incidents answer to ``query``, once ``condition`` holds for it."""
    body = await answer_until(
        service, "/v1/health/incidents" + query, lambda body: condition(body["incidents"])
    )
    incidents: list[dict[str, Any]] = body["incidents"]
    return incidents


def starts(incidents: list[dict[str, Any]]) -> list[tuple[str, float]]:
    return [(incident["model"], incident["started_at"]) for incident in incidents]


async def test_an_outage_is_an_open_incident_then_a_resolved_one(tmp_path: Path) -> None:
    async with running_service(checks=CHECKS, sections=storage_on(tmp_path)) as service:
        await all_healthy(service)
        began = time.time()
        service.sim.set_behavior("ollama", mode="status", status=503)  # llama3's only provider
        service.sim.set_behavior("openai-backup", mode="status", status=503)  # one of gpt-4's
        opened = await incidents_until(service, "?status=open", lambda found: len(found) == 2)
        service.sim.set_behavior("ollama", mode="ok")
        resolved = await incidents_until(service, "?status=resolved", lambda found: bool(found))
        still_open = (await service.client.get("/v1/health/incidents?status=open")).json()
        everything = (await service.client.get("/v1/health/incidents")).json()
    by_model = {incident["model"]: incident for incident in opened}
    llama = by_model["llama3:latest"]
    assert list(llama) == ["model", "status", "started_at", "ended_at", "duration_seconds",
                           "severity", "failures", "adapters"]
    assert llama["status"] == "open"
    assert llama["ended_at"] is None
    assert llama["started_at"] >= began - 0.001
    assert llama["duration_seconds"] >= 0
    assert llama["severity"] == "major"  # every provider of the model down
    assert llama["adapters"] == ["ollama"]
    assert llama["failures"] == ["http_status"]
    gpt = by_model["gpt-4"]
    assert gpt["severity"] == "partial"  # openai stayed up
    assert gpt["adapters"] == ["openai-backup"]

    [done] = resolved
    assert done["model"] == "llama3:latest"
    assert done["status"] == "resolved"
    assert done["started_at"] == llama["started_at"]
    assert done["ended_at"] >= done["started_at"]
    assert done["duration_seconds"] == pytest.approx(done["ended_at"] - done["started_at"],
                                                     abs=0.002)
    assert [i["model"] for i in still_open["incidents"]] == ["gpt-4"]
    assert sorted(i["status"] for i in everything["incidents"]) == ["open", "resolved"]


async def test_model_limit_and_since_filter_newest_first(tmp_path: Path) -> None:
    async with running_service(checks=CHECKS, sections=storage_on(tmp_path)) as service:
        await all_healthy(service)
        service.sim.set_behavior("ollama", mode="status", status=503)
        await incidents_until(service, "", lambda found: len(found) == 1)
        service.sim.set_behavior("anthropic", mode="status", status=503)
        both = await incidents_until(service, "", lambda found: len(found) == 2)
        newest = (await service.client.get("/v1/health/incidents?limit=1")).json()
        one = (await service.client.get("/v1/health/incidents?model=llama3:latest")).json()
        none = (await service.client.get("/v1/health/incidents?model=gpt-4")).json()
        since_all = (await service.client.get("/v1/health/incidents?since=0")).json()
        head = await service.client.head("/v1/health/incidents")
    assert [i["model"] for i in both] == ["claude-3-haiku", "llama3:latest"]  # newest first
    assert both[0]["started_at"] >= both[1]["started_at"]
    # Open incidents last until now: their duration grows between two answers.
    assert starts(newest["incidents"]) == starts(both[:1])
    assert starts(one["incidents"]) == starts(both[1:])
    assert none == {"incidents": []}
    assert starts(since_all["incidents"]) == starts(both)
    assert head.status_code == 200
    assert head.content == b""


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("?since=yesterday", "since"),
        ("?since=-5", "since"),
        ("?since=nan", "since"),
        ("?since=1e400", "since"),
        (f"?since={time.time() + 3600:.0f}", "since"),  # in the future
        ("?status=closed", "status"),
        ("?status=open&status=resolved", "status"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=1.5", "limit"),
        ("?limit=", "limit"),
        ("?limit=99999999999999999999", "limit"),
    ],
)
async def test_a_bad_parameter_is_a_400_naming_it(
    tmp_path: Path, query: str, parameter: str
) -> None:
    async with running_service(checks=CHECKS, sections=storage_on(tmp_path)) as service:
        response = await service.client.get("/v1/health/incidents" + query)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_parameter"
    assert body["parameter"] == parameter
    assert body["accepted"]


async def test_an_unknown_model_is_the_unknown_model_404_with_close_names(tmp_path: Path) -> None:
    async with running_service(checks=CHECKS, sections=storage_on(tmp_path)) as service:
        response = await service.client.get("/v1/health/incidents?model=llama3")
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "unknown_model"
    assert "llama3:latest" in body["available"]


async def test_without_storage_it_is_a_404_saying_how_to_turn_it_on() -> None:
    off = {"storage": {"enabled": False}}
    async with running_service(checks=CHECKS, sections=off) as service:
        response = await service.client.get("/v1/health/incidents")
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "storage_off"
    assert "[storage] enabled = true" in body["message"]


async def test_with_auth_on_it_needs_the_token(tmp_path: Path) -> None:
    async with running_service(
        checks=CHECKS, server={"auth_token": TOKEN}, sections=storage_on(tmp_path)
    ) as service:
        anonymous = await service.client.get("/v1/health/incidents?limit=0")
        granted = await service.client.get(
            "/v1/health/incidents", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert anonymous.status_code == 401
    assert granted.status_code == 200
    assert granted.json() == {"incidents": []}

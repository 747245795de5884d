"""``GET /v1/health/uptime`` over a real service (issue 16, item 2).

hypercorn on loopback, the simulator upstream, real background checks, and
``[storage]`` on a SQLite file in tmp_path: what the answers say comes from
what the checks found and storage wrote. Waits are for conditions (the
answer covering every adapter), never for time to pass. The arithmetic
itself is tested against hand-computed timelines in tests/live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.testing.simulator import Behavior
from tests.support.served import (
    MODELS,
    Service,
    answer_until,
    running_service,
    simulated_fleet,
    storage_on,
)

CHECKS = {"interval": 0.1, "jitter": 0}
TOKEN = "rhtestkey-uptime-token-5c2a9e"


async def covered(service: Service, query: str = "") -> dict[str, Any]:
    """The uptime answer, once every adapter listed in it has some time covered."""
    body: dict[str, Any] = await answer_until(
        service, "/v1/health/uptime" + query,
        lambda body: all(adapter["covered_seconds"] > 0 for adapter in body["adapters"]),
    )
    return body


async def test_a_model_is_up_while_any_of_its_providers_is(tmp_path: Path) -> None:
    fleet = simulated_fleet()
    down = next(p for p in fleet if p.name == "openai-backup")
    down.behavior = Behavior(latency=0.0, mode="status", status=503)
    async with running_service(checks=CHECKS, providers=fleet, sections=storage_on(tmp_path)) as service:
        body = await covered(service, "?window=1h")
    assert list(body) == ["window", "start", "end", "models", "adapters"]
    assert body["window"] == "1h"
    # The window starts on the minute, at or before an hour ago (rollups are per minute).
    span = body["end"] - body["start"]
    assert 3600 <= span < 3660
    assert body["start"] % 60 == 0
    # Every configured model and adapter, in config order.
    assert list(body["models"]) == list(MODELS)
    assert [(a["model"], a["provider"]) for a in body["adapters"]] == [
        (model, provider) for model, providers in MODELS.items() for provider in providers
    ]
    by_provider = {a["provider"]: a for a in body["adapters"]}
    assert by_provider["openai"]["uptime"] == 1.0
    assert by_provider["openai-backup"]["uptime"] == 0.0
    assert by_provider["openai-backup"]["up_seconds"] == 0
    # Up whenever openai was (openai-backup never was); covered from the first verdict of
    # either, so the milliseconds before openai's first one are down for the model.
    model = body["models"]["gpt-4"]
    assert model["up_seconds"] == pytest.approx(by_provider["openai"]["up_seconds"], abs=0.01)
    assert model["covered_seconds"] >= by_provider["openai"]["covered_seconds"]
    assert model["uptime"] > 0
    for uptime in [*body["models"].values(), *body["adapters"]]:
        assert 0 < uptime["covered_seconds"] < span
        assert uptime["coverage"] == pytest.approx(uptime["covered_seconds"] / span, abs=1e-5)


async def test_the_default_window_is_a_day_and_model_selects_one(tmp_path: Path) -> None:
    async with running_service(checks=CHECKS, sections=storage_on(tmp_path)) as service:
        whole = await covered(service)
        one = await covered(service, "?model=gpt-4&window=7d")
        head = await service.client.head("/v1/health/uptime?model=gpt-4")
    assert whole["window"] == "24h"
    assert 86_400 <= whole["end"] - whole["start"] < 86_460
    assert all(u["uptime"] == 1.0 for u in whole["models"].values())
    assert one["window"] == "7d"
    assert list(one["models"]) == ["gpt-4"]
    assert [a["provider"] for a in one["adapters"]] == ["openai", "openai-backup"]
    assert head.status_code == 200
    assert head.headers["content-type"] == "application/json"
    assert head.content == b""


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("?window=2h", "window"),
        ("?window=", "window"),
        ("?window=24H", "window"),
        ("?window=1h&window=7d", "window"),
        ("?model=gpt-4&model=llama3:latest", "model"),
    ],
)
async def test_a_bad_parameter_is_a_400_naming_it(
    tmp_path: Path, query: str, parameter: str
) -> None:
    async with running_service(checks=CHECKS, sections=storage_on(tmp_path)) as service:
        response = await service.client.get("/v1/health/uptime" + query)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_parameter"
    assert body["parameter"] == parameter
    if parameter == "window":
        assert body["accepted"] == "one of 1h, 24h, 7d, 30d, 90d (default 24h)"


async def test_an_unknown_model_is_the_unknown_model_404_with_close_names(tmp_path: Path) -> None:
    async with running_service(checks=CHECKS, sections=storage_on(tmp_path)) as service:
        response = await service.client.get("/v1/health/uptime?model=gpt4")
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "unknown_model"
    assert "gpt-4" in body["available"]


async def test_without_storage_it_is_a_404_saying_how_to_turn_it_on(tmp_path: Path) -> None:
    off = {"storage": {"enabled": False}}
    async with running_service(checks=CHECKS, sections=off) as service:
        response = await service.client.get("/v1/health/uptime")
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "storage_off"
    assert "[storage] enabled = true" in body["message"]


async def test_without_background_checks_it_is_a_404_saying_so() -> None:
    async with running_service() as service:
        response = await service.client.get("/v1/health/uptime")
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "storage_off"
    assert "[checks] interval > 0" in body["message"]


async def test_with_auth_on_it_needs_the_token(tmp_path: Path) -> None:
    server = {"auth_token": TOKEN}
    async with running_service(
        checks=CHECKS, server=server, sections=storage_on(tmp_path)
    ) as service:
        anonymous = await service.client.get("/v1/health/uptime")
        wrong = await service.client.get(
            "/v1/health/uptime", headers={"Authorization": "Bearer nope"}
        )
        # Checked before the parameters: nothing is said to a caller without the token.
        bad = await service.client.get("/v1/health/uptime?window=2h")
        granted = await service.client.get(
            "/v1/health/uptime", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert anonymous.status_code == wrong.status_code == bad.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer ")
    assert granted.status_code == 200
    assert granted.json()["window"] == "24h"

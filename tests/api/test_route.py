"""GET /v1/route/{model}: the routable set over HTTP, its ETag and 304, kept answers, events.

Over real sockets (hypercorn on loopback). Background checks probe once an
hour, so results only change when a test records one by hand; the Trio clock
is a MockClock moved by hand and the wall clock is frozen, so ages and
bodies are exact. The set's rules themselves are tests/live/test_route_sets.py.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from service.api.app import EXTENSION_KEY
from service.engine.report import ProbeStatus
from service.live.state import HealthState
from tests.support.app import make_app
from tests.support.fakes import Probe, adapter
from tests.support.served import GUARD, served

TOKEN = "rhtesttoken-route-0123456789abc"
NOW = 1_800_000_000.0  # the wall clock, frozen
BACKGROUND = {"interval": 3600, "jitter": 0, "max_age": 60}


class Fleet:
    """gpt-4: openai, azure; llama3: ollama (each probe answering at once, 0 ms)."""

    def __init__(
        self,
        *,
        checks: Mapping[str, Any] | None = BACKGROUND,
        server: Mapping[str, Any] | None = None,
        openai: Probe | None = None,
    ) -> None:
        self.openai, self.azure, self.ollama = openai or Probe(), Probe(), Probe()
        self.app, _ = make_app(
            {
                "gpt-4": [adapter("openai", self.openai), adapter("azure", self.azure)],
                "llama3": [adapter("ollama", self.ollama)],
            },
            checks=checks,
            server=server,
        )
        self.state = self.app.extensions[EXTENSION_KEY]

    @property
    def health(self) -> HealthState:
        health = self.state.health
        assert isinstance(health, HealthState)
        return health

    async def filled(self) -> None:
        with trio.fail_after(GUARD):
            await self.health.changes.wait_value(lambda n: n >= 3)

    def answered(self, model: str, provider: str, latency_ms: float) -> None:
        """Record a healthy answer of ``latency_ms`` for (model, provider), as a probe would."""
        current = self.health.get(model, provider)
        assert current is not None
        self.health.record(dataclasses.replace(current.latest, latency_ms=latency_ms))


@pytest.fixture
def frozen_wall(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: NOW)


def without_date(headers: httpx.Headers) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers.multi_items() if name != "date"]


async def test_healthy_deployments_come_fastest_first_with_weights_and_an_etag(
    mock_clock: trio.testing.MockClock, frozen_wall: None
) -> None:
    fleet = Fleet()
    async with served(fleet.app) as client:
        await fleet.filled()
        fleet.answered("gpt-4", "openai", 300.0)  # EWMA over 0, 300: 90 ms
        fleet.answered("gpt-4", "azure", 100.0)  # over 0, 100: 30 ms
        mock_clock.jump(2.5)
        response = await client.get("/v1/route/gpt-4")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "model": "gpt-4",
            "panic": False,
            "source": "background",
            "deployments": [
                {"provider": "azure", "status": "healthy", "weight": 0.75, "latency_ms": 30.0,
                 "age_s": 2.5},
                {"provider": "openai", "status": "healthy", "weight": 0.25, "latency_ms": 90.0,
                 "age_s": 2.5},
            ],
            "excluded": [],
            "healthy": 2,
            "total": 2,
        }
        etag = response.headers["etag"]
        assert etag.startswith('"') and not etag.startswith("W/")
        # The keys in the documented order.
        assert list(json.loads(response.text)) == [
            "model", "panic", "source", "deployments", "excluded", "healthy", "total"
        ]


async def test_a_matching_if_none_match_is_a_304_without_a_body(
    mock_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet()
    async with served(fleet.app) as client:
        await fleet.filled()
        first = await client.get("/v1/route/gpt-4")
        etag = first.headers["etag"]
        for field in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            response = await client.get("/v1/route/gpt-4", headers={"If-None-Match": field})
            assert response.status_code == 304, field
            assert response.content == b""
            assert response.headers["etag"] == etag
            assert "content-type" not in response.headers
            assert "content-length" not in response.headers
        # Another tag, or a field that does not parse: the whole answer.
        for field in ('"other"', etag[1:-1], f"{etag} junk", f"w/{etag}"):
            response = await client.get("/v1/route/gpt-4", headers={"If-None-Match": field})
            assert response.status_code == 200, field
            assert response.content == first.content
        # The usual path answers the same, when nothing is kept.
        fleet.state.answers.clear()
        fresh = await client.get("/v1/route/gpt-4", headers={"If-None-Match": f"W/{etag}"})
        assert fresh.status_code == 304 and fresh.content == b""


async def test_kept_route_answers_and_their_304s_are_byte_for_byte_the_usual_ones(
    mock_clock: trio.testing.MockClock, frozen_wall: None
) -> None:
    fleet = Fleet()
    answers = fleet.state.answers
    async with served(fleet.app) as client:
        await fleet.filled()
        fleet.answered("gpt-4", "azure", 100.0)
        etag = (await client.get("/v1/route/gpt-4")).headers["etag"]
        for headers in ({}, {"If-None-Match": etag}):
            await client.get("/v1/route/gpt-4", headers=headers)  # kept (again) if it was dropped
            mock_clock.jump(1.2345)  # every age moves on
            hits = answers.hits
            kept = await client.get("/v1/route/gpt-4", headers=headers)
            assert answers.hits == hits + 1
            answers.clear()
            usual = await client.get("/v1/route/gpt-4", headers=headers)
            assert answers.hits == hits + 1
            assert (kept.status_code, kept.content) == (usual.status_code, usual.content)
            assert without_date(kept.headers) == without_date(usual.headers)
        assert kept.status_code == 304
    assert (fleet.openai.calls, fleet.azure.calls) == (1, 1)


async def test_latency_alone_keeps_the_etag_and_a_new_order_changes_it() -> None:
    fleet = Fleet()
    async with served(fleet.app) as client:
        await fleet.filled()
        fleet.answered("llama3", "ollama", 50.0)
        first = await client.get("/v1/route/llama3")
        fleet.answered("llama3", "ollama", 70.0)  # one deployment: its weight stays 1
        second = await client.get("/v1/route/llama3")
        assert second.json()["deployments"][0]["latency_ms"] != first.json()["deployments"][0][
            "latency_ms"
        ]
        assert second.headers["etag"] == first.headers["etag"]
        unchanged = await client.get(
            "/v1/route/llama3", headers={"If-None-Match": first.headers["etag"]}
        )
        assert unchanged.status_code == 304

        fleet.answered("gpt-4", "azure", 100.0)
        before = await client.get("/v1/route/gpt-4")
        assert [d["provider"] for d in before.json()["deployments"]] == ["openai", "azure"]
        for _ in range(3):
            fleet.answered("gpt-4", "openai", 900.0)
        after = await client.get(
            "/v1/route/gpt-4", headers={"If-None-Match": before.headers["etag"]}
        )
        assert after.status_code == 200
        assert [d["provider"] for d in after.json()["deployments"]] == ["azure", "openai"]
        assert after.headers["etag"] != before.headers["etag"]


async def test_too_few_healthy_deployments_return_every_one_in_panic() -> None:
    fleet = Fleet(openai=Probe([False]))
    async with served(fleet.app) as client:
        await fleet.filled()
        body = (await client.get("/v1/route/gpt-4")).json()
        # 1 of 2 healthy is not below 50 %: openai is left out.
        assert (body["panic"], body["healthy"], body["total"]) == (False, 1, 2)
        assert [d["provider"] for d in body["deployments"]] == ["azure"]
        assert body["excluded"] == [
            {"provider": "openai", "status": "unhealthy", "failure": "exception"}
        ]
        current = fleet.health.get("gpt-4", "azure")
        assert current is not None
        fleet.health.record(dataclasses.replace(current.latest, status=ProbeStatus.UNHEALTHY))
        body = (await client.get("/v1/route/gpt-4")).json()
        assert (body["panic"], body["healthy"]) == (True, 0)
        assert [(d["provider"], d["status"], d["weight"]) for d in body["deployments"]] == [
            ("openai", "unhealthy", 0.5), ("azure", "unhealthy", 0.5)
        ]
        assert body["excluded"] == []


async def test_a_panic_threshold_of_zero_returns_only_usable_deployments() -> None:
    fleet = Fleet(openai=Probe([False]), server={"route_panic_threshold": 0})
    async with served(fleet.app) as client:
        await fleet.filled()
        current = fleet.health.get("gpt-4", "azure")
        assert current is not None
        fleet.health.record(dataclasses.replace(current.latest, status=ProbeStatus.UNHEALTHY))
        body = (await client.get("/v1/route/gpt-4")).json()
        assert (body["panic"], body["deployments"], len(body["excluded"])) == (False, [], 2)


async def test_with_background_checks_off_the_route_shares_one_live_check() -> None:
    gate = trio.Event()
    fleet = Fleet(checks=None, openai=Probe(gate=gate))
    assert fleet.state.health is None
    async with served(fleet.app) as client:
        answers: list[httpx.Response] = []

        async def get(path: str) -> None:
            answers.append(await client.get(path))

        async with trio.open_nursery() as nursery:
            for path in ("/v1/route/gpt-4", "/v1/route/gpt-4", "/v1/health/models/gpt-4"):
                nursery.start_soon(get, path)
            with trio.fail_after(GUARD):
                while fleet.state.model_runs.statistics().callers_waiting < 3:
                    await trio.testing.wait_all_tasks_blocked(cushion=0.01)
            gate.set()
        assert sorted(a.status_code for a in answers) == [200, 200, 200]
        routes = [a.json() for a in answers if a.url.path.startswith("/v1/route/")]
        assert [r["source"] for r in routes] == ["live", "live"]
        # Both healthy; openai's answer waited on the gate (its weight is the smaller).
        assert sorted(d["provider"] for d in routes[0]["deployments"]) == ["azure", "openai"]
        assert all(d["age_s"] >= 0 for d in routes[0]["deployments"])
        assert fleet.state.model_runs.statistics().runs_started == 1
    assert (fleet.openai.calls, fleet.azure.calls) == (1, 1)


async def test_an_unknown_model_is_a_404_naming_the_configured_ones() -> None:
    fleet = Fleet()
    async with served(fleet.app) as client:
        response = await client.get("/v1/route/gpt-5")
        assert response.status_code == 404
        assert response.json() == {
            "error": "unknown_model",
            "message": "unknown model 'gpt-5'; 'available' lists the configured models",
            "available": ["gpt-4", "llama3"],
        }
        response = await client.get("/v1/route/")
        assert (response.status_code, response.json()["error"]) == (404, "not_found")


async def test_a_bad_timeout_is_a_400_and_other_parameters_are_ignored() -> None:
    fleet = Fleet()
    async with served(fleet.app) as client:
        await fleet.filled()
        response = await client.get("/v1/route/gpt-4?timeout=abc")
        assert response.status_code == 400
        assert response.json()["parameter"] == "timeout"
        response = await client.get("/v1/route/gpt-4?details=maybe&tags=!")
        assert response.status_code == 200


async def test_with_auth_on_the_route_needs_no_token_but_refuses_a_wrong_one(
    mock_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet(server={"auth_token": TOKEN})
    async with served(fleet.app) as client:
        await fleet.filled()
        anonymous = await client.get("/v1/route/gpt-4")
        granted = await client.get("/v1/route/gpt-4", headers={"Authorization": f"Bearer {TOKEN}"})
        assert anonymous.status_code == granted.status_code == 200
        assert anonymous.json()["deployments"] == granted.json()["deployments"]
        for _ in range(2):  # the second one would be a kept answer's
            wrong = await client.get(
                "/v1/route/gpt-4", headers={"Authorization": "Bearer not-the-token-0123456789"}
            )
            assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"


# -- route events on the live stream ------------------------------------------------------------


async def events_of(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    kind = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield kind, json.loads(line.removeprefix("data: "))


async def test_the_stream_says_when_a_models_set_changes_not_on_every_result() -> None:
    fleet = Fleet()
    async with served(fleet.app) as client:
        await fleet.filled()
        async with client.stream("GET", "/v1/health/stream") as response:
            events = events_of(response)
            with trio.fail_after(GUARD):
                assert await anext(events) == ("hello", {"background": True})
                # Nobody listened so far: the next result says the set as it is.
                fleet.answered("gpt-4", "azure", 100.0)
                assert await anext(events) == (
                    "route", {"model": "gpt-4", "panic": False, "deployments": ["openai", "azure"]}
                )
                fleet.answered("gpt-4", "azure", 120.0)  # the same order: nothing to say
                fleet.answered("llama3", "ollama", 80.0)
                assert await anext(events) == (
                    "route", {"model": "llama3", "panic": False, "deployments": ["ollama"]}
                )
                for _ in range(3):
                    fleet.answered("gpt-4", "openai", 900.0)
                assert await anext(events) == (
                    "route", {"model": "gpt-4", "panic": False, "deployments": ["azure", "openai"]}
                )

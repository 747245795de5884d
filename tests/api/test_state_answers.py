"""Answers from the live state are made once per state change, not once per request.

Issue 13, *Serving speed*: with background checks on, ``GET /v1/health/``
answered from memory still built a report, its dictionaries and its JSON for
every request, and did about half the requests per second of a bare route
(the ratios are in benchmarks/RESULTS.md, by ``python -m benchmarks.serving``).
Now the text is kept until the state changes, with holes for the two values
that move with time (``timestamp``, each ``age_s``). What must hold: a kept
answer is byte for byte what the usual path would make at that moment, it is
dropped as soon as the state changes or a result passes ``max_age``, and it
is never given to a request that differs in route, query, format or access.
Over real sockets (hypercorn on loopback); the clock is Trio's MockClock,
moved by hand, so ages are exact.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from service.api.app import EXTENSION_KEY
from tests.support.app import make_app
from tests.support.fakes import Probe, adapter
from tests.support.served import GUARD, served

TOKEN = "rhtesttoken-answers-0123456789"
NOW = 1_800_000_000.0  # the wall clock, frozen




class Fleet:
    """gpt-4: openai, azure; llama3: ollama; background checks every hour, max_age 60 s."""

    def __init__(self, *, server: Mapping[str, Any] | None = None) -> None:
        self.openai, self.azure, self.ollama = Probe([True, False]), Probe(), Probe()
        self.app, _ = make_app(
            {
                "gpt-4": [adapter("openai", self.openai), adapter("azure", self.azure)],
                "llama3": [adapter("ollama", self.ollama)],
            },
            checks={"interval": 3600, "jitter": 0, "max_age": 60},
            server=server,
        )
        self.state = self.app.extensions[EXTENSION_KEY]

    async def filled(self) -> None:
        with trio.fail_after(GUARD):
            await self.state.health.changes.wait_value(lambda n: n >= 3)


@pytest.fixture
def frozen_wall(monkeypatch: pytest.MonkeyPatch) -> None:
    """``time.time()`` frozen, so answers made at the same Trio time are the same bytes."""
    monkeypatch.setattr("time.time", lambda: NOW)


def without_date(headers: httpx.Headers) -> list[tuple[str, str]]:
    """Every header as sent, in order, but ``date`` (hypercorn's, to the second)."""
    return [(name, value) for name, value in headers.multi_items() if name != "date"]


PATHS = [
    "/v1/health/",
    "/v1/health/?details=false",
    "/v1/health/models",
    "/v1/health/models/gpt-4",
    "/v1/health/?format=health%2Bjson",
    "/v1/health/models/llama3?format=health%2Bjson",
    "/v1/health/?timeout=7&use_concurrent=false",
]


async def test_a_kept_answer_is_byte_for_byte_what_the_usual_path_makes(
    mock_clock: trio.testing.MockClock, frozen_wall: None
) -> None:
    fleet = Fleet()
    async with served(fleet.app) as client:
        await fleet.filled()
        for path in PATHS:
            first = await client.get(path)
            assert first.status_code == 200, (path, first.text)
            mock_clock.jump(1.2345)  # every age moves on
            kept = await client.get(path)
            # The same moment, through the usual path: nothing kept.
            fleet.state.answers.clear()
            usual = await client.get(path)
            assert kept.content == usual.content, path
            assert kept.status_code == usual.status_code
            assert without_date(kept.headers) == without_date(usual.headers), path
            assert kept.content != first.content or "format" in path or "details=false" in path
    assert (fleet.openai.calls, fleet.azure.calls, fleet.ollama.calls) == (1, 1, 1)


async def test_identical_requests_are_answered_from_the_kept_text_until_the_state_changes(
    mock_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet()
    answers = fleet.state.answers
    async with served(fleet.app) as client:
        await fleet.filled()
        bodies = []
        for _ in range(5):
            response = await client.get("/v1/health/")
            assert response.status_code == 200
            bodies.append(response.json())
            mock_clock.jump(0.5)
        assert (answers.kept, answers.hits) == (1, 4)
        ages = [b["details"]["gpt-4"]["openai"]["age_s"] for b in bodies]
        assert ages == [0.0, 0.5, 1.0, 1.5, 2.0]
        assert all(b["source"] == "background" for b in bodies)
        # A live run records into the state: the kept answer is dropped at once.
        fresh = await client.get("/v1/health/?fresh=true")
        assert fresh.json()["details"]["gpt-4"]["openai"]["status"] == "unhealthy"
        after = await client.get("/v1/health/")
        assert after.json()["details"]["gpt-4"]["openai"]["status"] == "unhealthy"
        assert after.json()["details"]["gpt-4"]["openai"]["age_s"] == 0.0
        assert after.status_code == 200 and after.json()["status"] == "degraded"
        assert answers.hits == 4
        again = (await client.get("/v1/health/")).json()
        assert again["details"] == after.json()["details"]
        assert answers.hits == 5


async def test_a_kept_answer_ends_when_its_first_result_passes_max_age(
    mock_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet()
    answers = fleet.state.answers
    async with served(fleet.app) as client:
        await fleet.filled()
        await client.get("/v1/health/")
        mock_clock.jump(59.9)
        assert "stale" not in (await client.get("/v1/health/")).json()
        assert answers.hits == 1
        mock_clock.jump(0.1)  # 60 s: past max_age, served stale and refreshed, never kept
        body = (await client.get("/v1/health/")).json()
        assert body["stale"] == 3 and answers.hits == 1
        with trio.fail_after(GUARD):
            await fleet.state.health.changes.wait_value(lambda n: n >= 6)  # the refresh
    assert fleet.openai.calls == 2


async def test_kept_answers_are_per_access_level_and_a_wrong_token_is_still_refused(
    mock_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet(server={"auth_token": TOKEN})
    granted = {"Authorization": f"Bearer {TOKEN}"}
    wrong = {"Authorization": "Bearer not-the-token-at-all-0123"}
    async with served(fleet.app) as client:
        await fleet.filled()
        for _ in range(2):
            anonymous = await client.get("/v1/health/")
            assert "details" not in anonymous.json()
            full = await client.get("/v1/health/", headers=granted)
            assert "details" in full.json()
            refused = await client.get("/v1/health/", headers=wrong)
            assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
            health_json = await client.get("/v1/health/", headers={"Accept": "application/health+json"})
            assert health_json.headers["content-type"] == "application/health+json"
            assert "time" not in json.dumps(health_json.json())  # no details for anonymous
        assert fleet.state.answers.hits == 3


async def test_bad_requests_are_never_kept() -> None:
    fleet = Fleet()
    async with served(fleet.app) as client:
        await fleet.filled()
        for _ in range(2):
            response = await client.get("/v1/health/?timeout=abc")
            assert response.status_code == 400
            response = await client.get("/v1/health/?format=xml")
            assert response.status_code == 400
        assert (fleet.state.answers.kept, fleet.state.answers.hits) == (0, 0)


async def test_livez_is_kept_for_good_and_sent_as_the_usual_path_sends_it() -> None:
    fleet = Fleet()
    answers = fleet.state.answers
    async with served(fleet.app) as client:
        usual = await client.get("/livez")
        hits = answers.hits
        kept = await client.get("/livez")
        assert answers.hits == hits + 1
        assert (kept.status_code, kept.content) == (200, b'{"status":"ok"}\n')
        assert without_date(kept.headers) == without_date(usual.headers)
        head = await client.head("/livez")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == usual.headers["content-length"]
        assert answers.hits == hits + 2
        # What is not a plain GET or HEAD goes the usual way.
        assert (await client.post("/livez")).status_code == 405
        with_body = await client.request("GET", "/livez", content=b"x")
        assert with_body.status_code == 200
        assert answers.hits == hits + 2


def _no_constants(name: str) -> None:
    raise AssertionError(f"non-standard JSON constant {name} in an answer")


async def test_a_non_finite_number_recorded_by_hand_is_null_not_invalid_json(
    mock_clock: trio.testing.MockClock,
) -> None:
    # The checker never makes one, but HealthState.record is public: NaN and
    # infinities must not turn every answer into non-standard JSON.
    fleet = Fleet()
    async with served(fleet.app) as client:
        await fleet.filled()
        latest = fleet.state.health.get("gpt-4", "openai").latest
        fleet.state.health.record(
            dataclasses.replace(latest, latency_ms=math.nan, queued_ms=math.inf)
        )
        for path in ("/v1/health/", "/v1/health/models/gpt-4?format=health%2Bjson"):
            response = await client.get(path)
            assert response.status_code == 200, response.text
            json.loads(response.text, parse_constant=_no_constants)
        body = (await client.get("/v1/health/")).json()
        assert body["details"]["gpt-4"]["openai"]["latency_ms"] is None

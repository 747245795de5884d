"""``GET /v1/health/history`` pages from the database: ``before``, ``limit``, ``next_before``.

A real service (hypercorn, the simulator, one background round at start)
with ``[storage]`` on a SQLite file in tmp_path. The test records results
into the service's own live state with known times and flushes storage
(the path every background result takes), so each page can be compared
with the exact history: past the 50 results memory keeps, across adapters
of different lengths, and before storage has written the newest ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from service.api.state import ServiceState
from service.config import HISTORY_LENGTH
from service.engine.report import ProbeStatus
from tests.support.fakes import probe_result
from tests.support.served import MODELS, Service, first_round, running_service, storage_on

#: One background round at start, then none while the test runs.
CHECKS = {"interval": 3600, "jitter": 0}
TOKEN = "rhtestkey-history-token-2f7c1b"
STATUSES = (ProbeStatus.HEALTHY, ProbeStatus.DEGRADED, ProbeStatus.UNHEALTHY)


def record(state: ServiceState, provider: str, count: int, *, step: float) -> list[float]:
    """``count`` results of gpt-4/``provider`` after its latest, ``step`` s apart; their times."""
    assert state.health is not None
    latest = state.health.get("gpt-4", provider)
    assert latest is not None
    times = []
    for index in range(1, count + 1):
        at = round(latest.latest.checked_at + index * step, 3)
        state.health.record(probe_result(STATUSES[index % 3], provider=provider, checked_at=at,
                                         latency_ms=float(index)))
        times.append(at)
    return times


async def pages(service: Service, query: str) -> list[dict[str, Any]]:
    """Every page of ``query``, following next_before to the end."""
    found = []
    cursor = ""
    for _ in range(1000):
        response = await service.client.get(f"/v1/health/history?{query}{cursor}")
        assert response.status_code == 200, response.text
        page = response.json()
        found.append(page)
        if page["next_before"] is None:
            return found
        cursor = f"&before={page['next_before']}"
    raise AssertionError("next_before never ended")


def history_of(found: Iterable[dict[str, Any]], provider: str) -> list[dict[str, Any]]:
    return [
        entry for page in found for adapter in page["adapters"]
        if adapter["provider"] == provider for entry in adapter["history"]
    ]


async def test_pages_reach_past_the_in_memory_window_newest_first(tmp_path: Path) -> None:
    async with running_service(checks=CHECKS, sections=storage_on(tmp_path)) as service:
        state = await first_round(service)
        first = state.health.history("gpt-4", "openai")[0].to_dict()  # type: ignore[union-attr]
        times = record(state, "openai", 2 * HISTORY_LENGTH + 3, step=0.01)
        assert state.storage is not None
        await state.storage.flush()
        found = await pages(service, "model=gpt-4&provider=openai&limit=7")
        middle = (await service.client.get(
            f"/v1/health/history?model=gpt-4&provider=openai&before={times[10]}&limit=3"
        )).json()
    entries = history_of(found, "openai")
    assert [e["checked_at"] for e in entries] == [*reversed(times), first["checked_at"]]
    assert entries[-1] == first
    assert entries[0] == {"checked_at": times[-1], "status": STATUSES[len(times) % 3].value,
                          "latency_ms": float(len(times)), "failure": None}
    assert [len(page["adapters"][0]["history"]) for page in found[:-1]] == [7] * (len(found) - 1)
    assert 1 <= len(found[-1]["adapters"][0]["history"]) <= 7
    assert [page["next_before"] for page in found[:-1]] == [
        page["adapters"][0]["history"][-1]["checked_at"] for page in found[:-1]
    ]
    assert found[0]["adapters"][0]["status"] == state.health.get(  # type: ignore[union-attr]
        "gpt-4", "openai").reported.value
    assert [e["checked_at"] for e in middle["adapters"][0]["history"]] == [
        times[9], times[8], times[7]]
    assert middle["next_before"] == times[7]


async def test_one_cursor_pages_every_adapter_of_the_selection_without_gaps_or_repeats(
    tmp_path: Path,
) -> None:
    async with running_service(checks=CHECKS, sections=storage_on(tmp_path)) as service:
        state = await first_round(service)
        assert state.health is not None and state.storage is not None
        before = {p: [e.to_dict() for e in state.health.history("gpt-4", p)]
                  for p in MODELS["gpt-4"]}
        busy = record(state, "openai", 37, step=0.003)
        quiet = record(state, "openai-backup", 9, step=0.011)
        await state.storage.flush()
        found = await pages(service, "model=gpt-4&limit=4")
    expected = {"openai": busy, "openai-backup": quiet}
    for provider, times in expected.items():
        entries = history_of(found, provider)
        assert [e["checked_at"] for e in entries] == [
            *reversed(times), *(e["checked_at"] for e in reversed(before[provider]))
        ]
    for page in found:
        assert [a["provider"] for a in page["adapters"]] == ["openai", "openai-backup"]
        cursor = page["next_before"]
        for adapter in page["adapters"]:
            assert len(adapter["history"]) <= 4
            assert cursor is None or all(e["checked_at"] >= cursor for e in adapter["history"])


async def test_the_first_page_has_the_results_storage_has_not_written_yet(
    tmp_path: Path,
) -> None:
    # No flush while the test runs but the ones it asks for.
    sections = storage_on(tmp_path, flush_interval=3600)
    async with running_service(checks=CHECKS, sections=sections) as service:
        state = await first_round(service)
        assert state.storage is not None
        await state.storage.flush()
        times = record(state, "openai", 3, step=0.5)
        query = "/v1/health/history?model=gpt-4&provider=openai&limit=2"
        unwritten = (await service.client.get(query)).json()
        await state.storage.flush()
        written = (await service.client.get(query)).json()
        rest = (await service.client.get(f"{query}&before={written['next_before']}")).json()
    assert [e["checked_at"] for e in unwritten["adapters"][0]["history"]] == times[:0:-1]
    assert written == unwritten
    assert [e["checked_at"] for e in rest["adapters"][0]["history"]][:1] == [times[0]]


async def test_without_before_and_limit_the_answer_is_the_in_memory_one(tmp_path: Path) -> None:
    async with running_service(checks=CHECKS, sections=storage_on(tmp_path)) as service:
        state = await first_round(service)
        times = record(state, "openai", 3, step=0.01)
        body = (await service.client.get("/v1/health/history?provider=openai")).json()
    assert list(body) == ["adapters"]  # no next_before: not a page
    assert [e["checked_at"] for e in body["adapters"][0]["history"]][-3:] == times  # oldest first


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("before=yesterday", "before"),
        ("before=-1", "before"),
        ("before=inf", "before"),
        ("before=1&before=2", "before"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("limit=2.0", "limit"),
    ],
)
async def test_a_bad_before_or_limit_is_a_400_naming_it(
    tmp_path: Path, query: str, parameter: str
) -> None:
    async with running_service(checks=CHECKS, sections=storage_on(tmp_path)) as service:
        response = await service.client.get(f"/v1/health/history?{query}")
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["error"], body["parameter"]) == ("invalid_parameter", parameter)


@pytest.mark.parametrize("query", ["before=1796000000", "limit=10"])
async def test_a_page_without_storage_is_a_400_saying_how_to_turn_it_on(query: str) -> None:
    async with running_service(checks=CHECKS, sections={"storage": {"enabled": False}}) as service:
        response = await service.client.get(f"/v1/health/history?{query}")
        memory = await service.client.get("/v1/health/history")
    assert response.status_code == 400
    body = response.json()
    assert body["parameter"] == query.split("=")[0]
    assert "[storage] enabled = true" in body["message"]
    assert memory.status_code == 200  # the in-memory history still answers


async def test_a_page_needs_the_token_and_a_configured_model(tmp_path: Path) -> None:
    async with running_service(
        checks=CHECKS, server={"auth_token": TOKEN}, sections=storage_on(tmp_path)
    ) as service:
        anonymous = await service.client.get("/v1/health/history?limit=5")
        unknown = await service.client.get(
            "/v1/health/history?model=gpt4&limit=5", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        head = await service.client.head(
            "/v1/health/history?limit=5", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert anonymous.status_code == 401
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_model"
    assert "gpt-4" in unknown.json()["available"]
    assert head.status_code == 200
    assert head.content == b""

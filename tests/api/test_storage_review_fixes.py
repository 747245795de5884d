"""The stored-history routes after the issue 16 review, over a real service.

hypercorn on loopback, the simulator upstream, one background round at
start, ``[storage]`` on a SQLite file in tmp_path: a database that cannot
be read answers 503 ``storage_failing`` (never 500), a file of the
unreleased draft schema is moved aside at start, the status page lists the
incidents of its models however many the others have, and the first
history page lists a verdict once whatever its sub-millisecond digits.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from service.api.state import ServiceState
from service.engine.report import ProbeStatus
from tests.support import eventually
from tests.support.fakes import probe_result
from tests.support.served import GUARD, MODELS, Service, first_round, running_service
from tests.support.storage import DRAFT_ROW, DRAFT_SCHEMA

#: One background round at start, then none while the test runs.
CHECKS = {"interval": 3600, "unhealthy_interval": 3600, "jitter": 0}
ADAPTERS = sum(len(providers) for providers in MODELS.values())
QUERIES = ("/v1/health/uptime?window=1h", "/v1/health/incidents", "/v1/health/history?limit=1")
H, U = ProbeStatus.HEALTHY, ProbeStatus.UNHEALTHY

def storage_on(path: Path, **status_page: Any) -> dict[str, dict[str, Any]]:
    return {
        "storage": {"enabled": True, "path": str(path), "flush_interval": 0.05},
        "status_page": status_page,
    }


def drafts(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith("health.db.draft-")]


async def written(state: ServiceState, rows: int) -> None:
    """Wait until storage has committed at least ``rows`` rows and has none pending."""
    storage = state.storage
    assert storage is not None
    await eventually(lambda: storage.writes >= rows and not storage.stats()["pending"],
                     within=GUARD)


async def answers_storage_failing(service: Service) -> None:
    for query in QUERIES:
        response = await service.client.get(query)
        assert response.status_code == 503, (query, response.text)
        body = response.json()
        assert body["error"] == "storage_failing", query
        assert "health.db" not in body["message"]  # the kind of failure, not the path


# -- a database that cannot be read ----------------------------------------------------------


async def test_a_file_that_is_not_a_database_answers_503_storage_failing(tmp_path: Path) -> None:
    database = tmp_path / "health.db"
    database.write_bytes(b"not a database at all" * 500)
    async with running_service(checks=CHECKS, sections=storage_on(database)) as service:
        await first_round(service)
        await answers_storage_failing(service)
        ready = (await service.client.get("/readyz")).json()
        assert ready["storage"]["status"] == "failing"
        assert (await service.client.get("/status")).status_code == 200  # without history


async def test_tables_dropped_under_a_running_service_answer_503_storage_failing(
    tmp_path: Path,
) -> None:
    database = tmp_path / "health.db"
    async with running_service(checks=CHECKS, sections=storage_on(database)) as service:
        await written(await first_round(service), ADAPTERS)
        for query in QUERIES:
            assert (await service.client.get(query)).status_code == 200, query
        with sqlite3.connect(database, timeout=GUARD) as db:
            for table in ("results", "transitions", "rollups_minute", "rollups_hour"):
                db.execute(f"DROP TABLE {table}")
        db.close()
        await answers_storage_failing(service)


# -- a file of the draft schema ----------------------------------------------------------------


async def test_a_draft_schema_file_is_moved_aside_and_the_service_starts_a_new_history(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "health.db"
    with sqlite3.connect(database) as db:
        db.executescript(DRAFT_SCHEMA + DRAFT_ROW + ";")
    db.close()
    with caplog.at_level(logging.WARNING, logger="router_health.storage"):
        async with running_service(checks=CHECKS, sections=storage_on(database)) as service:
            await written(await first_round(service), ADAPTERS)
            for query in QUERIES:
                assert (await service.client.get(query)).status_code == 200, query
            assert (await service.client.get("/readyz")).json()["storage"]["status"] == "ok"
    [aside] = drafts(tmp_path)
    assert re.fullmatch(r"health\.db\.draft-\d{8}T\d{6}Z", aside.name)
    with sqlite3.connect(aside) as db:
        assert db.execute("SELECT count(*) FROM results").fetchone() == (1,)  # kept as it was
    db.close()
    moved = [r.getMessage() for r in caplog.records if "draft" in r.getMessage()]
    assert len(moved) == 1 and str(aside) in moved[0]
    assert [r for r in caplog.records if "cannot write" in r.getMessage()] == []


# -- the status page's incidents ---------------------------------------------------------------


def incident_rows(html: str, model: str) -> list[str]:
    return re.findall(rf'<tr[^>]*data-model="{re.escape(model)}"[^>]*>', html)


async def test_the_status_page_keeps_its_models_incidents_when_others_have_many(
    tmp_path: Path,
) -> None:
    flaps = 1001  # more than the page reads at once
    sections = storage_on(tmp_path / "health.db", models=["llama3:latest"])
    async with running_service(checks=CHECKS, sections=sections) as service:
        state = await first_round(service)
        assert state.health is not None and state.storage is not None
        at = time.time() + 1  # after the first round's results
        state.health.record(probe_result(U, model="llama3:latest", provider="ollama", checked_at=at))
        state.health.record(probe_result(H, model="llama3:latest", provider="ollama",
                                         checked_at=at + 0.5))
        for k in range(flaps):  # claude, not on the page, flaps after it
            for offset, status in ((0.0, U), (0.004, H)):
                state.health.record(probe_result(
                    status, model="claude-3-haiku", provider="anthropic",
                    checked_at=at + 1 + k * 0.01 + offset,
                ))
        await written(state, ADAPTERS * 2 + 4 + 4 * flaps)
        assert len(await state.storage.incidents(limit=2000)) == flaps + 1
        response = await service.client.get("/status")
    assert response.status_code == 200
    assert len(incident_rows(response.text, "llama3:latest")) == 1
    assert incident_rows(response.text, "claude-3-haiku") == []


# -- the first history page --------------------------------------------------------------------


def awkward_time(after: float) -> float:
    """A time after ``after`` whose whole ms differ from its 3-digit rounding (e.g. x.2515)."""
    for second in range(int(after) + 1, int(after) + 1000):
        at = second + 0.2515
        if round(at * 1000) != round(round(at, 3) * 1000):
            return at
    raise AssertionError("no such time")


async def test_the_first_history_page_lists_a_verdict_once_whatever_its_sub_ms_digits(
    tmp_path: Path,
) -> None:
    async with running_service(
        checks=CHECKS, sections=storage_on(tmp_path / "health.db")
    ) as service:
        state = await first_round(service)
        assert state.health is not None
        at = awkward_time(time.time())
        state.health.record(probe_result(H, checked_at=at))  # gpt-4/openai
        await written(state, ADAPTERS * 2 + 1)  # stored, and still in memory
        query = "/v1/health/history?model=gpt-4&provider=openai&limit=5"
        page = (await service.client.get(query)).json()
        entries = page["adapters"][0]["history"]
        newest = entries[0]["checked_at"]
        older = (await service.client.get(f"{query}&before={newest}")).json()
    assert newest == round(at * 1000) / 1000  # the stored whole ms
    assert [e["checked_at"] for e in entries].count(newest) == 1
    assert len(entries) == 2  # the first round's verdict and this one
    assert [e["checked_at"] for e in older["adapters"][0]["history"]] == [entries[1]["checked_at"]]


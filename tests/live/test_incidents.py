"""Incidents from stored transitions: open, resolved, major or partial, failure kinds,
unconfigured adapters, a restart in the middle of one, and the query's filters.

Verdicts are recorded in the live state (which publishes the transitions),
written with one flush, then read on a wall clock the test sets.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import trio
import trio.testing

from adapters import FailureKind
from service.config import CheckSchedule, StorageConfig
from service.engine.report import ProbeStatus
from service.live.incidents import Change, incidents_of
from service.live.state import HealthState
from service.live.storage import Storage, open_storage
from service.live.uptime import Incident
from tests.support.fakes import probe_result

H, DEG, U, T = (
    ProbeStatus.HEALTHY, ProbeStatus.DEGRADED, ProbeStatus.UNHEALTHY, ProbeStatus.TIMEOUT
)
D = 1_700_006_400.0
KNOWN = {("gpt-4", "openai"), ("gpt-4", "azure"), ("claude", "anthropic")}
#: (model, provider, checked_at, status, failure)
Verdict = tuple[str, str, float, ProbeStatus, FailureKind | None]


def ok(model: str, provider: str, at: float) -> Verdict:
    return (model, provider, at, H, None)


def down(model: str, provider: str, at: float, failure: FailureKind = FailureKind.HTTP_STATUS,
         status: ProbeStatus = U) -> Verdict:
    return (model, provider, at, status, failure)


@contextlib.asynccontextmanager
async def stored(
    path: Path, verdicts: Sequence[Verdict], now: float
) -> AsyncIterator[Storage]:
    health = HealthState(lambda model, provider: CheckSchedule(interval=10))
    config = StorageConfig(enabled=True, path=str(path), flush_interval=3600.0)
    async with open_storage(config, health, known=KNOWN, wall_clock=lambda: now) as storage:
        for model, provider, at, status, failure in verdicts:
            health.record(probe_result(
                status, model=model, provider=provider, checked_at=at, failure=failure
            ))
        await trio.testing.wait_all_tasks_blocked()  # the transitions forwarded
        assert await storage.flush()
        yield storage
        health.close()


def summary(incident: Incident) -> tuple[object, ...]:
    return (
        incident.model, incident.started_at, incident.ended_at, incident.duration_seconds,
        incident.severity, incident.failures, incident.adapters,
    )


async def test_an_adapter_going_down_opens_a_partial_incident(tmp_path: Path) -> None:
    verdicts = [ok("gpt-4", "openai", D), ok("gpt-4", "azure", D), down("gpt-4", "openai", D + 10)]
    async with stored(tmp_path / "h.db", verdicts, D + 100) as storage:
        [incident] = await storage.incidents()
    assert summary(incident) == (
        "gpt-4", D + 10, None, 90.0, "partial", ("http_status",), ("openai",)
    )
    assert incident.to_dict() == {
        "model": "gpt-4", "status": "open", "started_at": D + 10, "ended_at": None,
        "duration_seconds": 90.0, "severity": "partial", "failures": ["http_status"],
        "adapters": ["openai"],
    }


async def test_an_incident_ends_when_its_adapters_are_back(tmp_path: Path) -> None:
    verdicts = [
        ok("gpt-4", "openai", D), ok("gpt-4", "azure", D),
        down("gpt-4", "openai", D + 10),
        down("gpt-4", "azure", D + 20, FailureKind.CONNECT),  # joins: now every provider is down
        ok("gpt-4", "openai", D + 30),
        ok("gpt-4", "azure", D + 70),  # the last one back
    ]
    async with stored(tmp_path / "h.db", verdicts, D + 100) as storage:
        [incident] = await storage.incidents()
    assert summary(incident) == (
        "gpt-4", D + 10, D + 70, 60.0, "major", ("connect", "http_status"), ("azure", "openai")
    )
    assert incident.to_dict()["status"] == "resolved"


async def test_degraded_is_not_down_and_failure_kinds_are_collected(tmp_path: Path) -> None:
    verdicts = [
        ok("gpt-4", "openai", D), ok("gpt-4", "azure", D),
        down("gpt-4", "azure", D + 5, FailureKind.RATE_LIMITED, status=DEG),  # degraded only
        down("gpt-4", "openai", D + 10, FailureKind.TIMEOUT, status=T),
        ok("gpt-4", "openai", D + 20),
        down("gpt-4", "openai", D + 30, FailureKind.CONNECT),  # a second incident
    ]
    async with stored(tmp_path / "h.db", verdicts, D + 100) as storage:
        incidents = await storage.incidents()
    assert [summary(i) for i in incidents] == [  # newest first
        ("gpt-4", D + 30, None, 70.0, "partial", ("connect",), ("openai",)),
        ("gpt-4", D + 10, D + 20, 10.0, "partial", ("timeout",), ("openai",)),
    ]


async def test_a_model_whose_only_checked_provider_is_down_has_a_major_incident(
    tmp_path: Path,
) -> None:
    # azure is configured but has never been checked: it cannot be said to be up.
    async with stored(tmp_path / "h.db", [down("gpt-4", "openai", D)], D + 10) as storage:
        [incident] = await storage.incidents()
    assert incident.severity == "major"


async def test_adapters_no_longer_configured_are_left_out(tmp_path: Path) -> None:
    verdicts = [
        ok("gpt-4", "openai", D), down("gpt-4", "gone", D + 5),
        down("retired", "openai", D + 5), down("gpt-4", "openai", D + 10),
    ]
    async with stored(tmp_path / "h.db", verdicts, D + 100) as storage:
        [incident] = await storage.incidents()
    assert (incident.model, incident.started_at, incident.adapters) == ("gpt-4", D + 10, ("openai",))


async def test_an_incident_open_across_a_restart_continues_and_ends_after_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.db"
    async with stored(path, [ok("gpt-4", "openai", D), down("gpt-4", "openai", D + 10)], D + 20):
        pass
    # Restarted: the down verdict is loaded, no transition is made, the incident is still open.
    async with stored(path, [], D + 400) as storage:
        [incident] = await storage.incidents()
        assert (incident.started_at, incident.ended_at, incident.duration_seconds) == (
            D + 10, None, 390.0
        )
    async with stored(path, [down("gpt-4", "openai", D + 500), ok("gpt-4", "openai", D + 510)],
                      D + 600) as storage:
        [incident] = await storage.incidents()
    assert (incident.started_at, incident.ended_at) == (D + 10, D + 510)


async def test_the_filters_apply_before_the_limit(tmp_path: Path) -> None:
    verdicts = [
        ok("gpt-4", "openai", D), ok("claude", "anthropic", D),
        down("gpt-4", "openai", D + 10), ok("gpt-4", "openai", D + 20),  # resolved at D+20
        down("claude", "anthropic", D + 30), ok("claude", "anthropic", D + 40),  # at D+40
        down("gpt-4", "openai", D + 50),  # open
    ]
    async with stored(tmp_path / "h.db", verdicts, D + 100) as storage:
        newest_first = [(i.model, i.started_at) for i in await storage.incidents()]
        assert newest_first == [("gpt-4", D + 50), ("claude", D + 30), ("gpt-4", D + 10)]
        assert [i.started_at for i in await storage.incidents(limit=2)] == [D + 50, D + 30]
        assert [i.started_at for i in await storage.incidents(since=D + 30)] == [D + 50, D + 30]
        assert [i.started_at for i in await storage.incidents(model="gpt-4")] == [D + 50, D + 10]
        assert [i.started_at for i in await storage.incidents(open_only=True)] == [D + 50]
        resolved = await storage.incidents(resolved_only=True, limit=1)
        assert [i.started_at for i in resolved] == [D + 30]


def test_changes_in_any_order_make_the_same_incidents() -> None:
    changes = [
        Change("azure", 20.0, True, "connect"), Change("openai", 10.0, True, "auth"),
        Change("openai", 30.0, False), Change("azure", 40.0, False),
    ]
    forward = incidents_of("gpt-4", changes, {"openai", "azure"}, now=100.0)
    backward = incidents_of("gpt-4", list(reversed(changes)), {"openai", "azure"}, now=100.0)
    assert forward == backward
    assert [summary(i) for i in forward] == [
        ("gpt-4", 10.0, 40.0, 30.0, "major", ("auth", "connect"), ("azure", "openai"))
    ]

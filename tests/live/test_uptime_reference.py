"""Storage's uptime against a brute-force reference, on random timelines.

Each timeline is verdicts of three providers of one model, recorded through
the state into a real SQLite file over several restarts (storage reopened),
flushed at random points. The reference rebuilds every held interval from
the verdicts the state reported (each holds until the next, at most the
hold limit) and measures their union: per adapter, and for the model (up
while any provider is up). Every window and every day must agree to 2 ms.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from service.config import CheckSchedule, StorageConfig
from service.engine.report import ProbeStatus
from service.live.state import HealthState
from service.live.storage import open_storage
from tests.support.fakes import probe_result

H, DG, U, T, UN = (
    ProbeStatus.HEALTHY, ProbeStatus.DEGRADED, ProbeStatus.UNHEALTHY, ProbeStatus.TIMEOUT,
    ProbeStatus.UNSUPPORTED,
)
END = 1_700_006_400.0
PROVIDERS = ("a", "b", "c")
KNOWN = {("m", p) for p in PROVIDERS}
Interval = tuple[int, int]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def union_length(intervals: list[Interval], lo: int, hi: int) -> int:
    """Length of the union of ``intervals`` within ``[lo, hi)``."""
    clipped = sorted((max(a, lo), min(b, hi)) for a, b in intervals if min(b, hi) > max(a, lo))
    total, current = 0, None
    for a, b in clipped:
        if current is None or a > current[1]:
            if current is not None:
                total += current[1] - current[0]
            current = [a, b]
        else:
            current[1] = max(current[1], b)
    if current is not None:
        total += current[1] - current[0]
    return total


def reference(
    verdicts: list[tuple[str, int, bool | None]], hold: int, now: int
) -> dict[str, tuple[list[Interval], list[Interval]]]:
    """Per provider (and ``""`` for the model): its up and its covered intervals."""
    out: dict[str, tuple[list[Interval], list[Interval]]] = {}
    for provider in PROVIDERS:
        own = [v for v in verdicts if v[0] == provider]
        up: list[Interval] = []
        covered: list[Interval] = []
        for index, (_, at, is_up) in enumerate(own):
            following = own[index + 1][1] if index + 1 < len(own) else now
            end = min(following, at + hold, now)
            if is_up is None or end <= at:
                continue
            covered.append((at, end))
            if is_up:
                up.append((at, end))
        out[provider] = (up, covered)
    out[""] = (
        [i for p in PROVIDERS for i in out[p][0]], [i for p in PROVIDERS for i in out[p][1]]
    )
    return out


def storage_config(path: Path) -> StorageConfig:
    return StorageConfig(enabled=True, path=str(path), flush_interval=3600.0)


def schedule(model: str, provider: str) -> CheckSchedule:
    return CheckSchedule(interval=10)


def timeline(rng: random.Random) -> list[tuple[str, float, ProbeStatus]]:
    at = END - rng.uniform(0, 10 * 86400)
    events = []
    for _ in range(rng.randint(5, 120)):
        at += rng.choice([
            rng.uniform(0, 30), rng.uniform(0, 400), rng.uniform(0, 5000),
            rng.choice([0.0, 0.001, 60.0, 3600.0, 86400.0]),
        ])
        events.append((rng.choice(PROVIDERS), round(at, 3), rng.choice([H, H, DG, U, T, UN])))
    return events


@pytest.mark.parametrize("seed", range(60))
async def test_uptime_matches_a_brute_force_reference(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    hold = rng.choice([300.0, 600.0])
    clock = Clock(END)
    events = timeline(rng)
    end = events[-1][1] + rng.uniform(0, 1000)
    path = tmp_path / "h.db"
    stored: list[tuple[str, int, bool | None]] = []  # what the state reported, as stored
    index = 0
    while index < len(events):  # one storage lifetime per chunk: restarts in between
        chunk = events[index : index + rng.randint(1, 30)]
        index += len(chunk)
        health = HealthState(schedule)
        clock.now = chunk[-1][1] + 0.001
        async with open_storage(
            storage_config(path), health, known=KNOWN, wall_clock=clock, hold_limit=hold
        ) as storage:
            for provider, at, status in chunk:
                clock.now = at
                health.record(probe_result(status, model="m", provider=provider, checked_at=at))
                state = health.get("m", provider)
                assert state is not None
                if state.latest.checked_at == at:
                    reported = state.reported
                    stored.append(
                        (provider, round(at * 1000), None if reported is UN else reported.usable)
                    )
                if rng.random() < 0.2:
                    assert await storage.flush()
            assert await storage.flush()
            health.close()

    clock.now = end
    now = round(end * 1000)
    expected = reference(stored, round(hold * 1000), now)
    wrong = []
    health = HealthState(schedule)
    async with open_storage(
        storage_config(path), health, known=KNOWN, wall_clock=clock, hold_limit=hold
    ) as storage:
        for window in (3600, 86400, 7 * 86400, 30 * 86400):
            report = await storage.uptime(window)
            lo = round(report.start * 1000)
            answers = [(p, report.adapters[("m", p)]) for p in PROVIDERS] + [("", report.models["m"])]
            for key, uptime in answers:
                up, covered = expected[key]
                want = (union_length(up, lo, now) / 1000, union_length(covered, lo, now) / 1000)
                got = (uptime.up_seconds, uptime.covered_seconds)
                if abs(want[0] - got[0]) > 0.002 or abs(want[1] - got[1]) > 0.002:
                    wrong.append((window, key, want, got))
        for day in await storage.daily("m", 5):
            lo, hi = round(day.start * 1000), min(round((day.start + 86400) * 1000), now)
            up, covered = expected[""]
            want = (union_length(up, lo, hi) / 1000, union_length(covered, lo, hi) / 1000)
            got = (day.uptime.up_seconds, day.uptime.covered_seconds)
            if abs(want[0] - got[0]) > 0.002 or abs(want[1] - got[1]) > 0.002:
                wrong.append(("day", day.start, want, got))
        health.close()
    assert not wrong, wrong

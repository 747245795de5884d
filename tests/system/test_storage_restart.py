"""[storage] across a restart of the whole service (issue 16, item 1).

The first service checks its fleet and writes the verdicts to a SQLite file;
a second one, on the same file and with every upstream hanging, answers its
first ``GET /v1/health/`` from the verdicts it loaded, each with its age.
/readyz and /metrics say how storage is doing. Waits are for conditions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from prometheus_client.parser import text_string_to_metric_families

from service.api.app import EXTENSION_KEY
from service.testing.simulator import Behavior
from tests.support import eventually
from tests.support.served import GUARD, MODELS, running_service, simulated_fleet

ADAPTERS = sum(len(providers) for providers in MODELS.values())


def storage_section(path: Path) -> dict[str, Any]:
    return {"storage": {"enabled": True, "path": str(path), "flush_interval": 0.05}}


#: One background round at start, then none while the test runs.
CHECKS = {"interval": 3600, "jitter": 0}


def metric(text: str, name: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return None


async def test_a_restarted_service_answers_at_once_with_the_stored_verdicts(
    tmp_path: Path,
) -> None:
    database = tmp_path / "health.db"
    async with running_service(checks=CHECKS, sections=storage_section(database)) as first:
        state = first.app.extensions[EXTENSION_KEY]
        await eventually(lambda: state.storage.stats()["writes"] >= ADAPTERS, within=GUARD)
        ready = (await first.client.get("/readyz")).json()
        assert ready["storage"] == {
            "status": "ok", "pending": ready["storage"]["pending"], "dropped": 0, "last_error": None,
        }
        metrics = (await first.client.get("/metrics")).text
        assert (metric(metrics, "router_health_storage_writes_total") or 0) >= ADAPTERS
        assert metric(metrics, "router_health_storage_dropped_total") == 0
        before = (await first.client.get("/v1/health/")).json()
    assert before["status"] == "healthy"

    # Every upstream hangs now: whatever the restarted service says, it read from the file.
    hanging = simulated_fleet()
    for provider in hanging:
        provider.behavior = Behavior(mode="hang")
    async with running_service(
        checks=CHECKS, providers=hanging, sections=storage_section(database)
    ) as second:
        with trio.fail_after(GUARD):
            answer = (await second.client.get("/v1/health/?timeout=1")).json()
        assert answer["status"] == "healthy", answer
        for model, providers in MODELS.items():
            for provider in providers:
                detail = answer["details"][model][provider]
                was = before["details"][model][provider]
                assert detail["status"] == "healthy"
                assert detail["checked_at"] == was["checked_at"]  # the stored verdict itself
                assert detail["age_s"] > 0
        assert second.sim.total_stats().completed == 0  # no upstream has answered anything

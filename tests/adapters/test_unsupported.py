"""``type = "unsupported"``: never probed, reported as such everywhere, never the model's downfall.

The status travels through every place that enumerates statuses: the
model and run verdicts, health+json, the live state, cluster messages,
/metrics and the OpenAPI enums.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters import FailureKind, UnsupportedAdapter
from service import AdapterManager, HealthStatus, ProbeResult, ProbeStatus, parse_config
from service.api.healthjson import health_json
from service.api.metrics import Metrics
from service.api.openapi import openapi_spec
from service.config import CheckSchedule
from service.engine.report import HealthReport, ModelReport, model_status
from service.live.cluster import result_from_json, result_to_json
from service.live.state import HealthState, level
from tests.support.fakes import ok

REASON = "no adapter for the provider prefix 'foo/'"


def unsupported_entry(name: str = "foo") -> dict[str, Any]:
    return {"name": name, "type": "unsupported", "reason": REASON}


def result(provider: str, status: ProbeStatus, failure: FailureKind | None = None) -> ProbeResult:
    return ProbeResult("m", provider, "A", status, 1.0, time.time(), failure=failure)


UNSUPPORTED = result("foo", ProbeStatus.UNHEALTHY, FailureKind.UNSUPPORTED)


async def test_the_adapter_answers_at_once_without_a_connection() -> None:
    adapter = UnsupportedAdapter(provider="foo", base_url="", model="m", options={"reason": REASON})
    outcome = await adapter.check_health()  # no client bound: nothing to send with, nothing sent
    assert not outcome.healthy and outcome.failure is FailureKind.UNSUPPORTED
    assert outcome.error == f"not checked: {REASON}"


def test_a_result_with_the_unsupported_failure_has_the_unsupported_status() -> None:
    assert UNSUPPORTED.status is ProbeStatus.UNSUPPORTED and UNSUPPORTED.usable
    assert not UNSUPPORTED.healthy
    assert not UNSUPPORTED.sent  # no latency to time, no probe to count


async def test_a_checked_fleet_reports_it_and_keeps_the_model_healthy() -> None:
    config = parse_config(
        {"models": [{"name": "m", "providers": [unsupported_entry()]}]}, env={}
    )
    async with AdapterManager.from_config(config) as manager:
        manager.register_adapter("m", ok("up"))
        report = await manager.health_checker.run(manager.model_adapters)
    foo = report.models["m"].results["foo"]
    assert (foo.status, foo.failure, foo.error) == (
        ProbeStatus.UNSUPPORTED, FailureKind.UNSUPPORTED, f"not checked: {REASON}",
    )
    assert foo.to_dict()["status"] == "unsupported" and foo.to_dict()["failure"] == "unsupported"
    assert report.status is HealthStatus.HEALTHY
    assert report.to_dict()["models"]["m"]["providers"] == {"foo": "unsupported", "up": "healthy"}


async def test_it_is_said_once_at_load_and_never_warned_about_per_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    config = parse_config(
        {"models": [{"name": "m", "providers": [unsupported_entry()]}]}, env={}
    )
    async with AdapterManager.from_config(config) as manager:
        for _ in range(3):
            report = await manager.health_checker.run(manager.model_adapters)
    said = [r for r in caplog.records if r.name == "router_health.manager"]
    assert [r.levelno for r in said] == [logging.INFO] and "m/foo" in said[0].getMessage()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert report.models["m"].results["foo"].latency_ms is None  # nothing was sent to time


def test_unsupported_providers_are_left_out_of_the_model_status() -> None:
    healthy = result("a", ProbeStatus.HEALTHY)
    down = result("b", ProbeStatus.UNHEALTHY)
    assert model_status([healthy, UNSUPPORTED]) is HealthStatus.HEALTHY
    assert model_status([down, UNSUPPORTED]) is HealthStatus.UNHEALTHY
    assert model_status([healthy, down, UNSUPPORTED]) is HealthStatus.DEGRADED


def test_a_model_with_only_unsupported_providers_is_degraded() -> None:
    status = model_status([UNSUPPORTED])
    assert status is HealthStatus.DEGRADED
    assert model_status([]) is HealthStatus.UNHEALTHY  # unchanged: no providers at all


def report_of(**models: dict[str, ProbeResult]) -> HealthReport:
    return HealthReport(
        models={name: ModelReport(name, results) for name, results in models.items()},
        timestamp=time.time(), execution_time=0.1, concurrent=True, timeout=5.0,
    )


def test_a_model_nothing_can_check_is_left_out_of_the_fleets_status() -> None:
    # One imported sagemaker deployment must not keep the whole fleet degraded for good.
    fleet = report_of(up={"a": result("a", ProbeStatus.HEALTHY)}, jumpstart={"foo": UNSUPPORTED})
    assert fleet.status is HealthStatus.HEALTHY and fleet.unchecked_models == 1
    assert fleet.to_dict()["models"]["jumpstart"]["status"] == "degraded"  # itself: unverified
    down = report_of(down={"a": result("a", ProbeStatus.UNHEALTHY)}, jumpstart={"foo": UNSUPPORTED})
    assert down.status is HealthStatus.UNHEALTHY  # every model that can be checked is down
    assert report_of(jumpstart={"foo": UNSUPPORTED}).status is HealthStatus.DEGRADED  # none
    assert report_of().status is HealthStatus.HEALTHY  # an empty selection, as before


def test_health_json_warns_about_it() -> None:
    report = HealthReport(
        models={"m": ModelReport("m", {"a": result("a", ProbeStatus.HEALTHY), "foo": UNSUPPORTED})},
        timestamp=time.time(), execution_time=0.1, concurrent=True, timeout=5.0,
    )
    document = health_json(report)
    assert document["status"] == "pass"
    statuses = {key: checks[0]["status"] for key, checks in document["checks"].items()}
    assert sorted(statuses.values()) == ["pass", "warn"]


async def test_the_live_state_keeps_it_unsupported_and_up() -> None:
    state = HealthState(lambda model, provider: CheckSchedule())
    for _ in range(3):  # past any unhealthy_threshold: it never flips to down
        state.record(result("foo", ProbeStatus.UNHEALTHY, FailureKind.UNSUPPORTED))
    current = state.get("m", "foo")
    assert current is not None and current.reported is ProbeStatus.UNSUPPORTED and current.up
    assert level(ProbeStatus.UNSUPPORTED) == "unsupported"


def test_a_peer_may_share_an_unsupported_result() -> None:
    back, _, _ = result_from_json(result_to_json(UNSUPPORTED, instance="peer", token=1))
    assert (back.status, back.failure) == (ProbeStatus.UNSUPPORTED, FailureKind.UNSUPPORTED)


async def test_metrics_count_it_as_up_with_its_own_status() -> None:
    config = parse_config({"models": [{"name": "m", "providers": [unsupported_entry()]}]}, env={})
    async with AdapterManager.from_config(config) as manager:
        metrics = Metrics(manager.health_checker)
        metrics.attach()
        await manager.health_checker.run(manager.model_adapters)
    body, _ = metrics.render(None)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    labels = (("model", "m"), ("provider", "foo"))
    assert samples[("router_health_adapter_up", labels)] == 1.0
    assert samples[("router_health_adapter_status", (*labels, ("status", "unsupported")))] == 1.0
    assert samples[("router_health_adapter_status", (*labels, ("status", "unhealthy")))] == 0.0


def test_the_api_description_names_the_status_and_the_failure() -> None:
    schemas = openapi_spec()["components"]["schemas"]
    assert "unsupported" in schemas["ProbeStatus"]["enum"]
    assert "unsupported" in schemas["FailureKind"]["enum"]

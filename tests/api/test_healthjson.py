"""``application/health+json`` (draft-inadarei-api-health-check-06): documents and negotiation.

Reports come from real ``HealthChecker`` runs over in-memory adapters on
Trio's MockClock (autojump): exact latencies, no sockets, no waiting.
Every document is checked against the draft's field rules by
:func:`validate`, a small hand-written validator (``jsonschema`` is not a
dependency of the project).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import trio
import trio.testing

from adapters import Adapter, CallableAdapter, FailureKind, ProbeOutcome
from service import (
    HealthChecker,
    HealthReport,
    ModelHealthReport,
    ModelReport,
    ProbeResult,
    ProbeStatus,
)
from service.api.healthjson import (
    HEALTH_JSON,
    check_key,
    health_json,
    http_status,
    model_health_json,
    split_check_key,
    wants_health_json,
)
from tests.support.fakes import adapter, after, down, hang, ok, settings
from tests.support.served import running_service

# -- a validator for the draft's rules ----------------------------------------------------------

TOP_KEYS = {"status", "version", "releaseId", "notes", "output", "checks", "links",
            "serviceId", "description"}
CHECK_KEYS = {"componentId", "componentType", "observedValue", "observedUnit", "status",
              "affectedEndpoints", "time", "output", "links"}
STATUSES = {"pass", "warn", "fail"}


def _iso8601_with_zone(value: Any) -> bool:
    if not isinstance(value, str) or not re.fullmatch(
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", value
    ):
        return False
    return dt.datetime.fromisoformat(value).tzinfo is not None


def validate(doc: Mapping[str, Any], code: int) -> None:
    """Assert ``doc`` (answered with HTTP ``code``) follows the draft; raise AssertionError."""
    json.dumps(doc, allow_nan=False)  # plain JSON, no NaN/Infinity
    assert set(doc) <= TOP_KEYS, set(doc) - TOP_KEYS
    assert doc["status"] in STATUSES
    if doc["status"] == "fail":
        assert 400 <= code <= 599
    else:
        assert 200 <= code <= 399
    for key in ("version", "releaseId", "serviceId", "description", "output"):
        if key in doc:
            assert isinstance(doc[key], str) and doc[key]
    if doc["status"] == "pass":
        assert "output" not in doc  # "SHOULD be omitted for 'pass' state"
    if "notes" in doc:
        assert isinstance(doc["notes"], list)
        assert all(isinstance(note, str) for note in doc["notes"])
    checks = doc.get("checks", {})
    assert isinstance(checks, dict)
    for key, values in checks.items():
        assert isinstance(key, str) and key.count(":") == 1  # componentName:measurementName
        assert isinstance(values, list) and values  # always an array of objects
        for check in values:
            assert isinstance(check, dict)
            assert set(check) <= CHECK_KEYS, set(check) - CHECK_KEYS
            assert check["status"] in STATUSES
            assert ("observedValue" in check) == ("observedUnit" in check)
            if "observedValue" in check:
                assert isinstance(check["observedValue"], int | float)
                assert not isinstance(check["observedValue"], bool)
                assert check["observedUnit"] == "ms"
            if "time" in check:
                assert _iso8601_with_zone(check["time"]), check["time"]
            if check["status"] == "pass":
                assert "output" not in check
            elif "output" in check:
                assert isinstance(check["output"], str)
            assert check.get("componentType") in {"component", "datastore", "system"}


# -- fleets ------------------------------------------------------------------------------------


def rate_limited(provider: str) -> CallableAdapter:
    return adapter(
        provider,
        after(0.05, ProbeOutcome.fail(FailureKind.RATE_LIMITED, "HTTP 429: slow down",
                                      http_status=429)),
    )


def checker(**changes: Any) -> HealthChecker:
    base: dict[str, Any] = {"adapter_timeout": 1.0, "transient": frozenset({"rate_limited"})}
    return HealthChecker(settings(**{**base, **changes}))


async def run(plan: Mapping[str, Sequence[Adapter]], **changes: Any) -> HealthReport:
    return await checker(**changes).run(plan)


def mixed() -> dict[str, list[Adapter]]:
    return {
        "gpt-4": [adapter("openai", after(0.25)), adapter("azure", after(0.3))],
        "llama3:latest": [adapter("ollama", after(0.06))],
        "claude-3-haiku": [rate_limited("anthropic")],
        "deepseek-chat": [
            adapter("deepseek", after(0.05, ProbeOutcome.fail(
                FailureKind.HTTP_STATUS, "HTTP 503: upstream error", http_status=503)))
        ],
        "qwen2-72b": [adapter("slow-vllm", hang)],
    }


# -- documents ---------------------------------------------------------------------------------


async def test_mixed_fleet_maps_every_status(autojump_clock: trio.testing.MockClock) -> None:
    report = await run(mixed())
    doc = health_json(report)
    validate(doc, http_status(report))
    assert http_status(report) == 200
    assert doc["status"] == "warn"
    assert doc["serviceId"] == "router-health"
    assert doc["version"] == "1"
    assert doc["output"] == "3 of 6 adapters not healthy (1 degraded, 1 unhealthy, 1 timeout)"
    checks = doc["checks"]
    assert list(checks) == [
        "gpt-4:openai",
        "gpt-4:azure",
        "llama3%3Alatest:ollama",
        "claude-3-haiku:anthropic",
        "deepseek-chat:deepseek",
        "qwen2-72b:slow-vllm",
    ]
    openai = checks["gpt-4:openai"]
    assert openai == [{
        "componentId": "gpt-4/openai",
        "componentType": "component",
        "observedValue": 250.0,
        "observedUnit": "ms",
        "status": "pass",
        "time": openai[0]["time"],
    }]
    assert checks["claude-3-haiku:anthropic"][0]["status"] == "warn"  # transient 429
    assert checks["claude-3-haiku:anthropic"][0]["output"] == "HTTP 429: slow down"
    assert checks["deepseek-chat:deepseek"][0]["status"] == "fail"
    assert checks["deepseek-chat:deepseek"][0]["output"] == "HTTP 503: upstream error"
    stuck = checks["qwen2-72b:slow-vllm"][0]
    assert stuck["status"] == "fail"  # timeout
    assert stuck["observedValue"] == 1000.0
    assert "adapter timeout 1 s" in stuck["output"]
    print(json.dumps(doc, indent=2))  # the README's example (pytest -s)


async def test_time_is_checked_at_in_utc(autojump_clock: trio.testing.MockClock) -> None:
    report = await run({"gpt-4": [ok("openai")]})
    result = report.models["gpt-4"].results["openai"]
    stamp = health_json(report)["checks"]["gpt-4:openai"][0]["time"]
    assert stamp.endswith("Z")
    parsed = dt.datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == dt.timedelta(0)
    assert parsed.timestamp() == pytest.approx(result.checked_at, abs=0.001)


async def test_all_healthy_is_pass_without_output(autojump_clock: trio.testing.MockClock) -> None:
    report = await run({"gpt-4": [ok("openai"), ok("azure")], "llama3": [ok("ollama")]})
    doc = health_json(report)
    validate(doc, http_status(report))
    assert doc["status"] == "pass" and http_status(report) == 200
    assert "output" not in doc and "notes" not in doc
    assert all(values[0]["status"] == "pass" for values in doc["checks"].values())


async def test_all_down_is_fail_and_503(autojump_clock: trio.testing.MockClock) -> None:
    report = await run({"gpt-4": [down("openai")], "qwen2-72b": [adapter("slow", hang)]})
    doc = health_json(report)
    validate(doc, http_status(report))
    assert doc["status"] == "fail" and http_status(report) == 503
    assert doc["output"] == "2 of 2 adapters not healthy (1 unhealthy, 1 timeout)"


async def test_only_degraded_providers_is_warn(autojump_clock: trio.testing.MockClock) -> None:
    report = await run({"claude-3-haiku": [rate_limited("anthropic")]})
    doc = health_json(report)
    validate(doc, http_status(report))
    assert doc["status"] == "warn" and http_status(report) == 200


async def test_not_started_has_no_observed_value(autojump_clock: trio.testing.MockClock) -> None:
    # One at a time under a 1 s run budget: the hanging adapter eats it all.
    checker_ = checker(timeout=1.0, model_timeout=1.0, adapter_timeout=5.0)
    report = await checker_.run(
        {"gpt-4": [adapter("stuck", hang), ok("never")]}, concurrent=False
    )
    never = report.models["gpt-4"].results["never"]
    assert never.latency_ms is None and never.failure is FailureKind.NOT_STARTED
    doc = health_json(report)
    validate(doc, http_status(report))
    check = doc["checks"]["gpt-4:never"][0]
    assert "observedValue" not in check and "observedUnit" not in check
    assert check["status"] == "fail" and check["output"].startswith("not started")


async def test_without_details_only_statuses(autojump_clock: trio.testing.MockClock) -> None:
    report = await run(mixed(), recheck_timeouts=True, timeout=60.0)
    assert report.fallback_reason  # the hanging adapter was re-checked
    full = health_json(report)
    assert report.fallback_reason in full["notes"]
    doc = health_json(report, details=False)
    validate(doc, http_status(report))
    assert "notes" not in doc  # fallback_reason is hidden, as in the JSON API
    assert doc["status"] == full["status"] and doc["output"] == full["output"]
    assert list(doc["checks"]) == list(full["checks"])
    for key, values in doc["checks"].items():
        assert set(values[0]) == {"componentId", "componentType", "status"}
        assert values[0]["status"] == full["checks"][key][0]["status"]
    assert "upstream error" not in json.dumps(doc)
    assert "slow down" not in json.dumps(doc)


async def test_model_document(autojump_clock: trio.testing.MockClock) -> None:
    checker_ = checker()
    report = await checker_.check_model_health_with_timeout(
        "gpt-4", [ok("openai"), adapter("azure", hang)]
    )
    assert isinstance(report, ModelHealthReport)
    doc = model_health_json(report)
    validate(doc, http_status(report))
    assert doc["status"] == "warn" and http_status(report) == 200
    assert "'gpt-4'" in doc["description"]
    assert doc["output"] == "1 of 2 providers not healthy (1 timeout)"
    assert list(doc["checks"]) == ["gpt-4:openai", "gpt-4:azure"]
    bare = model_health_json(report, details=False)
    validate(bare, http_status(report))
    assert "output" not in bare["checks"]["gpt-4:azure"][0]

    down_report = await checker_.check_model_health_with_timeout("gpt-4", [down("openai")])
    validate(model_health_json(down_report), http_status(down_report))
    assert http_status(down_report) == 503


def _result(model: str, provider: str, status: ProbeStatus = ProbeStatus.HEALTHY) -> ProbeResult:
    return ProbeResult(model, provider, "TestAdapter", status, 12.34, 1_796_043_967.6025)


def test_background_notes_and_empty_report() -> None:
    models = {"gpt-4": ModelReport("gpt-4", {"openai": _result("gpt-4", "openai")})}
    served = HealthReport(models, 0.0, 0.0, True, 5.0, extra={"source": "background", "stale": 2})
    doc = health_json(served, details=False)
    validate(doc, 200)
    assert doc["notes"] == ["served from background checks, 2 stale (refreshing)"]
    fresh = HealthReport(models, 0.0, 0.0, True, 5.0, extra={"source": "background"})
    assert health_json(fresh)["notes"] == ["served from background checks"]
    assert health_json(fresh)["checks"]["gpt-4:openai"][0]["time"] == "2026-11-30T13:06:07.602Z"
    empty = HealthReport({}, 0.0, 0.0, True, 5.0)
    doc = health_json(empty)
    validate(doc, http_status(empty))
    assert doc["status"] == "pass" and doc["checks"] == {}


# -- keys with ':' -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "provider", "key"),
    [
        ("gpt-4", "openai", "gpt-4:openai"),
        ("llama3:latest", "ollama", "llama3%3Alatest:ollama"),
        ("org/model:7b:q4", "vllm", "org/model%3A7b%3Aq4:vllm"),
        ("weird", "local:8000", "weird:local%3A8000"),
        ("100%3Asure", "p", "100%253Asure:p"),  # a literal "%3A" in a name survives
        ("a:", ":b", "a%3A:%3Ab"),
    ],
)
def test_check_keys_are_unambiguous(model: str, provider: str, key: str) -> None:
    assert check_key(model, provider) == key
    assert key.count(":") == 1
    assert split_check_key(key) == (model, provider)


def test_colliding_names_get_distinct_keys() -> None:
    # Naive "model:provider" would give "a:b:c" twice.
    models = {
        "a:b": ModelReport("a:b", {"c": _result("a:b", "c")}),
        "a": ModelReport("a", {"b:c": _result("a", "b:c")}),
    }
    doc = health_json(HealthReport(models, 0.0, 0.0, True, 5.0))
    validate(doc, 200)
    assert sorted(doc["checks"]) == ["a%3Ab:c", "a:b%3Ac"]
    assert doc["checks"]["a%3Ab:c"][0]["componentId"] == "a:b/c"


def test_split_check_key_rejects_non_keys() -> None:
    for bad in ("nocolon", "a:b:c"):
        with pytest.raises(ValueError, match="exactly one ':'"):
            split_check_key(bad)


# -- negotiation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, False),
        ("", False),
        ("application/json", False),
        ("*/*", False),
        ("application/*", False),
        ("text/html", False),
        (HEALTH_JSON, True),
        ("Application/Health+JSON", True),
        ("application/health+json; charset=utf-8", True),
        ("application/health+json;q=0", False),  # q=0: not acceptable
        ("application/health+json;q=0.000", False),
        ("application/health+json;q=0.5, application/json", False),
        ("application/health+json, application/json;q=0.9", True),
        ("application/json;q=0.9, application/health+json", True),
        ("application/json, application/health+json", True),  # tie: the one named
        ("application/health+json;q=0.5, */*;q=0.1", True),
        ("application/health+json;q=0.5, application/*", False),  # json via wildcard wins
        ("application/health+json;q=0.5, */*", False),
        ("text/html, application/health+json;q=0.9, */*;q=0.8", True),
        ("application/health+json ; q=0.8 , application/json ; q=0.7", True),
        ("application/health+json;level=1;q=0.4, application/json;q=0.3", True),
        ("application/health+json;q=1.0;ext=x", True),
        ("application/health+json;=;;q", True),  # junk parameters are ignored
        ("application/health+json;q=2", False),  # malformed q: range ignored
        ("application/health+json;q=abc", False),
        ("application/health+json;q=0.1234", False),
        ("application/health+json;q=-1", False),
        ("application/health+json;q=nan", False),
        ("application/health+json;q=1e0", False),
        ("application/health+json;q=0.3, application/json;q=oops", True),  # bad json range dropped
    ],
)
def test_accept_negotiation(accept: str | None, expected: bool) -> None:
    assert wants_health_json(accept, None) is expected


@pytest.mark.parametrize(
    "garbage",
    [
        ",,,;;;",
        "application",
        "/",
        "*/health+json",
        "application/health+json/extra",
        "application/health json",
        ";q=1",
        "q=1",
        "\x00\xff\u2028",
        "application/health+json;q=",
        "a/b;q=" + "9" * 10_000,
        ",".join(["text/plain;q=0.1"] * 5_000),
        "application/health\u212a+json",  # non-ASCII lookalike
    ],
)
def test_garbage_accept_headers_never_raise(garbage: str) -> None:
    assert wants_health_json(garbage, None) is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("json", False),
        ("JSON", False),
        ("health+json", True),
        ("Health+JSON", True),
        ("health json", True),  # "?format=health+json": the '+' decoded as a space
    ],
)
def test_format_parameter(value: str, expected: bool) -> None:
    assert wants_health_json(None, value) is expected
    # The parameter wins over the Accept header either way.
    assert wants_health_json(HEALTH_JSON, value) is expected
    assert wants_health_json("application/json", value) is expected


@pytest.mark.parametrize("value", ["", "xml", "health", "application/health+json", " json"])
def test_unknown_format_is_a_clear_value_error(value: str) -> None:
    with pytest.raises(ValueError, match=r"format must be 'json' or 'health\+json'.*got"):
        wants_health_json(HEALTH_JSON, value)


# -- served by the app (real hypercorn, the simulator upstream) -------------------------------


async def test_the_app_answers_health_json_when_asked() -> None:
    async with running_service() as service:
        client = service.client
        plain = await client.get("/v1/health/")
        assert plain.headers["content-type"].startswith("application/json")
        assert "Accept" in plain.headers["vary"]

        response = await client.get("/v1/health/", headers={"Accept": HEALTH_JSON})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(HEALTH_JSON)
        document = response.json()
        assert document["status"] == "pass"
        assert set(document["checks"]) == {
            "gpt-4:openai", "gpt-4:openai-backup", "claude-3-haiku:anthropic",
            "llama3%3Alatest:ollama",
        }

        service.sim.set_behavior("anthropic", mode="status", status=500)
        response = await client.get("/v1/health/models/claude-3-haiku?format=health+json")
        assert response.status_code == 503
        assert response.headers["content-type"].startswith(HEALTH_JSON)
        [check] = response.json()["checks"]["claude-3-haiku:anthropic"]
        assert check["status"] == "fail" and "HTTP 500" in check["output"]

        response = await client.post("/v1/health/batch", json={"models": ["gpt-4"]},
                                     headers={"Accept": HEALTH_JSON})
        assert response.status_code == 200 and response.json()["status"] == "pass"
        assert set(response.json()["checks"]) == {"gpt-4:openai", "gpt-4:openai-backup"}

        before = service.sim.total_stats().requests
        response = await client.get("/v1/health/?format=xml")
        assert response.status_code == 400
        body = response.json()
        assert body["error"] == "invalid_parameter" and body["parameter"] == "format"
        assert service.sim.total_stats().requests == before  # refused before probing

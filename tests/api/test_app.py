"""The HTTP app through Quart's test client, with in-memory adapters.

Every adapter here is a ``CallableAdapter``: no sockets, no upstream, and
nothing waits on the clock. Where a test needs requests to overlap, adapters
block on ``trio.Event``s and the test uses ``wait_all_tasks_blocked`` to know
every request has reached its wait.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
import trio
import trio.testing
from werkzeug.datastructures import MultiDict

from adapters import Adapter, FailureKind
from service import (
    AdapterManager,
    HealthReport,
    ModelReport,
    ProbeResult,
    ProbeStatus,
    parse_config,
)
from service.api.app import EXTENSION_KEY, create_app, get_manager
from service.api.params import ApiError, CheckParams, parse_check_params
from service.api.views import performance_body
from tests.support.app import (
    V1_MODEL_KEYS,
    V1_TOP_FIELDS,
    V1_TOP_KEYS,
    get_json,
    make_app,
    make_config,
    request_then_disconnect,
    serving,
    standard_fleet,
)
from tests.support.fakes import Probe, adapter, down, ok, probe_result
from tests.support.served import GUARD

DETAIL_KEYS = {
    "status",
    "adapter",
    "latency_ms",
    "http_status",
    "error",
    "failure",
    "checked_at",
    "fallback",
}
PERFORMANCE_METRIC_KEYS = {
    "concurrent_time",
    "sequential_time",
    "speedup",
    "improvement_percent",
    "total_models",
    "total_adapters",
}
CHECK_PATHS = [
    "/v1/health/",
    "/v1/health/models",
    "/v1/health/models/gpt-4",
    "/v1/health/performance",
]


def break_checker(manager: AdapterManager, method: str, message: str) -> None:
    """Make the checker's ``method`` raise ``RuntimeError(message)`` when called."""

    async def broken(*args: object, **kwargs: object) -> HealthReport:
        raise RuntimeError(message)

    setattr(manager.health_checker, method, broken)


# -- GET /v1/health/ ---------------------------------------------------------------


async def test_all_models_healthy_is_200_with_the_v1_shape_field_by_field() -> None:
    app, _ = make_app(standard_fleet(), checks={"timeout": 12})
    async with serving(app) as client:
        status, body = await get_json(client, "/v1/health/")
    assert status == 200
    assert set(body) == V1_TOP_KEYS | {"fallback", "details"}
    assert list(body)[: len(V1_TOP_KEYS)] == list(V1_TOP_FIELDS)
    assert body["status"] == "healthy"
    assert isinstance(body["timestamp"], float)
    assert body["healthy_models"] == 2
    assert body["total_models"] == 2
    assert isinstance(body["execution_time"], float)
    assert body["execution_time"] >= 0
    assert body["concurrent"] is True
    assert body["timeout"] == 12.0
    assert body["fallback"] is False
    assert body["models"] == {
        "gpt-4": {
            "status": "healthy",
            "providers": {"openai": "healthy", "azure": "healthy"},
            "healthy_providers": 2,
            "total_providers": 2,
        },
        "llama3:latest": {
            "status": "healthy",
            "providers": {"ollama": "healthy"},
            "healthy_providers": 1,
            "total_providers": 1,
        },
    }
    for model in body["models"].values():
        assert set(model) == V1_MODEL_KEYS
    assert set(body["details"]) == {"gpt-4", "llama3:latest"}
    openai = body["details"]["gpt-4"]["openai"]
    assert set(openai) == DETAIL_KEYS
    assert openai["status"] == "healthy"
    assert openai["adapter"] == "OpenaiAdapter"


async def test_path_without_trailing_slash_answers_directly() -> None:
    app, _ = make_app(standard_fleet())
    async with serving(app) as client:
        status, body = await get_json(client, "/v1/health")
    assert status == 200
    assert body["status"] == "healthy"


async def test_some_providers_down_is_degraded_and_still_200() -> None:
    app, _ = make_app({"gpt-4": [ok("openai"), down("azure")], "claude": [down("anthropic")]})
    async with serving(app) as client:
        status, body = await get_json(client, "/v1/health/")
    assert status == 200
    assert body["status"] == "degraded"
    assert body["models"]["gpt-4"]["providers"] == {"openai": "healthy", "azure": "unhealthy"}
    assert body["models"]["claude"]["status"] == "unhealthy"
    assert body["healthy_models"] == 0
    assert body["details"]["gpt-4"]["azure"]["error"] == "check returned False"


async def test_every_provider_down_is_503() -> None:
    app, _ = make_app({"gpt-4": [down("openai")], "claude": [down("anthropic")]})
    async with serving(app) as client:
        status, body = await get_json(client, "/v1/health/")
    assert status == 503
    assert body["status"] == "unhealthy"


@pytest.mark.parametrize("value", ["false", "0", "no", " NO ", "False"])
async def test_use_concurrent_false_runs_sequentially_with_the_same_verdicts(value: str) -> None:
    app, _ = make_app({"gpt-4": [ok("openai"), down("azure")]})
    async with serving(app) as client:
        _, concurrent = await get_json(client, "/v1/health/")
        status, sequential = await get_json(client, f"/v1/health/?use_concurrent={value}")
    assert status == 200
    assert concurrent["concurrent"] is True
    assert sequential["concurrent"] is False
    assert sequential["models"] == concurrent["models"]


async def test_details_false_leaves_only_the_v1_fields_and_fallback() -> None:
    app, _ = make_app(standard_fleet())
    async with serving(app) as client:
        _, body = await get_json(client, "/v1/health/?details=false")
    assert set(body) == V1_TOP_KEYS | {"fallback"}


async def test_timeout_defaults_to_the_config_and_can_be_overridden() -> None:
    app, _ = make_app(standard_fleet(), checks={"timeout": 7, "model_timeout": 3})
    async with serving(app) as client:
        _, default = await get_json(client, "/v1/health/")
        _, explicit = await get_json(client, "/v1/health/?timeout=2.5")
    assert default["timeout"] == 7.0
    assert explicit["timeout"] == 2.5


async def test_use_concurrent_defaults_to_the_config() -> None:
    app, _ = make_app(standard_fleet(), checks={"use_concurrent": False})
    async with serving(app) as client:
        _, body = await get_json(client, "/v1/health/")
        _, forced = await get_json(client, "/v1/health/?use_concurrent=yes")
    assert body["concurrent"] is False
    assert forced["concurrent"] is True


async def test_unknown_query_parameters_are_ignored() -> None:
    app, _ = make_app(standard_fleet())
    async with serving(app) as client:
        status, body = await get_json(client, "/v1/health/?verbose=1&foo=bar&timeout=5")
    assert status == 200
    assert body["timeout"] == 5.0


#: Every GET route with an answer worth checking (the event stream never ends).
GET_ROUTES = (
    "/v1/health/",
    "/v1/health",
    "/v1/health/?format=health+json",
    "/v1/health/models",
    "/v1/health/models/gpt-4",
    "/v1/health/models/nope",  # an error answer is a health answer too
    "/v1/health/performance",
    "/livez",
    "/readyz",
)


async def test_health_answers_are_never_cacheable() -> None:
    app, _ = make_app(standard_fleet())
    async with serving(app) as client:
        answers = {path: await client.get(path) for path in GET_ROUTES}
        answers["POST /v1/health/batch"] = await client.post("/v1/health/batch", json={})
    assert {path: r.headers.get("Cache-Control") for path, r in answers.items()} == dict.fromkeys(
        answers, "no-store"
    )


# -- GET /v1/health/models -----------------------------------------------------------


async def test_models_route_lists_each_model_with_its_details() -> None:
    app, _ = make_app({"gpt-4": [ok("openai"), down("azure")], "llama3:latest": [ok("ollama")]})
    async with serving(app) as client:
        status, body = await get_json(client, "/v1/health/models")
        slash_status, _ = await get_json(client, "/v1/health/models/")
    assert status == slash_status == 200
    assert set(body) == V1_TOP_KEYS | {"fallback"}
    assert body["status"] == "degraded"
    assert isinstance(body["models"], list)
    assert [m["model"] for m in body["models"]] == ["gpt-4", "llama3:latest"]
    gpt4 = body["models"][0]
    assert set(gpt4) == V1_MODEL_KEYS | {"model", "details"}
    assert gpt4["status"] == "degraded"
    assert gpt4["providers"] == {"openai": "healthy", "azure": "unhealthy"}
    assert (gpt4["healthy_providers"], gpt4["total_providers"]) == (1, 2)
    assert set(gpt4["details"]["azure"]) == DETAIL_KEYS


async def test_models_route_without_details_and_unhealthy_is_503() -> None:
    app, _ = make_app({"gpt-4": [down("openai")]})
    async with serving(app) as client:
        status, body = await get_json(client, "/v1/health/models?details=0")
    assert status == 503
    assert set(body["models"][0]) == V1_MODEL_KEYS | {"model"}


# -- GET /v1/health/models/<name> ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/health/models/gpt-4", "gpt-4"),
        ("/v1/health/models/gpt-4.1", "gpt-4.1"),
        ("/v1/health/models/llama3:latest", "llama3:latest"),
        ("/v1/health/models/llama3%3Alatest", "llama3:latest"),
        ("/v1/health/models/org/model-7b", "org/model-7b"),
        ("/v1/health/models/org%2Fmodel-7b", "org/model-7b"),
        ("/v1/health/models/my%20model", "my model"),
    ],
)
async def test_one_model_by_name_including_dots_colons_slashes_and_escapes(
    path: str, name: str
) -> None:
    fleet = {
        n: [ok("p")] for n in ["gpt-4", "gpt-4.1", "llama3:latest", "org/model-7b", "my model"]
    }
    app, _ = make_app(fleet)
    async with serving(app) as client:
        status, body = await get_json(client, path)
    assert status == 200
    assert body["model"] == name
    assert body["providers"] == {"p": "healthy"}


async def test_one_model_shape_and_default_timeout_is_model_timeout() -> None:
    app, _ = make_app(standard_fleet(), checks={"timeout": 30, "model_timeout": 4})
    async with serving(app) as client:
        status, body = await get_json(client, "/v1/health/models/gpt-4")
        _, explicit = await get_json(client, "/v1/health/models/gpt-4?timeout=9&use_concurrent=no")
    assert status == 200
    assert set(body) == {
        "model",
        "status",
        "providers",
        "healthy_providers",
        "total_providers",
        "timestamp",
        "execution_time",
        "concurrent",
        "timeout",
        "fallback",
        "details",
    }
    assert body["model"] == "gpt-4"
    assert body["timeout"] == 4.0
    assert set(body["details"]) == {"openai", "azure"}
    assert (explicit["timeout"], explicit["concurrent"]) == (9.0, False)


async def test_one_unhealthy_model_is_503_even_if_others_are_fine() -> None:
    app, _ = make_app({"gpt-4": [ok("openai")], "claude": [down("anthropic")]})
    async with serving(app) as client:
        status, body = await get_json(client, "/v1/health/models/claude")
        fine_status, fine = await get_json(client, "/v1/health/models/gpt-4")
        all_status, everything = await get_json(client, "/v1/health/")
    assert status == 503
    assert body["status"] == "unhealthy"
    # The others really are fine: their own route says so, and the whole
    # report (one model down of two) is degraded, not unhealthy, hence 200.
    assert (fine_status, fine["status"]) == (200, "healthy")
    assert (all_status, everything["status"]) == (200, "degraded")
    statuses = {name: model["status"] for name, model in everything["models"].items()}
    assert statuses == {"gpt-4": "healthy", "claude": "unhealthy"}


@pytest.mark.parametrize("name", ["nope", "GPT-4", "gpt-4/", "llama3", "x" * 500])
async def test_unknown_model_is_404_listing_the_configured_ones(name: str) -> None:
    probe = Probe()
    app, _ = make_app({"gpt-4": [adapter("openai", probe)], "llama3:latest": [ok("ollama")]})
    async with serving(app) as client:
        status, body = await get_json(client, f"/v1/health/models/{name}")
    assert status == 404
    assert set(body) == {"error", "message", "available"}
    assert body["error"] == "unknown_model"
    assert body["available"] == ["gpt-4", "llama3:latest"]
    assert len(body["message"]) < 200  # a huge name is not echoed back whole
    assert probe.calls == 0


# -- query validation ------------------------------------------------------------------


BAD_QUERIES = [
    ("timeout=NaN", "timeout"),
    ("timeout=nan", "timeout"),
    ("timeout=inf", "timeout"),
    ("timeout=-inf", "timeout"),
    ("timeout=-1", "timeout"),
    ("timeout=0", "timeout"),
    ("timeout=0.0", "timeout"),
    ("timeout=1e309", "timeout"),
    ("timeout=abc", "timeout"),
    ("timeout=", "timeout"),
    ("timeout", "timeout"),
    ("timeout=121", "timeout"),
    ("timeout=120.0001", "timeout"),
    ("timeout=0x10", "timeout"),
    ("timeout=1_0", "timeout"),
    ("timeout=5s", "timeout"),
    ("timeout=%F0%9F%95%92", "timeout"),
    ("timeout=1&timeout=2", "timeout"),
    ("timeout=5&timeout=5", "timeout"),
    ("use_concurrent=maybe", "use_concurrent"),
    ("use_concurrent=", "use_concurrent"),
    ("use_concurrent=2", "use_concurrent"),
    ("use_concurrent=on", "use_concurrent"),
    ("use_concurrent=true&use_concurrent=false", "use_concurrent"),
    ("details=maybe", "details"),
    ("details=", "details"),
]


@pytest.mark.parametrize("path", CHECK_PATHS)
@pytest.mark.parametrize(("query", "parameter"), BAD_QUERIES)
async def test_bad_query_values_are_400_naming_the_parameter_and_probe_nothing(
    path: str, query: str, parameter: str
) -> None:
    probe = Probe()
    app, _ = make_app({"gpt-4": [adapter("openai", probe)]})
    async with serving(app) as client:
        status, body = await get_json(client, f"{path}?{query}")
    assert status == 400
    assert list(body) == ["error", "parameter", "message", "accepted"]
    assert body["error"] == "invalid_parameter"
    assert body["parameter"] == parameter
    assert body["message"].startswith(parameter)
    assert "Traceback" not in body["message"]
    assert probe.calls == 0


async def test_bad_timeout_message_states_the_rule_and_the_value() -> None:
    app, _ = make_app(standard_fleet())
    async with serving(app) as client:
        _, body = await get_json(client, "/v1/health/?timeout=abc")
    assert body["message"] == "timeout must be a number of seconds > 0 and <= 120, got 'abc'"
    assert "120" in body["accepted"]


async def test_the_maximum_timeout_comes_from_the_server_config() -> None:
    app, _ = make_app(standard_fleet(), server={"max_timeout": 10})
    async with serving(app) as client:
        ok_status, _ = await get_json(client, "/v1/health/?timeout=10")
        status, body = await get_json(client, "/v1/health/?timeout=10.5")
    assert ok_status == 200
    assert status == 400
    assert "<= 10," in body["message"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", CheckParams(timeout=30.0, use_concurrent=True, details=True)),
        ("timeout=120", CheckParams(timeout=120.0, use_concurrent=True, details=True)),
        ("timeout=%205%20", CheckParams(timeout=5.0, use_concurrent=True, details=True)),
        ("timeout=1e1", CheckParams(timeout=10.0, use_concurrent=True, details=True)),
        ("timeout=.5", CheckParams(timeout=0.5, use_concurrent=True, details=True)),
        ("timeout=%2B3", CheckParams(timeout=3.0, use_concurrent=True, details=True)),
        ("use_concurrent=NO&details=Yes", CheckParams(30.0, use_concurrent=False, details=True)),
        (
            "use_concurrent=%200%20&details=FALSE",
            CheckParams(30.0, use_concurrent=False, details=False),
        ),
        ("use_concurrent=1&details=0", CheckParams(30.0, use_concurrent=True, details=False)),
        ("other=1&other=2", CheckParams(timeout=30.0, use_concurrent=True, details=True)),
    ],
)
def test_accepted_query_values(query: str, expected: CheckParams) -> None:
    from urllib.parse import parse_qsl

    config = make_config()
    args = MultiDict(parse_qsl(query, keep_blank_values=True))
    assert parse_check_params(args, config, default_timeout=30.0) == expected


def test_bad_value_in_the_parser_raises_an_api_error_with_status_400() -> None:
    config = make_config()
    with pytest.raises(ApiError) as info:
        parse_check_params(MultiDict([("timeout", "-1")]), config, default_timeout=30.0)
    assert info.value.status == 400


# -- GET /v1/health/performance ------------------------------------------------------------


async def test_performance_reports_the_v1_fields_and_agreement() -> None:
    app, _ = make_app({"gpt-4": [ok("openai"), down("azure")], "claude": [ok("anthropic")]})
    async with serving(app) as client:
        status, body = await get_json(client, "/v1/health/performance?timeout=5")
    assert status == 200
    assert set(body) == {
        "timestamp",
        "performance_metrics",
        "concurrent_result_count",
        "sequential_result_count",
        "timeout",
        "concurrent_status",
        "sequential_status",
        "agreement",
        "time_breakdown",
        "limits",
        "cost",
    }
    for strategy in ("concurrent", "sequential"):
        breakdown = body["time_breakdown"][strategy]
        assert breakdown["probes"] == 3
        # No cap configured: nothing queued, all the time is the providers'.
        assert breakdown["queue_wait_ms"]["total"] == 0.0
        assert breakdown["execution_ms"]["max"] is not None
    assert body["limits"] == {"adaptive": False, "current": {}}
    metrics = body["performance_metrics"]
    assert set(metrics) == PERFORMANCE_METRIC_KEYS
    assert (metrics["total_models"], metrics["total_adapters"]) == (2, 3)
    assert body["concurrent_result_count"] == body["sequential_result_count"] == 3
    assert body["timeout"] == 5.0
    assert body["concurrent_status"] == body["sequential_status"] == "degraded"
    assert body["agreement"] == {"agreed": True, "mismatches": []}


async def test_performance_reports_a_provider_whose_verdict_changed_between_runs() -> None:
    flapping = Probe([True, False])  # healthy on the first call, unhealthy on the second
    app, _ = make_app({"gpt-4": [ok("openai"), adapter("flaky", flapping)]})
    async with serving(app) as client:
        status, body = await get_json(client, "/v1/health/performance")
    assert status == 200
    assert flapping.calls == 2
    assert body["agreement"] == {
        "agreed": False,
        "mismatches": [
            {
                "model": "gpt-4",
                "provider": "flaky",
                "concurrent": "healthy",
                "sequential": "unhealthy",
            }
        ],
    }
    assert body["concurrent_status"] == "healthy"
    assert body["sequential_status"] == "degraded"


async def test_concurrent_performance_callers_share_one_run() -> None:
    gate = trio.Event()
    probes = [Probe(gate=gate) for _ in range(3)]
    fleet: dict[str, list[Adapter]] = {
        "gpt-4": [adapter("openai", probes[0]), adapter("azure", probes[1])],
        "claude": [adapter("anthropic", probes[2])],
    }
    app, _ = make_app(fleet)
    answers: list[tuple[int, dict[str, Any]]] = []

    async def call(query: str) -> None:
        answers.append(await get_json(client, f"/v1/health/performance?{query}"))

    async with serving(app) as client, trio.open_nursery() as nursery:
        nursery.start_soon(call, "timeout=20")
        await probes[0].entered.wait()
        # A caller asking for another budget joins the run in flight too.
        nursery.start_soon(call, "timeout=5")
        nursery.start_soon(call, "timeout=20")
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
    assert [p.calls for p in probes] == [2, 2, 2]  # once per strategy, not per caller
    assert len(answers) == 3
    assert all(status == 200 for status, _ in answers)
    assert answers[0][1] == answers[1][1] == answers[2][1]
    assert answers[0][1]["timeout"] == 20.0


async def test_a_new_performance_request_after_a_finished_run_measures_again() -> None:
    probe = Probe()
    app, _ = make_app({"gpt-4": [adapter("openai", probe)]})
    async with serving(app) as client:
        await get_json(client, "/v1/health/performance")
        await get_json(client, "/v1/health/performance")
    assert probe.calls == 4


async def test_a_performance_caller_hanging_up_leaves_the_shared_run_to_the_others() -> None:
    gate = trio.Event()
    probe = Probe(gate=gate)
    app, _ = make_app({"gpt-4": [adapter("openai", probe)]})
    hang_up = trio.Event()
    answers: list[tuple[int, dict[str, Any]]] = []

    async def stay() -> None:
        answers.append(await get_json(client, "/v1/health/performance"))

    async with serving(app) as client, trio.open_nursery() as nursery:
        nursery.start_soon(
            request_then_disconnect, app, "/v1/health/performance", "", probe.entered, hang_up
        )
        await probe.entered.wait()
        nursery.start_soon(stay)
        await trio.testing.wait_all_tasks_blocked()
        hang_up.set()
        await trio.testing.wait_all_tasks_blocked()
        assert not probe.cancelled.is_set()
        gate.set()
    assert not probe.cancelled.is_set()
    assert answers and answers[0][0] == 200
    assert probe.calls == 2


async def test_the_shared_run_is_cancelled_when_every_caller_has_hung_up() -> None:
    probe = Probe(gate=trio.Event())  # never opened: only cancellation ends the run
    app, _ = make_app({"gpt-4": [adapter("openai", probe)]})
    hang_up = trio.Event()
    sent: list[list[dict[str, Any]]] = []

    async def caller() -> None:
        sent.append(
            await request_then_disconnect(
                app, "/v1/health/performance", "timeout=60", probe.entered, hang_up
            )
        )

    async with serving(app):
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(caller)
                nursery.start_soon(caller)
                await probe.entered.wait()
                await trio.testing.wait_all_tasks_blocked()
                hang_up.set()
            await probe.cancelled.wait()
            await app.extensions[EXTENSION_KEY].wait_idle()
        assert app.extensions[EXTENSION_KEY].performance.statistics().runs_in_flight == 0
    assert sent == [[], []]  # nobody was answered: nobody was there
    assert probe.calls == 1


async def test_shutdown_cancels_a_performance_run_before_closing_the_clients() -> None:
    probe = Probe(gate=trio.Event())
    app, manager = make_app({"gpt-4": [adapter("openai", probe)]})
    hang_up = trio.Event()
    with trio.fail_after(5):
        async with trio.open_nursery() as outer:
            async with serving(app):
                outer.start_soon(
                    request_then_disconnect,
                    app,
                    "/v1/health/performance",
                    "timeout=60",
                    probe.entered,
                    hang_up,
                )
                await probe.entered.wait()
            # Shutdown is done: the run was cancelled before the clients closed.
            assert probe.cancelled.is_set()
            assert not manager.is_open
            hang_up.set()


async def test_a_failed_performance_run_is_a_500_and_the_app_keeps_serving() -> None:
    app, manager = make_app(standard_fleet())
    break_checker(manager, "check_all_models_sequential", "sequential pass exploded")
    async with serving(app) as client:
        status, body = await get_json(client, "/v1/health/performance")
        assert (status, body["error"]) == (500, "internal_error")
        assert "exploded" not in body["message"]
        status, _ = await get_json(client, "/v1/health/")
        assert status == 200


async def test_performance_needs_the_app_serving_even_with_an_open_manager() -> None:
    app, manager = make_app(standard_fleet())
    async with manager:
        status, body = await get_json(app.test_client(), "/v1/health/performance")
    assert (status, body["error"]) == (503, "not_ready")


def report_of(results: Sequence[ProbeResult], execution_time: float) -> HealthReport:
    models: dict[str, dict[str, ProbeResult]] = {}
    for result in results:
        models.setdefault(result.model, {})[result.provider] = result
    return HealthReport(
        models={name: ModelReport(name, found) for name, found in models.items()},
        timestamp=1_700_000_000.0,
        execution_time=execution_time,
        concurrent=True,
        timeout=30.0,
    )


def result(provider: str, status: ProbeStatus, failure: FailureKind | None = None) -> ProbeResult:
    return probe_result(
        status, provider=provider, failure=failure, adapter="X", latency_ms=None, checked_at=0.0
    )


def test_performance_metrics_math_and_result_counts() -> None:
    concurrent = report_of(
        [result("a", ProbeStatus.HEALTHY), result("b", ProbeStatus.HEALTHY)], 2.45
    )
    sequential = report_of(
        [
            result("a", ProbeStatus.HEALTHY),
            result("b", ProbeStatus.TIMEOUT, FailureKind.NOT_STARTED),
        ],
        8.67,
    )
    body = performance_body(concurrent, sequential, timestamp=1.0, timeout=30.0)
    assert body["performance_metrics"] == {
        "concurrent_time": 2.45,
        "sequential_time": 8.67,
        "speedup": 3.54,
        "improvement_percent": 71.7,
        "total_models": 1,
        "total_adapters": 2,
    }
    assert body["concurrent_result_count"] == 2
    assert body["sequential_result_count"] == 1  # not_started reached no verdict
    assert body["agreement"]["mismatches"] == [
        {"model": "gpt-4", "provider": "b", "concurrent": "healthy", "sequential": "not_started"}
    ]


def test_performance_metrics_are_null_when_a_run_took_no_time() -> None:
    report = report_of([result("a", ProbeStatus.HEALTHY)], 0.0)
    metrics = performance_body(report, report, timestamp=1.0, timeout=1.0)["performance_metrics"]
    assert metrics["speedup"] is None
    assert metrics["improvement_percent"] is None
    json.dumps(metrics, allow_nan=False)


# -- disconnects -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/v1/health/", "timeout=60"),
        ("/v1/health/", "timeout=60&use_concurrent=false"),
        ("/v1/health/models", "timeout=60"),
        ("/v1/health/models/gpt-4", "timeout=60"),
    ],
)
async def test_a_client_hanging_up_cancels_the_probes_it_started(path: str, query: str) -> None:
    probe = Probe(gate=trio.Event())  # hangs until cancelled
    # No finished runs kept for anonymous callers: nobody else wants this run.
    app, _ = make_app(
        {"gpt-4": [adapter("openai", probe)]},
        checks={"adapter_timeout": 60},
        server={"anonymous_min_interval": 0},
    )
    hang_up = trio.Event()
    hang_up.set()
    async with serving(app):
        with trio.fail_after(5):
            sent = await request_then_disconnect(app, path, query, probe.entered, hang_up)
            await probe.cancelled.wait()
    assert sent == []


async def test_anonymous_clients_hanging_up_in_a_loop_cost_one_run() -> None:
    # Finished runs answer anonymous callers for anonymous_min_interval: a
    # deserted run goes on to its end, so hanging up does not restart it.
    gate = trio.Event()
    probe = Probe(gate=gate)
    app, _ = make_app({"gpt-4": [adapter("openai", probe)]}, checks={"adapter_timeout": 60})
    state = app.extensions[EXTENSION_KEY]
    async with serving(app) as client:
        with trio.fail_after(GUARD):
            for _ in range(3):  # connect, ask, hang up
                hang_up = trio.Event()
                hang_up.set()
                await request_then_disconnect(app, "/v1/health/", "timeout=60", probe.entered, hang_up)
            assert state.health_runs.statistics().runs_started == 1
            assert not probe.cancelled.is_set()
            gate.set()  # the deserted run finishes ...
            await state.wait_idle()
            status, body = await get_json(client, "/v1/health/?timeout=60")  # ... and answers
    assert (status, body["status"]) == (200, "healthy")
    assert body["details"]["gpt-4"]["openai"]["cached"] is True
    assert probe.calls == 1


# -- liveness, readiness, lifecycle ------------------------------------------------------------


async def test_livez_is_ok_without_probing() -> None:
    probe = Probe()
    app, _ = make_app({"gpt-4": [adapter("openai", probe)]})
    async with serving(app) as client:
        status, body = await get_json(client, "/livez")
    assert (status, body) == (200, {"status": "ok"})
    assert probe.calls == 0


async def test_readyz_counts_models_and_adapters_while_serving() -> None:
    probe = Probe()
    fleet: dict[str, list[Adapter]] = {
        "gpt-4": [adapter("openai", probe), ok("azure")],
        "llama3:latest": [ok("ollama")],
    }
    app, _ = make_app(fleet)
    async with serving(app) as client:
        status, body = await get_json(client, "/readyz")
    assert (status, body) == (200, {"status": "ready", "models": 2, "adapters": 3})
    assert probe.calls == 0


async def test_not_ready_before_startup_and_checks_refuse_politely() -> None:
    app, _ = make_app(standard_fleet())
    client = app.test_client()  # no startup: the clients never opened
    status, body = await get_json(client, "/readyz")
    assert status == 503
    assert body["status"] == "not_ready"
    assert "reason" in body
    for path in CHECK_PATHS:
        status, body = await get_json(client, path)
        assert status == 503
        assert body["error"] == "not_ready"
    status, body = await get_json(client, "/livez")
    assert status == 200


async def test_the_app_opens_its_manager_while_serving_and_closes_it_after() -> None:
    app, manager = make_app(standard_fleet())
    assert get_manager(app) is manager
    assert not manager.is_open
    async with serving(app):
        assert manager.is_open
    assert not manager.is_open


async def test_a_manager_opened_by_its_owner_stays_open_after_the_app_stops() -> None:
    app, manager = make_app(standard_fleet())
    async with manager:
        async with serving(app) as client:
            status, _ = await get_json(client, "/v1/health/")
            assert status == 200
        assert manager.is_open
    assert not manager.is_open


async def test_create_app_builds_its_own_manager_from_the_config() -> None:
    config = parse_config(
        {
            "models": [
                {
                    "name": "gpt-4",
                    "providers": [
                        {
                            "name": "local",
                            "type": "openai-compatible",
                            "base_url": "http://127.0.0.1:9",
                        }
                    ],
                }
            ]
        },
        env={},
    )
    app = create_app(config)
    manager = get_manager(app)
    assert manager.get_available_models() == ["gpt-4"]
    async with serving(app) as client:
        assert manager.is_open
        status, body = await get_json(client, "/readyz")
    assert (status, body["models"], body["adapters"]) == (200, 1, 1)
    assert not manager.is_open


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/nope", "/static/nope.js", "/static/..%2Fapp.py", "/v1/health/nope", "/v1/healthz", "/livez/extra", "/v1//health/"]
)
async def test_unknown_paths_are_404_json(path: str) -> None:
    app, _ = make_app(standard_fleet())
    async with serving(app) as client:
        status, body = await get_json(client, path)
    assert status == 404
    assert set(body) == {"error", "message", "endpoints"}
    assert body["error"] == "not_found"
    assert "GET /v1/health/" in body["endpoints"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/v1/health/", "/v1/health/models/gpt-4", "/livez"])
async def test_wrong_methods_are_405_json_with_allow(method: str, path: str) -> None:
    app, _ = make_app(standard_fleet())
    async with serving(app) as client:
        response = await getattr(client, method.lower())(path)
        body = await response.get_json()
    assert response.status_code == 405
    assert response.content_type == "application/json"
    assert body["error"] == "method_not_allowed"
    assert body["allowed"] == ["GET", "HEAD"]
    assert response.headers["Allow"] == "GET, HEAD"


async def test_head_works_where_get_does() -> None:
    app, _ = make_app(standard_fleet())
    async with serving(app) as client:
        for path in GET_ROUTES:
            get = await client.get(path)
            head = await client.head(path)
            assert head.status_code == get.status_code, path
            assert head.headers["Content-Type"] == get.headers["Content-Type"], path


async def test_an_unexpected_error_is_a_500_json_without_details() -> None:
    app, manager = make_app(standard_fleet())
    break_checker(manager, "check_all_models_with_timeout", "boom: api_key=plain-secret-123")
    async with serving(app) as client:
        response = await client.get("/v1/health/")
        text = await response.get_data(as_text=True)
    assert response.status_code == 500
    body = json.loads(text)
    assert set(body) == {"error", "message", "error_id"}
    assert body["error"] == "internal_error"
    assert body["error_id"] in body["message"]
    assert "plain-secret" not in text  # not even redacted: no detail at all
    assert "Traceback" not in text
    assert "RuntimeError" not in text

"""Tags as ``?tags=``/``?exclude=`` filters on the routes, and in single-flight keys.

In-memory adapters through Quart's test client, as in ``tests/api/test_app.py``;
the tags themselves (config, ``AdapterManager.select``): tests/engine/test_tags.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from werkzeug.datastructures import MultiDict

from service.api.app import EXTENSION_KEY
from service.api.params import ApiError, CheckParams, parse_check_params
from tests.support.app import Fleet, get_json, make_config, serving, tagged_app
from tests.support.fakes import Probe

# -- ?tags= and ?exclude= on the GET routes ----------------------------------------------


async def test_tags_keep_adapters_having_all_of_them_and_only_those_are_probed() -> None:
    fleet = Fleet()
    async with serving(fleet.app) as client:
        status, body = await get_json(client, "/v1/health/?tags=eu,cloud")
    assert status == 200
    assert body["models"] == {
        "gpt-4": {
            "status": "healthy",
            "providers": {"openai": "healthy"},
            "healthy_providers": 1,
            "total_providers": 1,
        }
    }
    assert (body["healthy_models"], body["total_models"]) == (1, 1)
    assert list(body["details"]) == ["gpt-4"]
    assert fleet.calls() == [1, 0, 0, 0]


async def test_exclude_drops_adapters_having_any_of_them() -> None:
    fleet = Fleet()
    async with serving(fleet.app) as client:
        status, body = await get_json(client, "/v1/health/?exclude=us,eu")
    assert status == 200
    assert {m: list(r["providers"]) for m, r in body["models"].items()} == {"llama3": ["ollama"]}
    assert fleet.calls() == [0, 0, 1, 0]


async def test_tags_and_exclude_combine_and_the_status_code_follows_the_subset() -> None:
    fleet = Fleet()
    async with serving(fleet.app) as client:
        status, body = await get_json(client, "/v1/health/?tags=cloud&exclude=eu")
        assert status == 503  # only claude is left, and it is down
        assert list(body["models"]) == ["claude"]
        status, body = await get_json(client, "/v1/health/?tags=local&exclude=cloud")
        assert status == 200
        assert {m: list(r["providers"]) for m, r in body["models"].items()} == {
            "gpt-4": ["ollama"],
            "llama3": ["ollama"],
        }
        status, body = await get_json(client, "/v1/health/")  # no filter: everything
        assert status == 200 and body["total_models"] == 3 and body["status"] == "degraded"


async def test_the_models_route_filters_the_same_way() -> None:
    fleet = Fleet()
    async with serving(fleet.app) as client:
        status, body = await get_json(client, "/v1/health/models?tags=local&details=false")
    assert status == 200
    assert [(m["model"], list(m["providers"])) for m in body["models"]] == [
        ("gpt-4", ["ollama"]),
        ("llama3", ["ollama"]),
    ]
    assert body["total_models"] == 2


async def test_the_one_model_route_filters_its_providers() -> None:
    fleet = Fleet()
    async with serving(fleet.app) as client:
        status, body = await get_json(client, "/v1/health/models/gpt-4?exclude=local")
        assert status == 200
        assert body["providers"] == {"openai": "healthy"}
        assert list(body["details"]) == ["openai"]
        status, body = await get_json(client, "/v1/health/models/claude?tags=local")
        assert status == 404
        assert body["error"] == "empty_selection"
        assert body["selection"] == {"models": ["claude"], "tags": ["local"], "exclude": []}
        status, body = await get_json(client, "/v1/health/models/gpt-5?tags=local")
        assert status == 404 and body["error"] == "unknown_model"
    assert fleet.calls() == [1, 0, 0, 0]


@pytest.mark.parametrize(
    "path", ["/v1/health/", "/v1/health/models", "/v1/health/models/gpt-4"]
)
async def test_nothing_left_is_a_404_naming_the_filters_and_probes_nothing(path: str) -> None:
    fleet = Fleet()
    async with serving(fleet.app) as client:
        status, body = await get_json(client, f"{path}?tags=eu&exclude=cloud,local")
    assert status == 404
    assert body["error"] == "empty_selection"
    assert body["selection"]["tags"] == ["eu"]
    assert body["selection"]["exclude"] == ["cloud", "local"]
    assert "message" in body
    assert fleet.calls() == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("tags=", "tags"),
        ("tags=eu,", "tags"),
        ("tags=a%20b", "tags"),
        ("exclude=%C3%A9", "exclude"),
        ("exclude=a;b", "exclude"),
        ("tags=eu&tags=cloud", "tags"),
        ("tags=" + ",".join(f"t{i}" for i in range(33)), "tags"),
    ],
)
@pytest.mark.parametrize(
    "path", ["/v1/health/", "/v1/health/models", "/v1/health/models/gpt-4"]
)
async def test_bad_filter_values_are_400_naming_the_parameter(
    path: str, query: str, parameter: str
) -> None:
    fleet = Fleet()
    async with serving(fleet.app) as client:
        status, body = await get_json(client, f"{path}?{query}")
    assert status == 400
    assert body["error"] == "invalid_parameter"
    assert body["parameter"] == parameter
    assert "comma-separated list" in body["accepted"]
    assert fleet.calls() == [0, 0, 0, 0]


def test_the_parser_reads_filters_trimming_spaces() -> None:
    config = make_config()
    params = parse_check_params(
        MultiDict({"tags": " eu , cloud", "exclude": "gpu:a100"}), config, default_timeout=5
    )
    assert params == CheckParams(
        timeout=5,
        use_concurrent=True,
        details=True,
        tags=frozenset({"eu", "cloud"}),
        exclude=frozenset({"gpu:a100"}),
    )
    with pytest.raises(ApiError) as info:
        parse_check_params(MultiDict({"exclude": "a b"}), config, default_timeout=5)
    assert info.value.status == 400


# -- single-flight keys ------------------------------------------------------------------


async def test_different_filters_never_share_a_run_and_identical_ones_do() -> None:
    gate = trio.Event()
    openai, ollama = Probe(gate=gate), Probe(gate=gate)
    app = tagged_app(
        {"gpt-4": [("openai", openai, ["cloud"]), ("ollama", ollama, ["local"])]}
    )
    answers: dict[str, list[dict[str, Any]]] = {}

    async def call(query: str) -> None:
        _, body = await get_json(client, f"/v1/health/?{query}")
        answers.setdefault(query, []).append(body)

    queries = ["tags=cloud", "tags=cloud", "exclude=local", "tags=local", "tags=cloud,local"]
    async with serving(app) as client, trio.open_nursery() as nursery:
        for query in queries:
            nursery.start_soon(call, query)
        await trio.testing.wait_all_tasks_blocked()
        stats = app.extensions[EXTENSION_KEY].health_runs.statistics()
        # tags=cloud twice: one run; exclude=local selects the same adapters
        # but is another filter, so another run; tags=cloud,local is empty.
        assert (stats.runs_started, stats.callers_joined) == (3, 1)
        gate.set()
    assert openai.calls == 2 and ollama.calls == 1
    assert answers["tags=cloud"][0] == answers["tags=cloud"][1]
    assert list(answers["tags=local"][0]["models"]["gpt-4"]["providers"]) == ["ollama"]
    assert answers["tags=cloud,local"][0]["error"] == "empty_selection"


async def test_the_one_model_route_keys_its_runs_by_filter_too() -> None:
    gate = trio.Event()
    openai, ollama = Probe(gate=gate), Probe(gate=gate)
    app = tagged_app(
        {"gpt-4": [("openai", openai, ["cloud"]), ("ollama", ollama, ["local"])]}
    )
    async with serving(app) as client, trio.open_nursery() as nursery:
        for query in ["tags=cloud", "tags=cloud", "tags=local", ""]:
            nursery.start_soon(get_json, client, f"/v1/health/models/gpt-4?{query}")
        await trio.testing.wait_all_tasks_blocked()
        stats = app.extensions[EXTENSION_KEY].model_runs.statistics()
        assert (stats.runs_started, stats.callers_joined) == (3, 1)
        gate.set()
    assert (openai.calls, ollama.calls) == (2, 2)

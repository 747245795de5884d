"""``POST /v1/health/batch``: a selection in a JSON body, the ``/v1/health/`` report for it.

In-memory adapters through Quart's test client (as in ``tests/api/test_app.py``),
and one end-to-end run over hypercorn and the simulator.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing
from quart.typing import TestClientProtocol as QuartClient

from service.api.app import EXTENSION_KEY
from tests.support.app import V1_TOP_KEYS, Fleet, serving, tagged_app
from tests.support.fakes import Probe
from tests.support.served import GUARD, PROVIDERS, running_service

TOKEN = "rhtesttoken-batch-0a1b2c3d4e"
JSON = {"Content-Type": "application/json"}


async def post(
    client: QuartClient,
    body: Any,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if raw is None else raw
    response = await client.post("/v1/health/batch", data=data, headers=headers or JSON)
    assert response.content_type == "application/json"
    answer = await response.get_json()
    assert isinstance(answer, dict)
    return response.status_code, answer


def providers_of(body: dict[str, Any]) -> dict[str, list[str]]:
    return {model: list(report["providers"]) for model, report in body["models"].items()}


# -- happy paths ----------------------------------------------------------------------------


async def test_an_empty_body_checks_everything_with_the_get_report_shape() -> None:
    fleet = Fleet()
    async with serving(fleet.app) as client:
        status, body = await post(client, {})
        get_response = await client.get("/v1/health/")
        get_body = await get_response.get_json()
    assert status == get_response.status_code == 200
    assert body["status"] == get_body["status"] == "degraded"
    assert set(body) >= V1_TOP_KEYS
    assert list(body) == list(get_body)
    assert providers_of(body) == providers_of(get_body)


async def test_models_providers_and_tags_select_the_subset_and_only_it_is_probed() -> None:
    fleet = Fleet()
    async with serving(fleet.app) as client:
        status, body = await post(
            client,
            {
                "models": ["gpt-4", "llama3"],
                "providers": ["ollama"],
                "exclude": ["eu"],
                "timeout": 7,
                "use_concurrent": False,
            },
        )
    assert status == 200
    assert providers_of(body) == {"llama3": ["ollama"]}
    assert (body["total_models"], body["timeout"], body["concurrent"]) == (1, 7.0, False)
    assert list(body["details"]) == ["llama3"]
    assert fleet.calls() == [0, 0, 1, 0]


async def test_an_unhealthy_subset_is_503_and_details_false_leaves_details_out() -> None:
    fleet = Fleet()
    async with serving(fleet.app) as client:
        status, body = await post(client, {"tags": ["us"], "details": False})
    assert status == 503
    assert providers_of(body) == {"claude": ["anthropic"]}
    assert "details" not in body


async def test_content_type_parameters_are_fine() -> None:
    fleet = Fleet()
    async with serving(fleet.app) as client:
        status, body = await post(
            client,
            {"models": ["llama3"]},
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
    assert status == 200 and providers_of(body) == {"llama3": ["ollama"]}


# -- selections that select nothing ----------------------------------------------------------


async def test_unknown_models_are_404_listing_the_configured_ones() -> None:
    fleet = Fleet()
    async with serving(fleet.app) as client:
        status, body = await post(client, {"models": ["gpt-4", "gpt-5"]})
    assert status == 404
    assert body["error"] == "unknown_model"
    assert "'gpt-5'" in body["message"] and "'gpt-4'" not in body["message"]
    assert body["available"] == ["gpt-4", "llama3", "claude"]
    assert fleet.calls() == [0, 0, 0, 0]


async def test_unknown_providers_are_404_listing_the_configured_ones() -> None:
    fleet = Fleet()
    async with serving(fleet.app) as client:
        status, body = await post(client, {"providers": ["opneai"]})
    assert status == 404
    assert body["error"] == "unknown_provider"
    assert body["available"] == ["anthropic", "ollama", "openai"]


async def test_an_empty_selection_is_a_404_naming_it() -> None:
    fleet = Fleet()
    async with serving(fleet.app) as client:
        status, body = await post(client, {"models": ["claude"], "tags": ["local"]})
    assert status == 404
    assert body["error"] == "empty_selection"
    assert body["selection"] == {"models": ["claude"], "tags": ["local"], "exclude": []}


# -- bad bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field", "says"),
    [
        (b"", "body", "not valid JSON"),
        (b"{not json", "body", "not valid JSON"),
        (b"\xff\xfe{}", "body", "not UTF-8"),
        (b'{"timeout": NaN}', "body", "not valid JSON"),
        (b'{"timeout": 1, "timeout": 2}', "body", "appears twice"),
        (b"[" * 100_000 + b"]" * 100_000, "body", "larger than 64 KB"),
        (b"[" * 20_000 + b"]" * 20_000, "body", "not valid JSON"),
        (b"[]", "body", "must be a JSON object, got a list"),
        (b'"models"', "body", "must be a JSON object, got a string"),
        (b"null", "body", "must be a JSON object, got null"),
        (b'{"model": ["gpt-4"]}', "model", "did you mean 'models'?"),
        (b'{"strategy": "x"}', "strategy", "unknown field 'strategy'"),
        (b'{"models": "gpt-4"}', "models", "must be a non-empty list of model names"),
        (b'{"models": []}', "models", "got an empty list"),
        (b'{"models": [""]}', "models", "'' is not valid"),
        (b'{"models": [1]}', "models", "a number is not valid"),
        (b'{"providers": {}}', "providers", "got an object"),
        (b'{"providers": [null]}', "providers", "null is not valid"),
        (b'{"tags": []}', "tags", "got an empty list"),
        (b'{"tags": ["a b"]}', "tags", "'a b' is not valid"),
        (b'{"exclude": "local"}', "exclude", "got a string"),
        (b'{"exclude": ["ok", "n\xc3\xb6"]}', "exclude", "is not valid"),
        (b'{"tags": [' + b",".join(b'"t%d"' % i for i in range(33)) + b"]}", "tags", "at most 32"),
        (b'{"timeout": "5"}', "timeout", "got a string"),
        (b'{"timeout": true}', "timeout", "got True"),
        (b'{"timeout": 0}', "timeout", "got 0"),
        (b'{"timeout": -1}', "timeout", "got -1"),
        (b'{"timeout": 121}', "timeout", "<= 120"),
        (b'{"timeout": 1e999}', "timeout", "got inf"),
        (b'{"timeout": ' + b"9" * 400 + b"}", "timeout", "> 0 and <= 120"),
        (b'{"use_concurrent": "yes"}', "use_concurrent", "must be true or false, got a string"),
        (b'{"details": 1}', "details", "must be true or false, got a number"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field_and_the_accepted_form(
    raw: bytes, field: str, says: str
) -> None:
    fleet = Fleet()
    async with serving(fleet.app) as client:
        status, body = await post(client, None, raw=raw)
    assert status == 400, body
    assert body["error"] == "invalid_body"
    assert body["field"] == field
    assert says in body["message"]
    assert body["accepted"]
    assert fleet.calls() == [0, 0, 0, 0]


async def test_a_body_just_under_the_limit_is_read() -> None:
    fleet = Fleet()
    raw = b'{"models": ["llama3"]' + b" " * (64 * 1024 - 30) + b"}"
    assert len(raw) <= 64 * 1024
    async with serving(fleet.app) as client:
        status, body = await post(client, None, raw=raw)
    assert status == 200 and providers_of(body) == {"llama3": ["ollama"]}


@pytest.mark.parametrize(
    "headers", [{}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}]
)
async def test_a_wrong_content_type_is_415(headers: dict[str, str]) -> None:
    fleet = Fleet()
    async with serving(fleet.app) as client:
        response = await client.post("/v1/health/batch", data=b"{}", headers=headers)
        body = await response.get_json()
    assert response.status_code == 415
    assert body["error"] == "unsupported_media_type"
    assert body["accepted"] == "application/json"
    assert fleet.calls() == [0, 0, 0, 0]


async def test_get_on_the_batch_route_is_405_allowing_post() -> None:
    fleet = Fleet()
    async with serving(fleet.app) as client:
        response = await client.get("/v1/health/batch")
        body = await response.get_json()
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert body["allowed"] == ["POST"]


# -- single flight -----------------------------------------------------------------------------


async def test_batches_share_runs_by_selection_and_with_the_get_route() -> None:
    gate = trio.Event()
    openai, ollama = Probe(gate=gate), Probe(gate=gate)
    app = tagged_app({"gpt-4": [("openai", openai, ["cloud"]), ("ollama", ollama, ["local"])]})
    answers: list[tuple[int, dict[str, Any]]] = []

    async def call(body: dict[str, Any]) -> None:
        answers.append(await post(client, body))

    async def get_all() -> None:
        response = await client.get("/v1/health/")
        answers.append((response.status_code, await response.get_json()))

    async with serving(app) as client, trio.open_nursery() as nursery:
        nursery.start_soon(call, {"providers": ["openai", "ollama"]})
        nursery.start_soon(call, {"providers": ["ollama", "openai"]})  # same selection
        nursery.start_soon(call, {"models": ["gpt-4"]})  # another selection
        nursery.start_soon(call, {"tags": ["cloud"]})
        nursery.start_soon(call, {"tags": ["cloud"], "details": False})  # details: same run
        # Another budget, the same selection: one run whatever the timeout.
        nursery.start_soon(call, {"tags": ["cloud"], "timeout": 9})
        nursery.start_soon(call, {})
        nursery.start_soon(get_all)  # the same selection as {}
        await trio.testing.wait_all_tasks_blocked()
        stats = app.extensions[EXTENSION_KEY].health_runs.statistics()
        assert (stats.runs_started, stats.callers_joined) == (4, 4)
        gate.set()
    assert all(status == 200 for status, _ in answers)
    assert (openai.calls, ollama.calls) == (4, 3)


# -- auth -----------------------------------------------------------------------------------------


async def test_with_auth_details_need_the_token_and_a_wrong_one_is_401() -> None:
    fleet = Fleet()
    app = tagged_app(
        {"gpt-4": [("openai", fleet.openai, ["cloud"])]}, server={"auth_token": TOKEN}
    )
    async with serving(app) as client:
        anonymous = await post(client, {"tags": ["cloud"]})
        granted = await post(
            client, {"tags": ["cloud"]}, headers={**JSON, "Authorization": f"Bearer {TOKEN}"}
        )
        response = await client.post(
            "/v1/health/batch",
            data=b"{}",
            headers={**JSON, "Authorization": "Bearer rhtesttoken-not-the-right-one"},
        )
        wrong = await response.get_json()
    assert anonymous[0] == granted[0] == 200
    assert "details" not in anonymous[1] and "fallback_reason" not in anonymous[1]
    assert list(granted[1]["details"]) == ["gpt-4"]
    assert response.status_code == 401
    assert wrong["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_wrong_token_is_refused_before_the_body_is_judged() -> None:
    fleet = Fleet()
    app = tagged_app({"gpt-4": [("openai", fleet.openai, [])]}, server={"auth_token": TOKEN})
    async with serving(app) as client:
        response = await client.post(
            "/v1/health/batch",
            data=b"not json",
            headers={**JSON, "Authorization": "Bearer rhtesttoken-not-the-right-one"},
        )
    assert response.status_code == 401


# -- end to end -------------------------------------------------------------------------------------


async def test_batch_over_a_real_server_probes_only_the_selected_providers() -> None:
    async with running_service() as service:
        response = await service.client.post(
            "/v1/health/batch",
            json={"models": ["gpt-4", "claude-3-haiku"], "providers": ["openai", "anthropic"]},
        )
        with trio.fail_after(GUARD):
            await service.sim.wait_idle()
        requests = {name: service.sim.stats(name).requests for name in PROVIDERS}
        bad = await service.client.post(
            "/v1/health/batch", content=b'{"models": []}', headers=JSON
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert providers_of(body) == {"gpt-4": ["openai"], "claude-3-haiku": ["anthropic"]}
    assert body["status"] == "healthy"
    assert requests == {"openai": 1, "openai-backup": 0, "anthropic": 1, "ollama": 0}
    assert bad.status_code == 400
    assert bad.json()["field"] == "models"

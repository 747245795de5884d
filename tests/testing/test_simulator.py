"""Tests for the simulated provider upstream (service/testing/simulator.py).

Everything goes over real loopback sockets with a real ``httpx.AsyncClient``,
so the wire formats asserted here are the ones adapters will see. Latencies are
zero or a few milliseconds on the real clock; nothing sleeps to wait for the
server: waits go through ``Simulator.wait_until`` / ``wait_idle``.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from service.testing.simulator import (
    MODES,
    Behavior,
    ProviderStats,
    SimProvider,
    Simulator,
    UnknownProviderError,
    demo_providers,
    fleet_providers,
    providers_from_spec,
)
from tests.support import ROOT

OPENAI_KEY = "sk-sim-openai"
AZURE_KEY = "sk-sim-azure"
ANTHROPIC_KEY = "sk-sim-anthropic"
VOLC_KEY = "sk-sim-volcengine"
GEMINI_KEY = "sk-sim-gemini"
COMPAT_KEY = "sk-sim-compat-keyed"
MODAL_KEY = "sk-sim-modal-0123456789"


def fast() -> Behavior:
    return Behavior(latency=0.0)


def fleet() -> list[SimProvider]:
    return [
        SimProvider("openai", "openai", OPENAI_KEY, ["gpt-4", "gpt-4o-mini"], fast()),
        SimProvider("azure", "azure", AZURE_KEY, ["gpt-4"], Behavior(latency=0.0)),
        SimProvider(
            "anthropic",
            "anthropic",
            ANTHROPIC_KEY,
            ["claude-3-opus", "claude-3-haiku"],
            Behavior(latency=0.0),
        ),
        SimProvider("volcengine", "volcengine", VOLC_KEY, ["doubao-pro"], Behavior(latency=0.0)),
        SimProvider("gemini", "gemini", GEMINI_KEY, ["gemini-1.5-pro"], Behavior(latency=0.0)),
        SimProvider("ollama", "ollama", None, ["llama3:latest"], Behavior(latency=0.0)),
        SimProvider("compat", "openai-compatible", None, ["qwen2-72b"], Behavior(latency=0.0)),
        SimProvider(
            "compat-keyed",
            "openai-compatible",
            COMPAT_KEY,
            ["deepseek-chat"],
            Behavior(latency=0.0),
        ),
        # The one whose mode the mode tests switch around.
        SimProvider("modal", "openai", MODAL_KEY, ["sim-model"], Behavior(latency=0.01)),
    ]


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    return fleet()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def json_of(response: httpx.Response) -> Any:
    assert response.headers["content-type"] == "application/json"
    return response.json()


MODAL = bearer(MODAL_KEY)
PING = [{"role": "user", "content": "ping"}]


async def modal_get(sim: Simulator, client: httpx.AsyncClient) -> httpx.Response:
    return await client.get(sim.base_url("modal") + "/models", headers=MODAL)


# ---------------------------------------------------------------------------
# Per-kind wire formats
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suffix", "headers"),
    [
        ("openai", "/openai/v1", bearer(OPENAI_KEY)),
        ("volcengine", "/volcengine/api/v3", bearer(VOLC_KEY)),
        ("compat", "/compat/v1", {}),
        ("compat-keyed", "/compat-keyed/v1", bearer(COMPAT_KEY)),
    ],
)
async def test_openai_like_list_and_completion(
    sim: Simulator, client: httpx.AsyncClient, name: str, suffix: str, headers: dict[str, str]
) -> None:
    base = sim.base_url(name)
    assert base == sim.root_url + suffix
    model = sim.provider(name).models[0]

    r = await client.get(base + "/models", headers=headers)
    assert r.status_code == 200
    listed = json_of(r)
    assert listed["object"] == "list"
    assert listed["data"][0] == {
        "id": model,
        "object": "model",
        "created": 1700000000,
        "owned_by": "system",
    }

    r = await client.post(
        base + "/chat/completions",
        headers=headers,
        json={"model": model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1},
    )
    assert r.status_code == 200
    body = json_of(r)
    assert body["object"] == "chat.completion"
    assert body["model"] == model
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "p"}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    assert isinstance(body["created"], int)

    r = await client.post(
        base + "/chat/completions", headers=headers, json={"model": "nope", "messages": []}
    )
    assert r.status_code == 404
    assert json_of(r) == {
        "error": {
            "message": "The model `nope` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }


async def test_openai_get_model(sim: Simulator, client: httpx.AsyncClient) -> None:
    base, h = sim.base_url("openai"), bearer(OPENAI_KEY)
    r = await client.get(base + "/models/gpt-4o-mini", headers=h)
    assert r.status_code == 200
    assert json_of(r)["id"] == "gpt-4o-mini"
    r = await client.get(base + "/models/gpt-5", headers=h)
    assert r.status_code == 404
    assert json_of(r)["error"]["code"] == "model_not_found"


async def test_azure_routes(sim: Simulator, client: httpx.AsyncClient) -> None:
    base = sim.base_url("azure")
    assert base == sim.root_url + "/azure"
    h = {"api-key": AZURE_KEY}
    q = {"api-version": "2024-02-01"}

    r = await client.get(base + "/openai/models", headers=h, params=q)
    assert r.status_code == 200
    assert json_of(r) == {
        "data": [{"id": "gpt-4", "object": "model", "status": "succeeded"}],
        "object": "list",
    }

    url = base + "/openai/deployments/gpt-4/chat/completions"
    r = await client.post(url, headers=h, params=q, json={"messages": PING, "max_tokens": 1})
    assert r.status_code == 200
    body = json_of(r)
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4"

    url = base + "/openai/deployments/gpt-5/chat/completions"
    r = await client.post(url, headers=h, params=q, json={"messages": []})
    assert r.status_code == 404
    assert json_of(r) == {
        "error": {
            "code": "DeploymentNotFound",
            "message": "The API deployment for this resource does not exist.",
        }
    }


async def test_azure_requires_api_version(sim: Simulator, client: httpx.AsyncClient) -> None:
    base = sim.base_url("azure")
    for path in ("/openai/models", "/openai/deployments/gpt-4/chat/completions"):
        method = "GET" if path.endswith("models") else "POST"
        r = await client.request(method, base + path, headers={"api-key": AZURE_KEY}, json={})
        assert r.status_code == 404
        assert json_of(r) == {"error": {"code": "404", "message": "Resource not found"}}


async def test_anthropic_routes(sim: Simulator, client: httpx.AsyncClient) -> None:
    base = sim.base_url("anthropic")
    assert base == sim.root_url + "/anthropic"
    h = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}

    r = await client.get(base + "/v1/models", headers=h)
    assert r.status_code == 200
    body = json_of(r)
    assert body["data"][0] == {
        "type": "model",
        "id": "claude-3-opus",
        "display_name": "claude-3-opus",
        "created_at": "2024-02-29T00:00:00Z",
    }
    assert body["has_more"] is False
    assert (body["first_id"], body["last_id"]) == ("claude-3-opus", "claude-3-haiku")

    r = await client.get(base + "/v1/models", headers=h, params={"limit": "1"})
    body = json_of(r)
    assert [m["id"] for m in body["data"]] == ["claude-3-opus"]
    assert body["has_more"] is True
    assert body["last_id"] == "claude-3-opus"

    payload = {
        "model": "claude-3-haiku",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "hi"}],
    }
    r = await client.post(base + "/v1/messages", headers=h, json=payload)
    assert r.status_code == 200
    assert json_of(r) == {
        "id": "msg_sim",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-haiku",
        "content": [{"type": "text", "text": "p"}],
        "stop_reason": "max_tokens",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
        },
    }

    r = await client.post(base + "/v1/messages", headers=h, json={**payload, "model": "claude-9"})
    assert r.status_code == 404
    assert json_of(r) == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model: claude-9"},
    }


async def test_anthropic_requires_version_header(sim: Simulator, client: httpx.AsyncClient) -> None:
    r = await client.get(
        sim.base_url("anthropic") + "/v1/models", headers={"x-api-key": ANTHROPIC_KEY}
    )
    assert r.status_code == 400
    assert json_of(r) == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "anthropic-version: header is required",
        },
    }


async def test_gemini_routes_and_key_by_header_or_query(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    base = sim.base_url("gemini")
    assert base == sim.root_url + "/gemini/v1beta"
    by_header: dict[str, Any] = {"headers": {"x-goog-api-key": GEMINI_KEY}}
    by_query: dict[str, Any] = {"params": {"key": GEMINI_KEY}}
    for auth in (by_header, by_query):
        r = await client.get(base + "/models/gemini-1.5-pro", **auth)
        assert r.status_code == 200
        assert json_of(r) == {
            "name": "models/gemini-1.5-pro",
            "displayName": "gemini-1.5-pro",
            "supportedGenerationMethods": ["generateContent", "countTokens"],
        }

    payload = {
        "contents": [{"parts": [{"text": "hi"}]}],
        "generationConfig": {"maxOutputTokens": 1},
    }
    r = await client.post(base + "/models/gemini-1.5-pro:generateContent", json=payload, **by_query)
    assert r.status_code == 200
    body = json_of(r)
    assert body["candidates"][0] == {
        "content": {"parts": [{"text": "p"}], "role": "model"},
        "finishReason": "MAX_TOKENS",
        "index": 0,
    }
    assert body["usageMetadata"]["totalTokenCount"] == 2

    r = await client.get(base + "/models/gemini-9", **by_header)
    assert r.status_code == 404
    assert json_of(r) == {
        "error": {"code": 404, "message": "models/gemini-9 is not found", "status": "NOT_FOUND"}
    }
    r = await client.post(base + "/models/gemini-9:generateContent", json=payload, **by_header)
    assert r.status_code == 404

    r = await client.get(base + "/models", **by_header)
    assert [m["name"] for m in json_of(r)["models"]] == ["models/gemini-1.5-pro"]


async def test_ollama_routes(sim: Simulator, client: httpx.AsyncClient) -> None:
    base = sim.base_url("ollama")
    assert base == sim.root_url + "/ollama"
    r = await client.get(base + "/api/tags")
    assert r.status_code == 200
    assert json_of(r) == {
        "models": [
            {
                "name": "llama3:latest",
                "model": "llama3:latest",
                "modified_at": "2024-05-01T00:00:00Z",
                "size": 1,
                "digest": "sha256:0",
            }
        ]
    }
    for model in ("llama3:latest", "llama3"):  # untagged resolves to :latest
        r = await client.post(
            base + "/api/generate",
            json={"model": model, "prompt": "hi", "stream": False, "options": {"num_predict": 1}},
        )
        assert r.status_code == 200
        body = json_of(r)
        assert (body["model"], body["response"], body["done"]) == (model, "p", True)
        assert isinstance(body["created_at"], str)

    r = await client.post(base + "/api/generate", json={"model": "mistral", "prompt": "hi"})
    assert r.status_code == 404
    assert json_of(r) == {"error": "model 'mistral' not found"}

    r = await client.get(base + "/")
    assert (r.status_code, r.text) == (200, "Ollama is running")


async def test_ollama_with_key_requires_bearer(
    client: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    sim = Simulator([SimProvider("lan", "ollama", "sk-ollama-gw", ["llama3:latest"], fast())])
    await nursery.start(sim.serve)
    r = await client.get(sim.base_url("lan") + "/api/tags")
    assert r.status_code == 401
    assert json_of(r) == {"error": "unauthorized"}
    r = await client.get(sim.base_url("lan") + "/api/tags", headers=bearer("sk-ollama-gw"))
    assert r.status_code == 200


# ---------------------------------------------------------------------------
# Authentication failures
# ---------------------------------------------------------------------------


OPENAI_BAD_KEY = {
    "error": {
        "message": "Incorrect API key provided.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}
AZURE_BAD_KEY = {
    "error": {
        "code": "401",
        "message": "Access denied due to invalid subscription key or wrong API endpoint.",
    }
}
ANTHROPIC_BAD_KEY = {
    "type": "error",
    "error": {"type": "authentication_error", "message": "invalid x-api-key"},
}


@pytest.mark.parametrize(
    ("name", "path", "params", "headers", "status", "expected"),
    [
        ("openai", "/models", {}, bearer("sk-wrong"), 401, OPENAI_BAD_KEY),
        ("openai", "/models", {}, {}, 401, OPENAI_BAD_KEY),
        ("volcengine", "/models", {}, bearer("sk-wrong"), 401, OPENAI_BAD_KEY),
        ("compat-keyed", "/models", {}, {}, 401, OPENAI_BAD_KEY),
        ("azure", "/openai/models", {"api-version": "v"}, {"api-key": "bad"}, 401, AZURE_BAD_KEY),
        ("azure", "/openai/models", {"api-version": "v"}, {}, 401, AZURE_BAD_KEY),
        (
            "anthropic",
            "/v1/models",
            {},
            {"x-api-key": "bad", "anthropic-version": "2023-06-01"},
            401,
            ANTHROPIC_BAD_KEY,
        ),
    ],
)
async def test_auth_failures(
    sim: Simulator,
    client: httpx.AsyncClient,
    name: str,
    path: str,
    params: dict[str, str],
    headers: dict[str, str],
    status: int,
    expected: dict[str, Any],
) -> None:
    r = await client.get(sim.base_url(name) + path, params=params, headers=headers)
    assert r.status_code == status
    assert json_of(r) == expected


async def test_gemini_bad_and_missing_key(sim: Simulator, client: httpx.AsyncClient) -> None:
    url = sim.base_url("gemini") + "/models/gemini-1.5-pro"
    attempts: list[dict[str, Any]] = [
        {"params": {"key": "AIza-wrong"}},
        {"headers": {"x-goog-api-key": "wrong"}},
    ]
    for kwargs in attempts:
        r = await client.get(url, **kwargs)
        assert r.status_code == 400
        error = json_of(r)["error"]
        assert error["code"] == 400
        assert error["message"] == "API key not valid. Please pass a valid API key."
        assert error["status"] == "INVALID_ARGUMENT"
    r = await client.get(url)
    assert r.status_code == 403
    assert json_of(r)["error"]["status"] == "PERMISSION_DENIED"


async def test_no_key_configured_means_no_auth(sim: Simulator, client: httpx.AsyncClient) -> None:
    r = await client.get(sim.base_url("compat") + "/models", headers=bearer("anything"))
    assert r.status_code == 200


# ---------------------------------------------------------------------------
# 404 / 405 / bad bodies
# ---------------------------------------------------------------------------


async def test_unknown_paths_and_methods(sim: Simulator, client: httpx.AsyncClient) -> None:
    h = bearer(OPENAI_KEY)
    r = await client.get(sim.base_url("openai") + "/embeddings-nope", headers=h)
    assert r.status_code == 404
    assert json_of(r)["error"]["message"].startswith("Invalid URL")

    r = await client.post(sim.base_url("openai") + "/models", headers=h)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET"
    assert "error" in json_of(r)

    r = await client.get(sim.base_url("openai") + "/chat/completions", headers=h)
    assert r.status_code == 405

    r = await client.get(sim.base_url("anthropic") + "/v2/whatever")
    assert r.status_code == 404
    assert json_of(r)["type"] == "error"

    r = await client.get(sim.base_url("gemini") + "/tunedModels", params={"key": GEMINI_KEY})
    assert r.status_code == 404
    assert json_of(r)["error"]["status"] == "NOT_FOUND"

    r = await client.get(sim.base_url("ollama") + "/api/nope")
    assert r.status_code == 404
    assert "error" in json_of(r)

    r = await client.head(sim.base_url("openai") + "/models", headers=h)
    assert r.status_code == 405
    assert r.content == b""

    r = await client.get(sim.root_url + "/no-such-provider/v1/models")
    assert r.status_code == 404

    # Requests under a provider are counted even when they fail validation.
    assert sim.stats("openai").requests == 4


async def test_bad_completion_bodies(sim: Simulator, client: httpx.AsyncClient) -> None:
    url = sim.base_url("openai") + "/chat/completions"
    h = bearer(OPENAI_KEY)
    r = await client.post(url, headers=h, content=b"{not json")
    assert r.status_code == 400
    assert json_of(r)["error"]["type"] == "invalid_request_error"
    r = await client.post(url, headers=h, json={"messages": []})
    assert r.status_code == 400

    h = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
    r = await client.post(
        sim.base_url("anthropic") + "/v1/messages",
        headers=h,
        json={"model": "claude-3-opus", "messages": []},
    )
    assert r.status_code == 400
    assert json_of(r)["error"]["message"] == "max_tokens: Field required"


# ---------------------------------------------------------------------------
# Modes
# ---------------------------------------------------------------------------


async def test_hang_never_answers_and_sees_the_client_leave(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.set_behavior("modal", mode="hang")
    answered: list[httpx.Response] = []
    give_up = trio.CancelScope()

    async def probe() -> None:
        with give_up:
            answered.append(await modal_get(sim, client))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe)
        await sim.wait_until(lambda: sim.stats("modal").in_flight == 1)
        # Everything that can happen now has happened (pending socket events
        # are delivered first): the upstream is holding the request, not slow.
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert answered == []
        give_up.cancel()
    assert give_up.cancelled_caught
    assert answered == []
    await sim.wait_idle()
    stats = sim.stats("modal")
    assert (stats.in_flight, stats.disconnected, stats.completed) == (0, 1, 0)


async def test_client_leaving_during_latency_is_noticed(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.set_behavior("modal", latency=30.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(modal_get, sim, client)
        await sim.wait_until(lambda: sim.stats("modal").in_flight == 1)
        nursery.cancel_scope.cancel()
    with trio.fail_after(5):  # the 30 s latency must not be waited out
        await sim.wait_idle()
    assert sim.stats("modal").disconnected == 1


async def test_slow_body_trickles_bytes(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.set_behavior("modal", mode="slow_body", trickle_interval=0.02)
    url = sim.base_url("modal") + "/models"
    start = trio.current_time()
    async with client.stream("GET", url, headers=MODAL) as response:
        assert response.status_code == 200
        total = int(response.headers["content-length"])
        chunks: list[bytes] = []
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
            if len(chunks) == 5:
                break
    elapsed = trio.current_time() - start
    assert all(len(c) == 1 for c in chunks)
    assert total > 50
    assert elapsed >= 4 * 0.02  # five bytes, one per interval
    await sim.wait_idle()  # we hung up half-way: the upstream stops trickling
    assert sim.stats("modal").disconnected == 1

    sim.set_behavior("modal", trickle_interval=0.0005)
    r = await modal_get(sim, client)  # and a patient client gets the whole, valid body
    assert json_of(r)["data"][0]["id"] == "sim-model"


@pytest.mark.parametrize(
    ("name", "status", "check"),
    [
        ("modal", 503, lambda b: b["error"]["message"] == "simulated upstream error"),
        (
            "azure",
            502,
            lambda b: b["error"] == {"code": "502", "message": "simulated upstream error"},
        ),
        ("anthropic", 529, lambda b: b["error"]["type"] == "overloaded_error"),
        ("gemini", 503, lambda b: b["error"]["status"] == "UNAVAILABLE"),
        ("ollama", 500, lambda b: b == {"error": "simulated upstream error"}),
    ],
)
async def test_status_mode(
    sim: Simulator, client: httpx.AsyncClient, name: str, status: int, check: Any
) -> None:
    sim.set_behavior(name, mode="status", status=status)
    request = _healthy_request(sim, name)
    r = await client.send(request)
    assert r.status_code == status
    assert check(json_of(r))


def _healthy_request(sim: Simulator, name: str) -> httpx.Request:
    """A request that passes validation for that provider of the test fleet."""
    base = sim.base_url(name)
    kind = sim.provider(name).kind
    if kind == "azure":
        return httpx.Request(
            "GET",
            base + "/openai/models",
            params={"api-version": "v"},
            headers={"api-key": AZURE_KEY},
        )
    if kind == "anthropic":
        h = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
        return httpx.Request("GET", base + "/v1/models", headers=h)
    if kind == "gemini":
        return httpx.Request("GET", base + "/models/gemini-1.5-pro", params={"key": GEMINI_KEY})
    if kind == "ollama":
        return httpx.Request("GET", base + "/api/tags")
    key = sim.provider(name).api_key
    return httpx.Request("GET", base + "/models", headers=bearer(key) if key else {})


async def test_rate_limited(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.set_behavior("modal", mode="rate_limited", retry_after=2.5)
    r = await modal_get(sim, client)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2.5"
    assert json_of(r)["error"]["type"] == "rate_limit_error"
    sim.set_behavior("modal", retry_after=120.0)  # whole seconds go out as an integer
    assert (await modal_get(sim, client)).headers["retry-after"] == "120"
    sim.set_behavior("anthropic", mode="rate_limited", retry_after=1)
    r = await client.send(_healthy_request(sim, "anthropic"))
    assert (r.status_code, r.headers["retry-after"]) == (429, "1")
    assert json_of(r)["error"]["type"] == "rate_limit_error"


async def test_unauthorized_even_with_the_right_key(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.set_behavior("modal", mode="unauthorized")
    r = await modal_get(sim, client)
    assert r.status_code == 401
    assert json_of(r)["error"]["code"] == "invalid_api_key"
    sim.set_behavior("gemini", mode="unauthorized")
    r = await client.send(_healthy_request(sim, "gemini"))
    assert r.status_code == 401


async def test_echo_key_leaks_the_sent_key(sim: Simulator, client: httpx.AsyncClient) -> None:
    for name, key in (("modal", MODAL_KEY), ("azure", AZURE_KEY), ("gemini", GEMINI_KEY)):
        sim.set_behavior(name, mode="echo_key")
        r = await client.send(_healthy_request(sim, name))
        assert r.status_code == 401
        assert key in r.text
    # A wrong key is echoed too: this mode is about the leak, not about the key.
    r = await client.get(sim.base_url("modal") + "/models", headers=bearer("sk-other-1234567"))
    assert r.status_code == 401
    assert "sk-other-1234567" in json_of(r)["error"]["message"]


@pytest.mark.parametrize(
    ("mode", "content_type", "body_check"),
    [
        ("malformed_json", "application/json", lambda t: t == '{"data": ['),
        ("html", "text/html; charset=utf-8", lambda t: t.startswith("<!DOCTYPE html>")),
        ("wrong_shape", "application/json", lambda t: json.loads(t) == {"unexpected": True}),
    ],
)
async def test_bad_200_bodies(
    sim: Simulator, client: httpx.AsyncClient, mode: str, content_type: str, body_check: Any
) -> None:
    sim.set_behavior("modal", mode=mode)
    r = await modal_get(sim, client)
    assert r.status_code == 200
    assert r.headers["content-type"] == content_type
    assert body_check(r.text)
    if mode == "malformed_json":
        with pytest.raises(ValueError):
            r.json()


async def test_reset_aborts_mid_body(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.set_behavior("modal", mode="reset")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await modal_get(sim, client)
    await sim.wait_idle()
    # The next request opens a fresh connection and is unaffected.
    sim.set_behavior("modal", mode="ok")
    r = await modal_get(sim, client)
    assert r.status_code == 200


async def test_huge_body(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.set_behavior("modal", mode="huge_body")
    r = await modal_get(sim, client)
    assert r.status_code == 200
    assert len(r.content) >= 10_000_000
    assert r.content.startswith(b'{"data": "') and r.content.endswith(b'"}')
    # A client that gives up early is counted as gone, and nothing stays in flight.
    async with client.stream("GET", sim.base_url("modal") + "/models", headers=MODAL) as resp:
        async for _ in resp.aiter_raw():
            break
    await sim.wait_idle()
    stats = sim.stats("modal")
    assert (stats.completed, stats.disconnected, stats.in_flight) == (1, 1, 0)


async def test_modes_apply_after_validation(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.set_behavior("modal", mode="hang")
    r = await client.get(sim.base_url("modal") + "/models", headers=bearer("sk-wrong"))
    assert r.status_code == 401  # a bad key is refused even by a hanging upstream
    r = await client.get(sim.base_url("modal") + "/nope", headers=MODAL)
    assert r.status_code == 404


async def test_every_mode_returns_in_flight_to_zero(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    for count, mode in enumerate(MODES, start=1):
        sim.set_behavior("modal", mode=mode, trickle_interval=0.0005)
        url = sim.base_url("modal") + "/models"
        # Whatever happens (answer, reset, or the client gives up once the
        # request has reached the upstream and the loop has gone idle),
        # nothing stays in flight.
        async with trio.open_nursery() as nursery:

            async def fetch(url: str = url) -> None:
                with contextlib.suppress(httpx.TransportError):
                    async with client.stream("GET", url, headers=MODAL) as r:
                        await r.aread()
                nursery.cancel_scope.cancel()

            nursery.start_soon(fetch)
            await sim.wait_until(lambda count=count: sim.stats("modal").requests == count)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        await sim.wait_idle()
    stats = sim.stats("modal")
    assert stats.requests == len(MODES)
    assert stats.in_flight == 0
    assert stats.completed + stats.disconnected == len(MODES)


async def test_server_shutdown_clears_in_flight(client: httpx.AsyncClient) -> None:
    sim = Simulator([SimProvider("h", "openai-compatible", None, behavior=Behavior(mode="hang"))])
    errors: list[BaseException] = []

    async def probe() -> None:
        try:
            await client.get(sim.base_url("h") + "/models")
        except httpx.TransportError as exc:  # the server went away under us
            errors.append(exc)

    async with trio.open_nursery() as probes, trio.open_nursery() as server:
        await server.start(sim.serve)
        for _ in range(3):
            probes.start_soon(probe)
        await sim.wait_until(lambda: sim.stats("h").in_flight == 3)
        server.cancel_scope.cancel()
    assert len(errors) == 3
    stats = sim.stats("h")
    assert (stats.in_flight, stats.disconnected) == (0, 3)


async def test_jitter_and_latency(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.set_behavior("modal", latency=0.05, jitter=0.02)
    start = trio.current_time()
    await modal_get(sim, client)
    assert trio.current_time() - start >= 0.03


# ---------------------------------------------------------------------------
# error_rate, stats, control
# ---------------------------------------------------------------------------


async def _error_pattern(seed: int, client: httpx.AsyncClient) -> list[int]:
    sim = Simulator(
        [SimProvider("flaky", "openai", "sk-f", behavior=Behavior(latency=0.0, error_rate=0.5))],
        seed=seed,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        statuses = []
        for _ in range(24):
            r = await client.get(sim.base_url("flaky") + "/models", headers=bearer("sk-f"))
            if r.status_code == 500:
                assert json_of(r)["error"]["message"] == "simulated upstream error"
            statuses.append(r.status_code)
        nursery.cancel_scope.cancel()
    return statuses


async def test_error_rate_is_deterministic_per_seed(client: httpx.AsyncClient) -> None:
    first = await _error_pattern(7, client)
    again = await _error_pattern(7, client)
    other = await _error_pattern(8, client)
    assert first == again
    assert set(first) == {200, 500}
    assert first != other


async def test_stats_count_list_and_completion_probes(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    h = bearer(OPENAI_KEY)
    base = sim.base_url("openai")
    await client.get(base + "/models", headers=h)
    await client.get(base + "/models/gpt-4", headers=h)
    await client.post(
        base + "/chat/completions", headers=h, json={"model": "gpt-4", "max_tokens": 3}
    )
    await client.post(
        base + "/chat/completions", headers=h, json={"model": "gpt-4", "max_completion_tokens": 2}
    )
    await client.post(
        sim.base_url("gemini") + "/models/gemini-1.5-pro:generateContent",
        params={"key": GEMINI_KEY},
        json={"contents": [], "generationConfig": {"maxOutputTokens": 4}},
    )
    await client.post(
        sim.base_url("ollama") + "/api/generate",
        json={"model": "llama3", "prompt": "x", "options": {"num_predict": 5}},
    )
    await client.post(
        sim.base_url("anthropic") + "/v1/messages",
        headers={"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
        json={"model": "claude-3-opus", "max_tokens": 6, "messages": []},
    )
    await client.get(sim.root_url + "/_sim/stats")  # control routes are not counted

    assert sim.stats("openai") == ProviderStats(
        requests=4, completed=4, list_probes=2, completion_probes=2, max_tokens_requested=5
    )
    total = sim.total_stats()
    assert (total.requests, total.list_probes, total.completion_probes) == (7, 2, 5)
    assert total.max_tokens_requested == 3 + 2 + 4 + 5 + 6

    snapshot = sim.stats("openai")
    await client.get(base + "/models", headers=h)
    assert snapshot.requests == 4  # stats() returns a snapshot
    assert sim.stats("openai").requests == 5


async def test_control_routes(sim: Simulator, client: httpx.AsyncClient) -> None:
    root = sim.root_url
    await modal_get(sim, client)
    r = await client.get(root + "/_sim/stats")
    doc = json_of(r)
    assert doc["providers"]["modal"]["requests"] == 1
    assert doc["providers"]["modal"]["list_probes"] == 1
    assert doc["total"]["requests"] == 1
    assert set(doc["providers"]) == {p.name for p in fleet()}

    r = await client.post(root + "/_sim/providers/modal", json={"mode": "status", "status": 502})
    assert r.status_code == 200
    assert json_of(r)["mode"] == "status"
    assert sim.provider("modal").behavior.status == 502
    assert (await modal_get(sim, client)).status_code == 502

    for bad in ({"mode": "sideways"}, {"colour": "red"}, {"error_rate": 2}, {"latency": "slow"}):
        r = await client.post(root + "/_sim/providers/modal", json=bad)
        assert r.status_code == 400, bad
        assert "error" in json_of(r)
    r = await client.post(root + "/_sim/providers/modal", content=b"[1]")
    assert r.status_code == 400
    assert sim.provider("modal").behavior.mode == "status"  # unchanged by bad requests

    r = await client.post(root + "/_sim/providers/ghost", json={"mode": "ok"})
    assert r.status_code == 404

    r = await client.post(root + "/_sim/reset_stats")
    assert r.status_code == 200
    assert sim.total_stats() == ProviderStats()

    r = await client.get(root + "/_sim/providers")
    entries = json_of(r)["providers"]
    assert entries == sim.provider_entries()

    assert (await client.get(root + "/_sim/reset_stats")).status_code == 405
    assert (await client.get(root + "/_sim/nothing")).status_code == 404
    assert sim.total_stats().requests == 0


# ---------------------------------------------------------------------------
# Raw HTTP robustness and keep-alive
# ---------------------------------------------------------------------------


async def _read_until(stream: trio.abc.ReceiveStream, marker: bytes, *, count: int = 1) -> bytes:
    """Read until ``marker`` was seen ``count`` times, or EOF."""
    data = b""
    with trio.fail_after(5):
        while data.count(marker) < count:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
    return data


async def test_malformed_request_gets_400_and_server_keeps_serving(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    host, port = sim.root_url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(b"THIS IS NOT HTTP\r\n\x00\x01\r\n\r\n")
        data = await _read_until(stream, b"\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 400 ")
        assert b"connection: close" in data.lower()
        # ... and then the server closes that connection.
        with trio.fail_after(5):
            while await stream.receive_some(65536):
                pass

    r = await modal_get(sim, client)
    assert r.status_code == 200


async def test_keep_alive_serves_several_requests_per_connection(sim: Simulator) -> None:
    host, port = sim.root_url.removeprefix("http://").split(":")
    request = f"GET /compat/v1/models HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        for _ in range(3):
            await stream.send_all(request)
            data = await _read_until(stream, b'"owned_by":"system"}]}')
            assert data.startswith(b"HTTP/1.1 200 ")
        # Pipelined: two requests at once, two answers in order.
        await stream.send_all(request * 2)
        data = await _read_until(stream, b'"owned_by":"system"}]}', count=2)
        assert data.count(b"HTTP/1.1 200 ") == 2
    assert sim.stats("compat").requests == 5


async def test_connection_errors_do_not_leak_between_clients(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    host, port = sim.root_url.removeprefix("http://").split(":")
    # Half a request, then hang up; and a header block that never ends (h11 caps it).
    s1 = await trio.open_tcp_stream(host, int(port))
    await s1.send_all(b"GET /modal/v1/models HTTP/1.1\r\nHost: x\r\n")
    await s1.aclose()
    s2 = await trio.open_tcp_stream(host, int(port))
    async with s2:
        await s2.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000)
        try:
            data = await _read_until(s2, b"\r\n\r\n")
        except trio.BrokenResourceError:  # closed with our bytes unread: a RST is fine too
            data = b"HTTP/1.1 431 "
        assert data.startswith(b"HTTP/1.1 431 ")
    r = await modal_get(sim, client)
    assert r.status_code == 200


# ---------------------------------------------------------------------------
# Configuration API
# ---------------------------------------------------------------------------


async def test_provider_entries_and_base_urls(sim: Simulator) -> None:
    entries = {e["name"]: e for e in sim.provider_entries()}
    assert entries["openai"] == {
        "name": "openai",
        "type": "openai",
        "base_url": sim.root_url + "/openai/v1",
        "api_key": OPENAI_KEY,
        "model": "gpt-4",
    }
    assert "api_key" not in entries["ollama"]
    assert entries["ollama"]["base_url"] == sim.root_url + "/ollama"
    assert entries["volcengine"]["base_url"].endswith("/volcengine/api/v3")
    assert entries["gemini"]["base_url"].endswith("/gemini/v1beta")
    assert entries["azure"]["base_url"].endswith("/azure")
    assert entries["anthropic"]["base_url"].endswith("/anthropic")


def test_set_behavior_validation() -> None:
    sim = Simulator(fleet())
    with pytest.raises(ValueError):
        sim.set_behavior("modal", mode="sideways")
    with pytest.raises(ValueError):
        sim.set_behavior("modal", nonsense=1)
    with pytest.raises(ValueError):
        sim.set_behavior("ghost", mode="ok")
    with pytest.raises(ValueError):
        sim.set_behavior("modal", latency=-1)
    with pytest.raises(ValueError):
        sim.set_behavior("modal", latency=math.nan)
    with pytest.raises(ValueError):
        sim.set_behavior("modal", status=99)
    with pytest.raises(ValueError):  # all or nothing
        sim.set_behavior("modal", mode="hang", error_rate=1.5)
    assert sim.provider("modal").behavior.mode == "ok"
    sim.set_behavior("modal", mode="hang", latency=0)
    assert (sim.provider("modal").behavior.mode, sim.provider("modal").behavior.latency) == (
        "hang",
        0,
    )

    with pytest.raises(KeyError):
        sim.stats("ghost")
    with pytest.raises(UnknownProviderError):
        sim.provider("ghost")
    with pytest.raises(ValueError):
        sim.add_provider(SimProvider("modal", "openai"))
    with pytest.raises(ValueError):
        SimProvider("x", "no-such-kind")
    with pytest.raises(ValueError):
        SimProvider("a/b", "openai")
    with pytest.raises(RuntimeError):
        _ = sim.root_url


async def test_add_provider_while_serving(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.add_provider(SimProvider("late", "ollama", models=["phi3:mini"], behavior=fast()))
    r = await client.get(sim.base_url("late") + "/api/tags")
    assert json_of(r)["models"][0]["name"] == "phi3:mini"


def test_demo_fleet() -> None:
    providers = {p.name: p for p in demo_providers()}
    assert list(providers) == [
        "openai", "azure", "anthropic", "volcengine", "gemini", "ollama", "deepseek", "slow-vllm",
    ]  # fmt: skip
    assert providers["openai"].models == ["gpt-4", "gpt-4o-mini"]
    assert providers["openai"].api_key == "sk-sim-openai"
    assert (providers["openai"].behavior.latency, providers["openai"].behavior.jitter) == (
        0.25,
        0.05,
    )
    assert providers["anthropic"].behavior.latency == 0.35
    assert providers["ollama"].api_key is None
    assert providers["deepseek"].kind == "openai-compatible"
    assert (providers["deepseek"].behavior.mode, providers["deepseek"].behavior.status) == (
        "status",
        503,
    )
    assert providers["slow-vllm"].api_key is None
    assert providers["slow-vllm"].behavior.mode == "hang"
    assert {p.kind for p in providers.values()} == {
        "openai", "azure", "anthropic", "volcengine", "gemini", "ollama", "openai-compatible",
    }  # fmt: skip


def test_simulator_keeps_its_own_copy_of_each_provider() -> None:
    shared = Behavior(latency=0.0)
    mine = SimProvider("a", "openai", behavior=shared)
    sim = Simulator([mine, SimProvider("b", "openai", behavior=shared)])
    sim.set_behavior("a", mode="hang")
    assert sim.provider("b").behavior.mode == "ok"
    assert mine.behavior.mode == "ok"


def test_fleet_and_spec_helpers() -> None:
    bench = fleet_providers(3, latency=0.1, kind="anthropic")
    assert [p.name for p in bench] == ["bench-0", "bench-1", "bench-2"]
    assert all(p.api_key == "sk-sim-bench" and p.models == ["sim-model"] for p in bench)
    assert bench[0].behavior.latency == 0.1

    spec = [
        {"name": "a", "kind": "openai", "api_key": "sk-a", "models": ["m1"]},
        {"name": "b", "kind": "gemini", "behavior": {"mode": "html", "latency": 0}},
    ]
    a, b = providers_from_spec(spec)
    assert (a.api_key, a.models, a.behavior) == ("sk-a", ["m1"], Behavior())
    assert (b.behavior.mode, b.models) == ("html", ["sim-model"])
    with pytest.raises(ValueError):
        providers_from_spec([{"name": "c", "kind": "openai", "colour": "red"}])
    with pytest.raises(ValueError):
        providers_from_spec({"name": "c"})


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


async def test_cli_fleet_serves_and_exits_cleanly_on_sigint(client: httpx.AsyncClient) -> None:
    proc = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-m",
            "service.testing.simulator",
            "--fleet",
            "3",
            "--port",
            "0",
            "--fleet-latency",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = await _read_until(proc.stdout, b"\n")
        assert line.startswith(b"SIMULATOR http://127.0.0.1:")
        url = line.split()[1].decode()

        r = await client.get(url + "/bench-2/v1/models", headers=bearer("sk-sim-bench"))
        assert r.status_code == 200
        assert json_of(r)["data"][0]["id"] == "sim-model"
        stats = json_of(await client.get(url + "/_sim/stats"))
        assert set(stats["providers"]) == {"bench-0", "bench-1", "bench-2"}

        proc.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            code = await proc.wait()
        stderr = await _read_until(proc.stderr, b"\x00")  # i.e. until EOF
        assert code == 0, stderr
        assert b"Traceback" not in stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# ---------------------------------------------------------------------------
# concurrency_limit: a provider that rate-limits above a set concurrency
# ---------------------------------------------------------------------------


async def test_concurrency_limit_refuses_exactly_the_excess(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    limit, excess = 3, 2
    # Long enough that the admitted ones are still in flight when the rest arrive;
    # the wait below is on the simulator's own counter, never on a sleep.
    sim.set_behavior("modal", latency=0.5, concurrency_limit=limit, retry_after=2)
    admitted: list[httpx.Response] = []
    refused: list[httpx.Response] = []

    async def get(into: list[httpx.Response]) -> None:
        into.append(await modal_get(sim, client))

    async with trio.open_nursery() as nursery:
        for _ in range(limit):
            nursery.start_soon(get, admitted)
        await sim.wait_until(lambda: sim.stats("modal").in_flight == limit)
        for _ in range(excess):
            nursery.start_soon(get, refused)
    assert [r.status_code for r in admitted] == [200] * limit
    assert [r.status_code for r in refused] == [429] * excess
    for r in refused:
        assert r.headers["retry-after"] == "2"
        assert json_of(r)["error"]["type"] == "rate_limit_error"  # OpenAI's wire format
    stats = sim.stats("modal")
    assert (stats.requests, stats.completed, stats.rate_limited) == (limit + excess, 5, excess)


async def test_concurrency_limit_uses_each_kinds_429_format(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    # The first request holds the only slot until it is cancelled (not for
    # some latency that a busy machine could outlast before the second arrives).
    sim.set_behavior("anthropic", mode="hang", concurrency_limit=1, retry_after=0.5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send, _healthy_request(sim, "anthropic"))
        await sim.wait_until(lambda: sim.stats("anthropic").in_flight == 1)
        r = await client.send(_healthy_request(sim, "anthropic"))
        nursery.cancel_scope.cancel()
    assert (r.status_code, r.headers["retry-after"]) == (429, "0.5")
    assert json_of(r)["type"] == "error"
    assert json_of(r)["error"]["type"] == "rate_limit_error"


async def test_sequential_requests_are_never_limited(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.set_behavior("modal", latency=0.0, concurrency_limit=1)
    for _ in range(10):
        assert (await modal_get(sim, client)).status_code == 200
    stats = sim.stats("modal")
    assert (stats.requests, stats.rate_limited) == (10, 0)


async def test_concurrency_limit_is_per_provider_and_after_validation(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.set_behavior("modal", mode="hang", concurrency_limit=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(modal_get, sim, client)
        await sim.wait_until(lambda: sim.stats("modal").in_flight == 1)
        # Another provider is not affected; a bad key is still a 401, not a 429.
        assert (await client.send(_healthy_request(sim, "compat"))).status_code == 200
        r = await client.get(sim.base_url("modal") + "/models", headers=bearer("sk-wrong"))
        assert r.status_code == 401
        assert (await modal_get(sim, client)).status_code == 429
        nursery.cancel_scope.cancel()
    assert sim.stats("modal").rate_limited == 1


async def test_rate_limited_mode_is_counted_too(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.set_behavior("modal", mode="rate_limited")
    await modal_get(sim, client)
    await modal_get(sim, client)
    assert sim.stats("modal").rate_limited == 2
    assert sim.total_stats().rate_limited == 2


async def test_concurrency_limit_through_control_route_and_spec(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    url = sim.root_url + "/_sim/providers/modal"
    r = await client.post(url, json={"concurrency_limit": 4})
    assert (r.status_code, json_of(r)["concurrency_limit"]) == (200, 4)
    assert sim.provider("modal").behavior.concurrency_limit == 4
    for bad in (-1, True, 1.5, "4", None):
        r = await client.post(url, json={"concurrency_limit": bad})
        assert r.status_code == 400, bad
        assert "concurrency_limit" in json_of(r)["error"]
    assert sim.provider("modal").behavior.concurrency_limit == 4
    assert "rate_limited" in json_of(await client.get(sim.root_url + "/_sim/stats"))["total"]

    (spec,) = providers_from_spec(
        [{"name": "p", "kind": "openai", "behavior": {"concurrency_limit": 8, "retry_after": 1}}]
    )
    assert spec.behavior.concurrency_limit == 8
    with pytest.raises(ValueError, match="concurrency_limit"):
        providers_from_spec(
            [{"name": "p", "kind": "openai", "behavior": {"concurrency_limit": -2}}]
        )


def test_concurrency_limit_validation() -> None:
    assert Behavior().concurrency_limit == 0  # off by default
    for bad in (-1, False, True, 2.0, "3"):
        with pytest.raises(ValueError, match="concurrency_limit must be a whole number >= 0"):
            Behavior(concurrency_limit=bad)
    sim = Simulator(fleet())
    with pytest.raises(ValueError):
        sim.set_behavior("modal", concurrency_limit=-5)
    assert sim.provider("modal").behavior.concurrency_limit == 0

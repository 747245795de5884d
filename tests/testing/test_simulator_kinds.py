"""The provider kinds beyond the first seven: base paths, keys, answers, error documents.

Over real loopback HTTP with httpx, like ``test_simulator.py``; the failure
matrix checks that every OpenAI-compatible registry kind, Azure AI and Cohere
answer a wrong key, a missing model, a rate limit and a server error with the
HTTP status and the document shape that provider really uses.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from service.testing.simulator import KINDS, Behavior, SimProvider, Simulator
from service.testing.simulator.behavior import OPENAI_LIKE
from service.testing.simulator.kinds import WIRES

KEY = "sk-sim-kinds-0123456789"
WRONG = "sk-wrong-0000000000"
PING = [{"role": "user", "content": "ping"}]

#: The real base path of each OpenAI-compatible provider, as its docs give it.
REAL_PATHS = {
    "openai": "/v1",
    "openai-compatible": "/v1",
    "volcengine": "/api/v3",
    "mistral": "/v1",
    "groq": "/openai/v1",
    "deepseek": "",
    "openrouter": "/api/v1",
    "together": "/v1",
    "fireworks": "/inference/v1",
    "xai": "/v1",
    "perplexity": "",
    "moonshot": "/v1",
    "dashscope": "/compatible-mode/v1",
    "zhipu": "/api/paas/v4",
    "siliconflow": "/v1",
    "cerebras": "/v1",
    "nvidia-nim": "/v1",
    "vllm": "/v1",
    "lm-studio": "/v1",
    "llama-cpp": "/v1",
    "azure-ai": "/models",
}
NEW_KINDS = [*OPENAI_LIKE, "cohere"]


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    fast = Behavior(latency=0.0)
    providers = [SimProvider(kind, kind, KEY, ["sim-model"], fast) for kind in NEW_KINDS]
    providers += [
        SimProvider(
            "cohere-fleet",
            "cohere",
            KEY,
            ["command-r", "embed-english-v3.0", "rerank-english-v3.0"],
            fast,
        ),
        SimProvider("ollama", "ollama", None, ["llama3:latest", "nomic-embed-text:latest"], fast),
        SimProvider("gemini", "gemini", KEY, ["gemini-2.0-flash", "text-embedding-004"], fast),
        SimProvider("anthropic", "anthropic", KEY, ["claude-3-5-haiku-latest"], fast),
    ]
    return providers


@pytest.fixture
async def client() -> Any:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as c:
        yield c


def bearer(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def list_path(kind: str) -> str:
    return "/v1/models" if kind == "cohere" else "/models"


def chat_path(kind: str) -> str:
    return "/v2/chat" if kind == "cohere" else "/chat/completions"


def test_every_kind_has_a_wire() -> None:
    assert set(WIRES) == set(KINDS)


@pytest.mark.parametrize("kind", list(OPENAI_LIKE))
async def test_openai_like_kind_serves_under_its_real_base_path(
    sim: Simulator, client: httpx.AsyncClient, kind: str
) -> None:
    base = sim.base_url(kind)
    assert base == f"{sim.root_url}/{kind}{REAL_PATHS[kind]}"
    r = await client.get(base + "/models", headers=bearer())
    assert r.status_code == 200
    assert r.json()["data"][0]["id"] == "sim-model"
    payload = {"model": "sim-model", "messages": PING, "max_tokens": 1}
    r = await client.post(base + "/chat/completions", headers=bearer(), json=payload)
    assert r.status_code == 200
    assert r.json()["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    stats = sim.stats(kind)
    assert (stats.list_probes, stats.completion_probes, stats.billed_tokens) == (1, 1, 2)


# -- the failure matrix: 401, 404 model, 429, 500 in each provider's own shape --


def error_message(kind: str, status: int, body: Any) -> str:
    """The message of ``kind``'s error document, after checking its exact shape."""
    if kind == "cohere":
        assert set(body) == {"message"}
        return str(body["message"])
    if kind in ("mistral", "vllm"):  # flat, vLLM's ErrorResponse
        assert set(body) == {"object", "message", "type", "param", "code"}
        assert body["object"] == "error"
        return str(body["message"])
    if kind == "xai":
        assert set(body) == {"code", "error"}
        assert isinstance(body["code"], str)
        return str(body["error"])
    error = body["error"]
    assert set(body) == {"error"}
    if kind == "openrouter":
        assert error == {"message": error["message"], "code": status}
    elif kind == "zhipu":
        assert set(error) == {"code", "message"} and error["code"].isdigit()
    elif kind == "azure-ai":
        assert set(error) == {"code", "message", "status"} and error["status"] == status
    else:
        assert set(error) == {"message", "type", "param", "code"}
    return str(error["message"])


@pytest.mark.parametrize("kind", NEW_KINDS)
async def test_wrong_key_is_a_401_in_the_providers_shape(
    sim: Simulator, client: httpx.AsyncClient, kind: str
) -> None:
    r = await client.get(sim.base_url(kind) + list_path(kind), headers=bearer(WRONG))
    assert r.status_code == 401
    assert error_message(kind, 401, r.json())
    r = await client.get(sim.base_url(kind) + list_path(kind))
    assert r.status_code == 401


@pytest.mark.parametrize("kind", NEW_KINDS)
async def test_missing_model_is_a_404_in_the_providers_shape(
    sim: Simulator, client: httpx.AsyncClient, kind: str
) -> None:
    payload = {"model": "no-such-model", "messages": PING, "max_tokens": 1}
    r = await client.post(sim.base_url(kind) + chat_path(kind), headers=bearer(), json=payload)
    assert r.status_code == 404
    assert "no-such-model" in error_message(kind, 404, r.json())
    r = await client.get(sim.base_url(kind) + list_path(kind) + "/no-such-model", headers=bearer())
    assert r.status_code == 404
    assert sim.stats(kind).billed_tokens == 0


@pytest.mark.parametrize("kind", NEW_KINDS)
async def test_rate_limited_is_a_429_with_retry_after_in_the_providers_shape(
    sim: Simulator, client: httpx.AsyncClient, kind: str
) -> None:
    sim.set_behavior(kind, mode="rate_limited", retry_after=3)
    r = await client.get(sim.base_url(kind) + list_path(kind), headers=bearer())
    assert r.status_code == 429
    assert r.headers["retry-after"] == "3"
    assert error_message(kind, 429, r.json())
    assert sim.stats(kind).rate_limited == 1


@pytest.mark.parametrize("kind", NEW_KINDS)
@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_keep_the_providers_shape_and_bill_nothing(
    sim: Simulator, client: httpx.AsyncClient, kind: str, status: int
) -> None:
    sim.set_behavior(kind, mode="status", status=status)
    payload = {"model": "sim-model", "messages": PING, "max_tokens": 1}
    r = await client.post(sim.base_url(kind) + chat_path(kind), headers=bearer(), json=payload)
    assert r.status_code == status
    assert error_message(kind, status, r.json()) == "simulated upstream error"
    stats = sim.stats(kind)
    assert (stats.completion_probes, stats.billed_tokens) == (1, 0)


@pytest.mark.parametrize("kind", NEW_KINDS)
@pytest.mark.parametrize("mode", ["unauthorized", "echo_key"])
async def test_forced_401_modes_for_every_new_kind(
    sim: Simulator, client: httpx.AsyncClient, kind: str, mode: str
) -> None:
    sim.set_behavior(kind, mode=mode)
    r = await client.get(sim.base_url(kind) + list_path(kind), headers=bearer())
    assert r.status_code == 401
    message = error_message(kind, 401, r.json())
    assert (KEY in message) is (mode == "echo_key")


# -- Azure AI ------------------------------------------------------------------


async def test_azure_ai_takes_the_key_as_api_key_or_bearer_and_describes_its_model(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    base = sim.base_url("azure-ai")
    for headers in ({"api-key": KEY}, bearer()):
        r = await client.get(base + "/info", headers=headers, params={"api-version": "2024-05-01"})
        assert r.status_code == 200
        assert r.json() == {
            "model_name": "sim-model",
            "model_type": "chat-completion",
            "model_provider_name": "Simulated",
        }
    r = await client.get(base + "/info", headers={"api-key": WRONG})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "Unauthorized"


# -- Cohere --------------------------------------------------------------------


async def test_cohere_models_list_get_and_endpoint_filter(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    base = sim.base_url("cohere-fleet")
    r = await client.get(base + "/v1/models", headers=bearer())
    listed = r.json()
    assert [m["name"] for m in listed["models"]] == [
        "command-r",
        "embed-english-v3.0",
        "rerank-english-v3.0",
    ]
    assert [m["endpoints"] for m in listed["models"]] == [["chat"], ["embed"], ["rerank"]]
    r = await client.get(base + "/v1/models", headers=bearer(), params={"endpoint": "rerank"})
    assert [m["name"] for m in r.json()["models"]] == ["rerank-english-v3.0"]
    r = await client.get(base + "/v1/models/embed-english-v3.0", headers=bearer())
    assert r.json()["name"] == "embed-english-v3.0"
    assert sim.stats("cohere-fleet").list_probes == 3


async def test_cohere_chat_embed_rerank_report_billed_units(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    base, h = sim.base_url("cohere-fleet"), bearer()
    r = await client.post(
        base + "/v2/chat", headers=h, json={"model": "command-r", "messages": PING, "max_tokens": 1}
    )
    body = r.json()
    assert body["finish_reason"] == "MAX_TOKENS"
    assert body["message"]["content"] == [{"type": "text", "text": "p"}]
    assert body["usage"]["billed_units"] == {"input_tokens": 1, "output_tokens": 1}

    embed = {"model": "embed-english-v3.0", "texts": ["ping"], "input_type": "search_query"}
    r = await client.post(base + "/v2/embed", headers=h, json=embed)
    body = r.json()
    assert body["response_type"] == "embeddings_by_type"
    assert len(body["embeddings"]["float"]) == 1
    assert body["meta"]["billed_units"] == {"input_tokens": 1}

    rerank = {"model": "rerank-english-v3.0", "query": "ping", "documents": ["pong"], "top_n": 1}
    r = await client.post(base + "/v2/rerank", headers=h, json=rerank)
    body = r.json()
    assert [res["index"] for res in body["results"]] == [0]
    assert body["meta"]["billed_units"] == {"search_units": 1}

    stats = sim.stats("cohere-fleet")
    assert (stats.completion_probes, stats.billed_tokens) == (3, 2 + 1 + 1)


async def test_cohere_refuses_like_cohere(sim: Simulator, client: httpx.AsyncClient) -> None:
    base, h = sim.base_url("cohere-fleet"), bearer()
    r = await client.post(
        base + "/v2/embed", headers=h, json={"model": "embed-english-v3.0", "texts": ["ping"]}
    )
    assert r.status_code == 400
    assert r.json()["message"].startswith("invalid request: input_type")
    r = await client.post(
        base + "/v2/chat", headers=h, json={"model": "embed-english-v3.0", "messages": PING}
    )
    assert r.status_code == 400
    assert "not supported for the chat endpoint" in r.json()["message"]
    r = await client.get(base + "/v1/models")
    assert r.json() == {"message": "no api key supplied"}


# -- Anthropic, Ollama, Gemini additions ------------------------------------------------


async def test_anthropic_takes_a_bearer_key_and_counts_tokens_for_free(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    base = sim.base_url("anthropic")
    h = {**bearer(), "anthropic-version": "2023-06-01"}
    r = await client.get(base + "/v1/models", headers=h)
    assert r.status_code == 200
    r = await client.post(
        base + "/v1/messages/count_tokens",
        headers=h,
        json={"model": "claude-3-5-haiku-latest", "messages": PING},
    )
    assert r.json() == {"input_tokens": 1}
    r = await client.get(base + "/v1/models", headers={**bearer(WRONG), "anthropic-version": "1"})
    assert r.status_code == 401
    stats = sim.stats("anthropic")
    assert (stats.list_probes, stats.completion_probes) == (3, 0)


async def test_ollama_show_embed_and_wrong_mode(sim: Simulator, client: httpx.AsyncClient) -> None:
    base = sim.base_url("ollama")
    r = await client.post(base + "/api/show", json={"model": "llama3"})
    shown = r.json()
    assert shown["capabilities"] == ["completion"]
    assert shown["details"]["format"] == "gguf"
    assert "model_info" in shown
    r = await client.post(base + "/api/show", json={"model": "nomic-embed-text"})
    assert r.json()["capabilities"] == ["embedding"]
    r = await client.post(base + "/api/show", json={"model": "mistral"})
    assert (r.status_code, r.json()) == (404, {"error": "model 'mistral' not found"})

    r = await client.post(base + "/api/embed", json={"model": "nomic-embed-text", "input": "x"})
    body = r.json()
    assert len(body["embeddings"]) == 1 and body["prompt_eval_count"] == 1
    r = await client.post(
        base + "/api/embeddings", json={"model": "nomic-embed-text", "prompt": "x"}
    )
    assert len(r.json()["embedding"]) == 8
    r = await client.post(base + "/api/chat", json={"model": "nomic-embed-text", "messages": PING})
    assert (r.status_code, r.json()) == (400, {"error": '"nomic-embed-text" does not support chat'})
    r = await client.post(base + "/api/generate", json={"prompt": "x"})
    assert (r.status_code, r.json()) == (400, {"error": "model is required"})

    r = await client.post(base + "/api/generate", json={"model": "llama3", "prompt": "x"})
    assert (r.json()["prompt_eval_count"], r.json()["eval_count"]) == (1, 1)
    stats = sim.stats("ollama")
    assert (stats.list_probes, stats.completion_probes) == (3, 5)
    assert stats.billed_tokens == 1 + 1 + 2


async def test_gemini_embed_and_count_tokens(sim: Simulator, client: httpx.AsyncClient) -> None:
    base, q = sim.base_url("gemini"), {"key": KEY}
    content = {"parts": [{"text": "ping"}]}
    r = await client.post(
        base + "/models/text-embedding-004:embedContent", params=q, json={"content": content}
    )
    body = r.json()
    assert len(body["embedding"]["values"]) == 8
    assert body["usageMetadata"]["totalTokenCount"] == 1
    batch = {"requests": [{"model": "models/text-embedding-004", "content": content}] * 2}
    r = await client.post(
        base + "/models/text-embedding-004:batchEmbedContents", params=q, json=batch
    )
    assert len(r.json()["embeddings"]) == 2
    r = await client.post(
        base + "/models/gemini-2.0-flash:countTokens", params=q, json={"contents": [content]}
    )
    assert r.json() == {"totalTokens": 1}
    r = await client.post(
        base + "/models/text-embedding-004:generateContent", params=q, json={"contents": [content]}
    )
    assert r.status_code == 404
    assert "is not supported for generateContent" in r.json()["error"]["message"]
    r = await client.get(base + "/models", params=q)
    methods = [m["supportedGenerationMethods"] for m in r.json()["models"]]
    assert methods == [["generateContent", "countTokens"], ["embedContent", "countTokens"]]
    stats = sim.stats("gemini")
    assert (stats.list_probes, stats.completion_probes, stats.billed_tokens) == (2, 3, 1 + 2)


# -- a provider at the server's root: probe paths at the base URL's origin ------


async def test_provider_at_root_answers_its_origin_paths(client: httpx.AsyncClient) -> None:
    providers = [
        SimProvider("vllm", "vllm", KEY, ["qwen2"], Behavior(latency=0.0)),
        SimProvider("other", "openai", KEY, ["gpt-4o"], Behavior(latency=0.0)),
    ]
    sim = Simulator(providers, at_root="vllm")
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        assert sim.base_url("vllm") == sim.root_url + "/v1"
        assert sim.base_url("other") == sim.root_url + "/other/v1"
        r = await client.get(sim.root_url + "/health")  # outside the API: no key
        assert (r.status_code, r.content) == (200, b"")
        r = await client.get(sim.base_url("vllm") + "/models", headers=bearer())
        assert r.json()["data"][0]["id"] == "qwen2"
        r = await client.get(sim.base_url("other") + "/models", headers=bearer())
        assert r.json()["data"][0]["id"] == "gpt-4o"
        assert sim.stats("vllm").list_probes == 2
        sim.set_behavior("vllm", mode="status", status=503)
        r = await client.get(sim.root_url + "/health")
        assert r.status_code == 503
        nursery.cancel_scope.cancel()
    with pytest.raises(ValueError):
        Simulator(providers, at_root="ghost")


async def test_provider_entries_carry_a_non_chat_mode() -> None:
    sim = Simulator(
        [
            SimProvider("emb", "openai", KEY, ["text-embedding-3-small"]),
            SimProvider("chat", "openai", KEY, ["gpt-4o"]),
        ]
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        entries = {e["name"]: e for e in sim.provider_entries()}
        nursery.cancel_scope.cancel()
    assert entries["emb"]["mode"] == "embedding"
    assert "mode" not in entries["chat"]

"""The OpenAI family's model modes: each endpoint's validation, answer, usage and billing.

A model's mode (by name, or given in ``models``) decides which endpoints it
answers; a call to the wrong one gets the provider's own error. Every test
goes over loopback HTTP with httpx and reads the counters back.
"""

from __future__ import annotations

import base64
import io
import struct
import wave
from typing import Any

import httpx
import pytest

from service.testing.simulator import Behavior, SimProvider, Simulator
from service.testing.simulator.audio import silent_wav
from service.testing.simulator.behavior import default_mode

KEY = "sk-sim-modes-0123456789"
H = {"Authorization": f"Bearer {KEY}"}
AZ = {"api-key": KEY}
Q = {"api-version": "2024-10-21"}
PING = [{"role": "user", "content": "ping"}]
MODELS: list[Any] = [
    "gpt-4o-mini",
    "o3-mini",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "dall-e-2",
    "dall-e-3",
    "gpt-image-1",
    "tts-1",
    "whisper-1",
    "gpt-4o-transcribe",
    "bge-reranker-v2-m3",
    "omni-moderation-latest",
    {"id": "house-embedder", "mode": "embedding"},
    {"id": "house-thinker", "reasoning": True},
]


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    fast = Behavior(latency=0.0)
    return [
        SimProvider("openai", "openai", KEY, list(MODELS), fast),
        SimProvider("vllm", "vllm", KEY, ["qwen2", "bge-reranker-v2-m3"], fast),
        SimProvider("azure", "azure", KEY, ["gpt-4o", "text-embedding-3-small", "o1"], fast),
    ]


@pytest.fixture
async def client() -> Any:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as c:
        yield c


async def post(
    sim: Simulator, client: httpx.AsyncClient, path: str, provider: str = "openai", **kw: Any
) -> httpx.Response:
    headers = AZ if provider == "azure" else H
    params = Q if provider == "azure" else None
    return await client.post(sim.base_url(provider) + path, headers=headers, params=params, **kw)


def openai_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize(
    ("model", "mode"),
    [
        ("text-embedding-3-large", "embedding"),
        ("nomic-embed-text:latest", "embedding"),
        ("dall-e-3", "image_generation"),
        ("gpt-image-1", "image_generation"),
        ("tts-1-hd", "audio_speech"),
        ("gpt-4o-mini-tts", "audio_speech"),
        ("whisper-1", "audio_transcription"),
        ("gpt-4o-transcribe", "audio_transcription"),
        ("BAAI/bge-reranker-v2-m3", "rerank"),
        ("omni-moderation-latest", "moderation"),
        ("gpt-3.5-turbo-instruct", "completion"),
        ("meta-llama/Llama-3-8B-Instruct", "chat"),
        ("gpt-4o", "chat"),
    ],
)
def test_a_models_mode_defaults_by_its_name(model: str, mode: str) -> None:
    assert default_mode(model) == mode


def test_model_entries_carry_mode_and_reasoning_and_are_validated() -> None:
    provider = SimProvider("p", "openai", None, list(MODELS))
    assert provider.models[-2:] == ["house-embedder", "house-thinker"]
    assert provider.mode_of("house-embedder") == "embedding"
    assert provider.is_reasoning("house-thinker") and provider.is_reasoning("openai/o4-mini")
    assert not provider.is_reasoning("gpt-4o")
    for bad in ({"id": "m", "mode": "telepathy"}, {"id": ""}, {"model": "m"}, 3):
        with pytest.raises(ValueError):
            SimProvider("p", "openai", None, [bad])


# -- chat and reasoning models ----------------------------------------------------


async def test_reasoning_model_refuses_max_tokens_with_openais_error(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    for provider, model in (("openai", "o3-mini"), ("openai", "house-thinker"), ("azure", "o1")):
        payload = {"model": model, "messages": PING, "max_tokens": 1}
        path = (
            "/chat/completions"
            if provider == "openai"
            else f"/openai/deployments/{model}/chat/completions"
        )
        r = await post(sim, client, path, provider, json=payload)
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["message"] == (
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead."
        )
        assert (error["param"], error["code"]) == ("max_tokens", "unsupported_parameter")
    assert sim.stats("openai").billed_tokens == 0


async def test_reasoning_model_thinks_before_answering(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    payload = {"model": "o3-mini", "messages": PING, "max_completion_tokens": 1}
    r = await post(sim, client, "/chat/completions", json=payload)
    choice, usage = r.json()["choices"][0], r.json()["usage"]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("", "length")
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 1}

    r = await post(sim, client, "/chat/completions", json={**payload, "max_completion_tokens": 64})
    choice, usage = r.json()["choices"][0], r.json()["usage"]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("p", "stop")
    assert usage == {
        "prompt_tokens": 1,
        "completion_tokens": 9,
        "total_tokens": 10,
        "completion_tokens_details": {"reasoning_tokens": 8},
    }
    stats = sim.stats("openai")
    assert (stats.max_tokens_requested, stats.billed_tokens) == (65, 2 + 10)


async def test_chat_validates_fields_like_openai(sim: Simulator, client: httpx.AsyncClient) -> None:
    cases: list[tuple[dict[str, Any], str | None, str]] = [
        ({"messages": PING}, None, "you must provide a model parameter"),
        (
            {"model": "gpt-4o-mini"},
            "missing_required_parameter",
            "Missing required parameter: 'messages'.",
        ),
        (
            {"model": "gpt-4o-mini", "messages": []},
            "empty_array",
            "Invalid 'messages': empty array.",
        ),
        ({"model": "gpt-4o-mini", "messages": "hi"}, "invalid_type", "Invalid type for 'messages'"),
        (
            {"model": "gpt-4o-mini", "messages": PING, "max_tokens": "1"},
            "invalid_type",
            "Invalid type for 'max_tokens': expected an integer, but got a string instead.",
        ),
        (
            {"model": "gpt-4o-mini", "messages": PING, "max_tokens": 0},
            "integer_below_min_value",
            "Invalid 'max_tokens': integer below minimum value.",
        ),
    ]
    for payload, code, message in cases:
        error = openai_error(await post(sim, client, "/chat/completions", json=payload), 400)
        assert error["code"] == code
        assert error["message"].startswith(message)


# -- a model's mode decides its endpoints ------------------------------------------


async def test_wrong_endpoint_for_a_models_mode_gets_the_providers_error(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    chat = {"messages": PING, "max_tokens": 1}
    error = openai_error(
        await post(
            sim, client, "/chat/completions", json={"model": "text-embedding-3-small", **chat}
        ),
        404,
    )
    assert error["message"].startswith("This is not a chat model")
    error = openai_error(
        await post(sim, client, "/completions", json={"model": "gpt-4o-mini", "prompt": "x"}), 404
    )
    assert error["message"].startswith("This is a chat model and not supported")
    error = openai_error(
        await post(sim, client, "/embeddings", json={"model": "gpt-4o-mini", "input": "x"}), 400
    )
    assert error["code"] == "model_not_supported"
    error = openai_error(
        await post(sim, client, "/chat/completions", json={"model": "house-embedder", **chat}), 404
    )

    r = await post(
        sim,
        client,
        "/openai/deployments/text-embedding-3-small/chat/completions",
        "azure",
        json=chat,
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "OperationNotSupported"
    assert r.json()["error"]["message"].startswith(
        "The chatCompletion operation does not work with the specified model, "
        "text-embedding-3-small."
    )

    # vLLM and the other compatible servers complete with a chat model.
    r = await post(sim, client, "/completions", "vllm", json={"model": "qwen2", "prompt": "x"})
    assert r.status_code == 200
    assert r.json()["object"] == "text_completion"
    assert sim.stats("openai").billed_tokens == 0


# -- one healthy call per mode, with its usage and what it bills --------------------


async def test_each_mode_answers_with_its_real_shape_and_bills_its_usage(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    r = await post(
        sim,
        client,
        "/completions",
        json={"model": "gpt-3.5-turbo-instruct", "prompt": "ping", "max_tokens": 1},
    )
    assert r.json()["choices"][0]["text"] == "p"
    assert r.json()["usage"]["total_tokens"] == 2

    r = await post(
        sim, client, "/embeddings", json={"model": "text-embedding-3-small", "input": ["a b", "c"]}
    )
    body = r.json()
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}

    r = await post(
        sim,
        client,
        "/images/generations",
        json={"model": "gpt-image-1", "prompt": "ping", "size": "1024x1024"},
    )
    body = r.json()
    assert base64.b64decode(body["data"][0]["b64_json"]).startswith(b"\x89PNG")
    assert body["usage"]["total_tokens"] == 1 + 272

    r = await post(
        sim,
        client,
        "/rerank",
        json={
            "model": "bge-reranker-v2-m3",
            "query": "ping",
            "documents": ["pong", {"text": "x"}],
            "top_n": 1,
        },
    )
    body = r.json()
    assert body["results"] == [{"index": 0, "relevance_score": 0.9, "document": {"text": "pong"}}]
    assert body["usage"] == {"total_tokens": 3}

    r = await post(sim, client, "/moderations", json={"input": "ping"})
    body = r.json()
    assert (body["model"], body["results"][0]["flagged"]) == ("omni-moderation-latest", False)

    r = await post(
        sim,
        client,
        "/responses",
        json={"model": "gpt-4o-mini", "input": "ping", "max_output_tokens": 16},
    )
    body = r.json()
    assert (body["object"], body["status"]) == ("response", "completed")
    assert body["output"][0]["content"][0] == {
        "type": "output_text",
        "text": "p",
        "annotations": [],
    }
    assert body["usage"]["total_tokens"] == 2

    stats = sim.stats("openai")
    assert (stats.list_probes, stats.completion_probes) == (0, 6)
    assert stats.billed_tokens == 2 + 3 + 273 + 3 + 0 + 2


async def test_embeddings_in_base64_are_little_endian_float32(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    payload = {
        "model": "text-embedding-3-small",
        "input": "x",
        "encoding_format": "base64",
        "dimensions": 4,
    }
    r = await post(sim, client, "/embeddings", json=payload)
    raw = base64.b64decode(r.json()["data"][0]["embedding"])
    assert struct.unpack("<4f", raw) == pytest.approx((0.1, 0.2, 0.3, 0.4))
    error = openai_error(
        await post(sim, client, "/embeddings", json={**payload, "encoding_format": "hex"}), 400
    )
    assert (error["param"], error["code"]) == ("encoding_format", "invalid_value")
    error = openai_error(
        await post(
            sim, client, "/embeddings", json={"model": "text-embedding-3-small", "input": ""}
        ),
        400,
    )
    assert error["message"].startswith("'$.input' is invalid.")


async def test_image_sizes_are_checked_per_model(sim: Simulator, client: httpx.AsyncClient) -> None:
    probe = {"prompt": "ping", "n": 1, "size": "256x256"}
    r = await post(sim, client, "/images/generations", json={"model": "dall-e-2", **probe})
    assert r.json()["data"][0]["url"].startswith("https://")
    assert "usage" not in r.json()  # DALL-E is billed per image, not in tokens
    error = openai_error(
        await post(sim, client, "/images/generations", json={"model": "dall-e-3", **probe}), 400
    )
    assert (
        error["message"]
        == "'256x256' is not one of ['1024x1024', '1024x1792', '1792x1024'] - 'size'"
    )
    error = openai_error(
        await post(
            sim, client, "/images/generations", json={"model": "dall-e-3", "prompt": "x", "n": 2}
        ),
        400,
    )
    assert error["code"] == "integer_above_max_value"


async def test_speech_answers_audio_bytes(sim: Simulator, client: httpx.AsyncClient) -> None:
    r = await post(
        sim, client, "/audio/speech", json={"model": "tts-1", "input": "a", "voice": "alloy"}
    )
    assert (r.status_code, r.headers["content-type"]) == (200, "audio/mpeg")
    r = await post(
        sim,
        client,
        "/audio/speech",
        json={"model": "tts-1", "input": "abc", "voice": "alloy", "response_format": "wav"},
    )
    assert r.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(r.content)) as wav:
        assert wav.getnframes() > 0
    error = openai_error(
        await post(
            sim, client, "/audio/speech", json={"model": "tts-1", "input": "a", "voice": "robot"}
        ),
        400,
    )
    assert (error["param"], error["code"]) == ("voice", "invalid_value")
    error = openai_error(
        await post(sim, client, "/audio/speech", json={"model": "tts-1", "input": "a"}), 400
    )
    assert error["code"] == "missing_required_parameter"
    stats = sim.stats("openai")
    assert (stats.completion_probes, stats.billed_tokens) == (4, 0)


# -- transcriptions: a multipart upload of a WAV file ---------------------------------


async def transcribe(
    sim: Simulator,
    client: httpx.AsyncClient,
    filename: str,
    content: bytes,
    model: str = "whisper-1",
    **fields: str,
) -> httpx.Response:
    return await post(
        sim,
        client,
        "/audio/transcriptions",
        data={"model": model, **fields},
        files={"file": (filename, content, "application/octet-stream")},
    )


async def test_transcription_of_a_wav_file(sim: Simulator, client: httpx.AsyncClient) -> None:
    r = await transcribe(sim, client, "silence.wav", silent_wav(1.5))
    assert r.json() == {"text": "", "usage": {"type": "duration", "seconds": 2}}
    r = await transcribe(sim, client, "silence.wav", silent_wav(0.5), "gpt-4o-transcribe")
    assert r.json()["usage"] == {
        "type": "tokens",
        "input_tokens": 5,
        "input_token_details": {"text_tokens": 0, "audio_tokens": 5},
        "output_tokens": 1,
        "total_tokens": 6,
    }
    r = await transcribe(sim, client, "a.wav", silent_wav(0.1), response_format="text")
    assert (r.headers["content-type"], r.content) == ("text/plain; charset=utf-8", b"")
    r = await transcribe(sim, client, "a.wav", silent_wav(0.1), response_format="verbose_json")
    assert r.json()["duration"] == pytest.approx(0.1)
    stats = sim.stats("openai")
    assert (stats.completion_probes, stats.billed_tokens) == (4, 6)


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("empty.wav", b"", "Audio file might be corrupted or unsupported"),
        ("fake.wav", b"RIFF....not a wave file", "Audio file might be corrupted or unsupported"),
        ("notes.txt", silent_wav(0.1), "Invalid file format. Supported formats: ['flac', "),
    ],
)
async def test_transcription_rejects_what_is_not_a_wav_file(
    sim: Simulator, client: httpx.AsyncClient, filename: str, content: bytes, message: str
) -> None:
    error = openai_error(await transcribe(sim, client, filename, content), 400)
    assert error["message"].startswith(message)
    assert sim.stats("openai").billed_tokens == 0


async def test_transcription_needs_a_multipart_body_and_a_file(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    error = openai_error(
        await post(sim, client, "/audio/transcriptions", json={"model": "whisper-1"}), 400
    )
    assert error["message"].startswith("Invalid Content-Type header (application/json)")
    r = await post(
        sim,
        client,
        "/audio/transcriptions",
        data={"model": "whisper-1"},
        files={"other": ("x", b"1")},
    )
    assert openai_error(r, 400)["param"] == "file"
    r = await transcribe(
        sim, client, "a.wav", silent_wav(0.1), "gpt-4o-transcribe", response_format="srt"
    )
    assert openai_error(r, 400)["code"] == "unsupported_value"


async def test_responses_needs_room_to_answer(sim: Simulator, client: httpx.AsyncClient) -> None:
    payload = {"model": "gpt-4o-mini", "input": "ping", "max_output_tokens": 1}
    error = openai_error(await post(sim, client, "/responses", json=payload), 400)
    assert error["message"] == (
        "Invalid 'max_output_tokens': integer below minimum value. "
        "Expected a value >= 16, but got 1 instead."
    )
    r = await post(
        sim, client, "/responses", json={**payload, "model": "o3-mini", "max_output_tokens": 16}
    )
    body = r.json()
    assert [item["type"] for item in body["output"]] == ["reasoning", "message"]
    assert body["usage"]["output_tokens_details"] == {"reasoning_tokens": 8}


# -- Azure: every mode under its deployment -------------------------------------------


@pytest.mark.parametrize(
    ("deployment", "path", "payload"),
    [
        ("gpt-4o", "chat/completions", {"messages": PING, "max_tokens": 1}),
        ("text-embedding-3-small", "embeddings", {"input": "ping"}),
        ("gpt-4o", "responses", {"input": "ping", "max_output_tokens": 16}),
        ("o1", "chat/completions", {"messages": PING, "max_completion_tokens": 64}),
    ],
)
async def test_azure_serves_each_mode_under_its_deployment(
    sim: Simulator, client: httpx.AsyncClient, deployment: str, path: str, payload: dict[str, Any]
) -> None:
    r = await post(sim, client, f"/openai/deployments/{deployment}/{path}", "azure", json=payload)
    assert r.status_code == 200, r.text
    assert sim.stats("azure").billed_tokens > 0


async def test_azure_responses_at_the_sdks_path_takes_the_deployment_from_the_body(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    payload = {"model": "gpt-4o", "input": "ping", "max_output_tokens": 16}
    r = await post(sim, client, "/openai/responses", "azure", json=payload)
    assert r.json()["model"] == "gpt-4o"
    r = await post(sim, client, "/openai/responses", "azure", json={**payload, "model": "gpt-9"})
    assert r.json()["error"]["code"] == "DeploymentNotFound"


async def test_billed_tokens_count_only_delivered_answers(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    payload = {"model": "gpt-4o-mini", "messages": PING, "max_tokens": 1}
    sim.set_behavior("openai", mode="rate_limited")
    await post(sim, client, "/chat/completions", json=payload)
    sim.set_behavior("openai", mode="malformed_json")
    await post(sim, client, "/chat/completions", json=payload)
    assert sim.stats("openai").billed_tokens == 0
    sim.set_behavior("openai", mode="ok")
    await post(sim, client, "/chat/completions", json=payload)
    stats = sim.stats("openai")
    assert (stats.completion_probes, stats.billed_tokens) == (3, 2)
    sim.reset_stats()
    assert sim.stats("openai").billed_tokens == 0

"""Each mode's probes: the exact request per provider family, and the answer's verdict and tokens."""

from __future__ import annotations

import io
import wave
from typing import Any

import pytest

from adapters import (
    ADAPTER_TYPES,
    MODES,
    AnthropicAdapter,
    AzureOpenAIAdapter,
    CohereAdapter,
    FailureKind,
    GeminiAdapter,
    HttpAdapter,
    OllamaAdapter,
    OpenAIAdapter,
    OpenAICompatibleAdapter,
    Secret,
    VolcengineAdapter,
)
from adapters.modes import is_reasoning_model, silent_wav, usage_tokens

KEY = Secret("rhtestkey-modes-0123456789abcdef")
BEARER = {"Authorization": f"Bearer {KEY.reveal()}"}


def make(cls: type[HttpAdapter], mode: str = "chat", probe: str = "completion", **kwargs: Any) -> HttpAdapter:
    base = kwargs.pop("base_url", cls.default_base_url or "https://example.test/v1")
    kwargs.setdefault("model", "m-1")
    return cls(provider="p", base_url=base, api_key=KEY, probe=probe, mode=mode, **kwargs)


# -- the OpenAI family: one path and body per mode -----------------------------------------------

OPENAI_CALLS = [
    ("chat", "/chat/completions",
     {"model": "m-1", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}),
    ("completion", "/completions", {"model": "m-1", "prompt": "ping", "max_tokens": 1}),
    ("embedding", "/embeddings", {"model": "m-1", "input": "ping"}),
    ("audio_speech", "/audio/speech", {"model": "m-1", "input": "a", "voice": "alloy"}),
    ("moderation", "/moderations", {"model": "m-1", "input": "ping"}),
    ("responses", "/responses", {"model": "m-1", "input": "ping", "max_output_tokens": 16}),
]


@pytest.mark.parametrize(("mode", "path", "body"), OPENAI_CALLS)
def test_openai_sends_each_modes_cheapest_call(mode: str, path: str, body: dict[str, Any]) -> None:
    request = make(OpenAIAdapter, mode).build_request()
    assert (request.method, request.url) == ("POST", "https://api.openai.com/v1" + path)
    assert request.headers == BEARER
    assert request.json_body == body


@pytest.mark.parametrize(
    ("model", "cheapest"),
    [
        ("dall-e-2", {"size": "256x256"}),
        ("dall-e-3", {"size": "1024x1024"}),
        ("gpt-image-1", {"size": "1024x1024", "quality": "low"}),
        ("openai/gpt-image-1-mini", {"size": "1024x1024", "quality": "low"}),
        ("grok-2-image", {}),  # another provider's model: its own default size
    ],
)
def test_an_image_probe_asks_for_one_cheapest_image_only_when_allowed(
    model: str, cheapest: dict[str, str]
) -> None:
    adapter = make(OpenAIAdapter, "image_generation", model=model, allow_image_probe=True)
    request = adapter.build_request()
    assert request.url == "https://api.openai.com/v1/images/generations"
    assert request.json_body == {"model": model, "prompt": "a small grey dot", "n": 1, **cheapest}
    with pytest.raises(ValueError, match="allow_image_probe"):
        make(OpenAIAdapter, "image_generation", model=model).build_request()


def test_a_transcription_probe_uploads_a_tiny_silent_wav_as_multipart() -> None:
    request = make(OpenAIAdapter, "audio_transcription").build_request()
    assert request.url == "https://api.openai.com/v1/audio/transcriptions"
    assert request.json_body is None and request.content is not None
    assert request.content_type is not None
    boundary = request.content_type.removeprefix("multipart/form-data; boundary=")
    assert boundary != request.content_type
    parts = request.content.split(f"--{boundary}".encode())
    assert parts[-1] == b"--\r\n"
    assert b'name="model"\r\n\r\nm-1\r\n' in parts[1]
    head, _, wav = parts[2].partition(b"\r\n\r\n")
    assert b'name="file"; filename="probe.wav"' in head and b"Content-Type: audio/wav" in head
    with wave.open(io.BytesIO(wav.removesuffix(b"\r\n"))) as audio:
        assert (audio.getnchannels(), audio.getframerate()) == (1, 8000)
        assert audio.getnframes() / audio.getframerate() == 0.1
        assert set(audio.readframes(audio.getnframes())) == {0}


def test_the_silent_wav_is_small() -> None:
    assert len(silent_wav()) < 2048


def test_a_rerank_probe_sends_one_short_document() -> None:
    adapter = make(OpenAICompatibleAdapter, "rerank", base_url="http://127.0.0.1:8000/v1")
    request = adapter.build_request()
    assert request.url == "http://127.0.0.1:8000/v1/rerank"
    assert request.json_body == {"model": "m-1", "query": "ping", "documents": ["pong"], "top_n": 1}


@pytest.mark.parametrize("mode", sorted(OpenAIAdapter.modes))
def test_the_free_probe_is_the_model_list_whatever_the_mode(mode: str) -> None:
    request = make(OpenAIAdapter, mode, probe="models").build_request()
    assert (request.method, request.url, request.json_body) == (
        "GET", "https://api.openai.com/v1/models", None,
    )


@pytest.mark.parametrize("model", ["o1", "o3-mini", "o4-mini-2025-04-16", "gpt-5", "gpt-5-mini",
                                   "openai/o3", "azure/gpt-5.1"])
def test_reasoning_models_are_recognised_after_any_prefix(model: str) -> None:
    assert is_reasoning_model(model)


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4.1-mini", "o1x", "claude-3-opus", "llama3"])
def test_other_models_are_not_reasoning_models(model: str) -> None:
    assert not is_reasoning_model(model)


def test_a_reasoning_model_gets_max_completion_tokens_with_room_to_answer() -> None:
    body = make(OpenAIAdapter, model="o3-mini").build_request().json_body
    assert body["max_completion_tokens"] == 64 and "max_tokens" not in body


def test_reasoning_set_in_config_wins_over_the_model_id() -> None:
    forced = make(OpenAIAdapter, model="my-finetune", reasoning=True).build_request().json_body
    assert forced["max_completion_tokens"] == 64 and "max_tokens" not in forced
    plain = make(OpenAIAdapter, model="o1", reasoning=False).build_request().json_body
    assert plain["max_tokens"] == 1 and "max_completion_tokens" not in plain


def test_max_tokens_sets_the_budget_and_responses_keep_their_minimum() -> None:
    assert make(OpenAIAdapter, max_tokens=5).build_request().json_body["max_tokens"] == 5
    reasoning = make(OpenAIAdapter, model="gpt-5", max_tokens=200).build_request().json_body
    assert reasoning["max_completion_tokens"] == 200
    responses = make(OpenAIAdapter, "responses", max_tokens=2).build_request().json_body
    assert responses["max_output_tokens"] == 16
    thinking = make(OpenAIAdapter, "responses", model="o3").build_request().json_body
    assert thinking["max_output_tokens"] == 64


AZURE_PATHS = {
    "chat": "chat/completions", "completion": "completions", "embedding": "embeddings",
    "image_generation": "images/generations", "audio_speech": "audio/speech",
    "audio_transcription": "audio/transcriptions",
}


@pytest.mark.parametrize("mode", sorted(AZURE_PATHS))
def test_azure_calls_the_deployment_with_no_model_in_the_body(mode: str) -> None:
    adapter = make(
        AzureOpenAIAdapter, mode, base_url="https://res.openai.azure.com",
        options={"deployment": "dep-1"}, allow_image_probe=True,
    )
    request = adapter.build_request()
    assert request.url == f"https://res.openai.azure.com/openai/deployments/dep-1/{AZURE_PATHS[mode]}"
    assert request.params == {"api-version": "2024-10-21"}
    assert request.headers == {"api-key": KEY.reveal()}
    if request.json_body is not None:
        assert "model" not in request.json_body
    else:
        assert request.content is not None and b'name="model"' not in request.content
    assert AzureOpenAIAdapter.modes == frozenset(AZURE_PATHS)


def test_volcengine_serves_its_own_modes_in_openai_format() -> None:
    request = make(VolcengineAdapter, "embedding").build_request()
    assert request.url == "https://ark.cn-beijing.volces.com/api/v3/embeddings"
    with pytest.raises(ValueError, match="cannot probe mode 'audio_speech'"):
        make(VolcengineAdapter, "audio_speech")


# -- the native formats ------------------------------------------------------------------------


def test_gemini_chat_and_embedding() -> None:
    chat = make(GeminiAdapter, model="gemini-2.5-flash").build_request()
    assert chat.url.endswith("/models/gemini-2.5-flash:generateContent")
    assert chat.json_body == {
        "contents": [{"role": "user", "parts": [{"text": "ping"}]}],
        "generationConfig": {"maxOutputTokens": 1},
    }
    embed = make(GeminiAdapter, "embedding", model="models/text-embedding-004").build_request()
    assert embed.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004:embedContent"
    )
    assert embed.json_body == {"content": {"parts": [{"text": "ping"}]}}
    assert embed.headers == {"x-goog-api-key": KEY.reveal()}


def test_ollama_chat_completion_and_embedding_paths() -> None:
    base = "http://127.0.0.1:11434"
    chat = make(OllamaAdapter, base_url=base, model="llama3").build_request()
    assert chat.url == f"{base}/api/chat"
    assert chat.json_body == {
        "model": "llama3", "messages": [{"role": "user", "content": "ping"}],
        "stream": False, "options": {"num_predict": 1},
    }
    generate = make(OllamaAdapter, "completion", base_url=base, model="llama3").build_request()
    assert generate.url == f"{base}/api/generate" and generate.json_body["prompt"] == "ping"
    embed = make(OllamaAdapter, "embedding", base_url=base, model="nomic-embed-text").build_request()
    assert (embed.url, embed.json_body) == (
        f"{base}/api/embed", {"model": "nomic-embed-text", "input": "ping"},
    )


def test_anthropic_is_chat_only_and_gives_reasoning_room() -> None:
    assert AnthropicAdapter.modes == frozenset({"chat"})
    body = make(AnthropicAdapter, reasoning=True).build_request().json_body
    assert body["max_tokens"] == 64
    with pytest.raises(ValueError, match="its modes: chat"):
        make(AnthropicAdapter, "embedding")


def test_cohere_lists_v1_models_and_calls_v2() -> None:
    free = make(CohereAdapter, probe="models").build_request()
    assert (free.method, free.url) == ("GET", "https://api.cohere.com/v1/models")
    assert free.params == {"page_size": "1000"} and free.headers == BEARER
    chat = make(CohereAdapter, model="command-r").build_request()
    assert chat.url == "https://api.cohere.com/v2/chat"
    assert chat.json_body == {
        "model": "command-r", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1,
    }
    embed = make(CohereAdapter, "embedding", model="embed-v4.0").build_request()
    assert embed.url == "https://api.cohere.com/v2/embed"
    assert embed.json_body == {
        "model": "embed-v4.0", "texts": ["ping"], "input_type": "search_query",
        "embedding_types": ["float"],
    }
    rerank = make(CohereAdapter, "rerank", model="rerank-v3.5").build_request()
    assert rerank.url == "https://api.cohere.com/v2/rerank"
    assert rerank.json_body == {
        "model": "rerank-v3.5", "query": "ping", "documents": ["pong"], "top_n": 1,
    }


def test_every_type_declares_the_modes_it_can_probe() -> None:
    for kind, cls in ADAPTER_TYPES.items():
        assert cls.modes <= frozenset(MODES), kind
        if kind != "unsupported":
            assert "chat" in cls.modes or kind in ("bedrock", "vertex-ai"), kind


# -- verdicts and tokens -----------------------------------------------------------------------

OPENAI_USAGE = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}


@pytest.mark.parametrize(
    ("mode", "answer", "tokens"),
    [
        ("chat", {"choices": [{"index": 0}], "usage": OPENAI_USAGE}, 2),
        ("completion", {"choices": [{"text": "p"}], "usage": OPENAI_USAGE}, 2),
        ("embedding", {"data": [{"embedding": [0.1]}], "usage": {"prompt_tokens": 1, "total_tokens": 1}}, 1),
        ("image_generation", {"data": [{"b64_json": "..."}]}, None),
        ("audio_transcription", {"text": "", "usage": {"type": "duration", "seconds": 1}}, None),
        ("moderation", {"results": [{"flagged": False}]}, None),
        ("responses", {"output": [], "usage": {"input_tokens": 1, "output_tokens": 16, "total_tokens": 17}}, 17),
    ],
)
def test_openai_paid_answers_are_judged_per_mode_with_their_tokens(
    mode: str, answer: dict[str, Any], tokens: int | None
) -> None:
    outcome = make(OpenAIAdapter, mode, allow_image_probe=True).judge(answer)
    assert outcome.healthy, outcome.error
    assert outcome.tokens == tokens


def test_rerank_answers_count_their_usage() -> None:
    adapter = make(OpenAICompatibleAdapter, "rerank", base_url="http://127.0.0.1:8000/v1")
    outcome = adapter.judge({"results": [{"index": 0, "relevance_score": 0.5}], "usage": {"total_tokens": 3}})
    assert outcome.healthy and outcome.tokens == 3


@pytest.mark.parametrize(
    ("mode", "answer"),
    [("chat", {"choices": []}), ("embedding", {"data": []}), ("audio_transcription", {"txt": ""}),
     ("moderation", {}), ("responses", {"output": "x"}), ("chat", ["not", "an", "object"])],
)
def test_a_paid_answer_of_the_wrong_shape_is_a_bad_body(mode: str, answer: Any) -> None:
    outcome = make(OpenAIAdapter, mode).judge(answer)
    assert not outcome.healthy and outcome.failure is FailureKind.BAD_BODY


def test_usage_shapes_of_every_provider_add_up() -> None:
    assert usage_tokens({"prompt_tokens": 3, "completion_tokens": 1}) == 4
    assert usage_tokens({"input_tokens": 5, "output_tokens": 1}) == 6
    assert usage_tokens({"total_tokens": 9, "prompt_tokens": 1}) == 9
    assert usage_tokens({"total_tokens": True}) is None
    assert usage_tokens({"prompt_tokens": -1}) is None
    assert usage_tokens("12") is None


def test_native_answers_fill_tokens() -> None:
    anthropic = make(AnthropicAdapter).judge(
        {"type": "message", "content": [], "usage": {"input_tokens": 8, "output_tokens": 1}}
    )
    assert anthropic.tokens == 9
    gemini = make(GeminiAdapter).judge({"candidates": [], "usageMetadata": {"totalTokenCount": 3}})
    assert gemini.tokens == 3
    assert make(GeminiAdapter, "embedding").judge({"embedding": {"values": [0.5]}}).healthy
    cohere_chat = make(CohereAdapter).judge(
        {"message": {"role": "assistant"},
         "usage": {"billed_units": {"input_tokens": 1, "output_tokens": 1},
                   "tokens": {"input_tokens": 70, "output_tokens": 1}}}
    )
    assert cohere_chat.tokens == 2  # what is billed, not the template's tokens
    cohere_embed = make(CohereAdapter, "embedding").judge(
        {"embeddings": {"float": [[0.1]]}, "meta": {"billed_units": {"input_tokens": 1}}}
    )
    assert cohere_embed.tokens == 1
    cohere_rerank = make(CohereAdapter, "rerank").judge(
        {"results": [], "meta": {"billed_units": {"search_units": 1}}}
    )
    assert cohere_rerank.healthy and cohere_rerank.tokens is None  # search units, not tokens
    ollama = make(OllamaAdapter, base_url="http://127.0.0.1:11434").judge(
        {"done": True, "prompt_eval_count": 1, "eval_count": 1}
    )
    assert ollama.tokens == 2
    embed = make(OllamaAdapter, "embedding", base_url="http://127.0.0.1:11434")
    assert embed.judge({"embeddings": [[0.1]], "prompt_eval_count": 1}).tokens == 1

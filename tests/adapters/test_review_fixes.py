"""Review fixes: each speech provider's own voice; a 404 is a missing model only when it says so.

The speech cases run against the simulator, which takes only the voices a kind
documents, so a probe that asks every provider for OpenAI's "alloy" fails
there as it does upstream.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from adapters import ADAPTER_TYPES, FailureKind, ProbeOutcome, Secret
from adapters.base import ProbeRequest, RawResponse
from adapters.registry import PROVIDERS, ProviderSpec, adapter_class
from service import ConfigError, ProbeResult, ProbeStatus, parse_config
from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support.configs import probe_entry

KEY = "rhtestkey-review-0123456789abcdef"
SPEECH_KINDS = sorted(kind for kind, cls in ADAPTER_TYPES.items() if "audio_speech" in cls.modes)
#: A speech model of each provider, as its docs name them.
SPEECH_MODELS = {
    "groq": ("playai-tts", "canopylabs/orpheus-v1-english", "canopylabs/orpheus-arabic-saudi"),
    "together": ("cartesia/sonic-2", "hexgrad/Kokoro-82M", "canopylabs/orpheus-3b-0.1-ft"),
    "siliconflow": ("FunAudioLLM/CosyVoice2-0.5B", "fishaudio/fish-speech-1.5"),
}


#: Every type the simulator serves over plain HTTP (Bedrock and Vertex need their extras).
CHAT_KINDS = [kind for kind in ADAPTER_TYPES if kind not in ("unsupported", "bedrock", "vertex-ai")]


def speech_models(kind: str) -> tuple[str, ...]:
    return SPEECH_MODELS.get(kind, ("tts-1",))


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    speakers = [
        SimProvider(
            kind, kind, KEY, list(speech_models(kind)), Behavior(latency=0.0),
            model_modes=dict.fromkeys(speech_models(kind), "audio_speech"),
        )
        for kind in SPEECH_KINDS
    ]
    chatters = [
        SimProvider(
            f"{kind}-chat", kind, KEY if ADAPTER_TYPES[kind].key_required else None,
            ["sim-chat"], Behavior(latency=0.0), model_modes={"sim-chat": "chat"},
        )
        for kind in CHAT_KINDS
    ]
    return speakers + chatters


async def probe(sim: Simulator, kind: str, model: str, **overrides: Any) -> ProbeResult:
    entry = {"mode": "audio_speech", "probe": "completion", **overrides}
    return await probe_entry(sim, kind, model=model, **entry)


def speech_body(kind: str, model: str, **options: str) -> dict[str, Any]:
    cls = ADAPTER_TYPES[kind]
    adapter = cls(
        provider="p", base_url=cls.default_base_url or "https://example.test/v1", model=model,
        api_key=Secret(KEY), probe="completion", mode="audio_speech", options=options,
    )
    body = adapter.build_request().json_body
    assert body is not None
    return body


# -- 1: the speech probe asks each provider for a voice it has ------------------------------------


@pytest.mark.parametrize(
    ("kind", "model", "voice"),
    [
        ("openai", "tts-1", "alloy"),
        ("azure", "tts-1", "alloy"),
        ("openai-compatible", "tts-1", "alloy"),
        ("groq", "playai-tts", "Arista-PlayAI"),
        ("groq", "playai-tts-arabic", "Ahmad-PlayAI"),
        ("groq", "canopylabs/orpheus-v1-english", "autumn"),
        ("groq", "canopylabs/orpheus-arabic-saudi", "fahad"),
        ("together", "cartesia/sonic-2", "laidback woman"),
        ("together", "hexgrad/Kokoro-82M", "af_alloy"),
        ("together", "canopylabs/orpheus-3b-0.1-ft", "tara"),
        ("siliconflow", "FunAudioLLM/CosyVoice2-0.5B", "FunAudioLLM/CosyVoice2-0.5B:alex"),
    ],
)
def test_the_speech_probe_asks_for_the_providers_own_voice(
    kind: str, model: str, voice: str
) -> None:
    assert speech_body(kind, model)["voice"] == voice


def test_a_configured_voice_replaces_the_default_and_probe_model_picks_the_default() -> None:
    assert speech_body("groq", "playai-tts", voice="Fritz-PlayAI")["voice"] == "Fritz-PlayAI"
    cls = ADAPTER_TYPES["siliconflow"]
    adapter = cls(
        provider="p", base_url="https://example.test/v1", model="big-tts", api_key=Secret(KEY),
        probe="completion", mode="audio_speech", probe_model="FunAudioLLM/CosyVoice2-0.5B",
    )
    body = adapter.build_request().json_body
    assert body is not None and body["voice"] == "FunAudioLLM/CosyVoice2-0.5B:alex"


@pytest.mark.parametrize("kind", SPEECH_KINDS)
async def test_every_speech_providers_probe_is_healthy_with_its_models(
    sim: Simulator, kind: str
) -> None:
    for model in speech_models(kind):
        result = await probe(sim, kind, model)
        assert result.status is ProbeStatus.HEALTHY, (model, result.error)


@pytest.mark.parametrize("kind", ["groq", "together", "siliconflow"])
async def test_openais_voice_is_that_providers_400(sim: Simulator, kind: str) -> None:
    result = await probe(sim, kind, speech_models(kind)[0], voice="alloy")
    assert (result.status, result.failure, result.http_status) == (
        ProbeStatus.UNHEALTHY, FailureKind.HTTP_STATUS, 400,
    )
    assert result.error is not None and "'alloy'" in result.error


async def test_the_simulator_refuses_a_voice_another_provider_has(sim: Simulator) -> None:
    entry = next(e for e in sim.provider_entries() if e["name"] == "siliconflow")
    async with httpx.AsyncClient(base_url=entry["base_url"]) as client:
        for voice, status in (("alloy", 400), ("FunAudioLLM/CosyVoice2-0.5B:anna", 200)):
            reply = await client.post(
                "/audio/speech",
                json={"model": "FunAudioLLM/CosyVoice2-0.5B", "input": "a", "voice": voice},
                headers={"Authorization": f"Bearer {KEY}"},
            )
            assert reply.status_code == status, reply.text


@pytest.mark.parametrize(
    ("kind", "allowed"), [("mistral", False), ("volcengine", False), ("groq", True)]
)
def test_voice_is_a_key_of_the_types_that_serve_speech_only(kind: str, allowed: bool) -> None:
    table = {"name": "p", "type": kind, "api_key": KEY, "voice": "autumn", "mode": "audio_speech"}
    if kind == "mistral":
        table.pop("mode")  # mistral serves no speech: the mode is refused too
    config = {"models": [{"name": "m", "providers": [table]}]}
    if allowed:
        provider = parse_config(config, env={}).models[0].providers[0]
        assert provider.options == {"voice": "autumn"}
    else:
        with pytest.raises(ConfigError, match=r"voice: only applies to type"):
            parse_config(config, env={})


def test_a_registry_line_with_speech_must_name_its_voices() -> None:
    groq = next(spec for spec in PROVIDERS if spec.type == "groq")
    base = "https://x.test/v1"
    with pytest.raises(ValueError, match="voices go with audio_speech"):
        adapter_class(ProviderSpec("speaker", "SpeakerAdapter", base, "chat audio_speech"))
    with pytest.raises(ValueError, match="voices go with audio_speech"):
        adapter_class(ProviderSpec("mute", "MuteAdapter", base, "chat", voices=groq.voices))


# -- 3: a 404 is a missing model only when the provider says so -----------------------------------


class Canned:
    """A transport answering every request with one response."""

    def __init__(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.response = RawResponse(status, dict(headers or {}), body, False)

    async def fetch(self, request: ProbeRequest, *, max_body_bytes: int) -> RawResponse:
        return self.response

    async def aclose(self) -> None:
        pass


def error(**fields: Any) -> bytes:
    return json.dumps({"error": fields}).encode()


#: (type, model, 404 body, verdict): each provider's own "no such model", and 404s that are not.
NOT_FOUND = [
    ("openai", "gpt-4o", error(message="Invalid URL (GET /models)", type="invalid_request_error",
                               param=None, code=None), FailureKind.HTTP_STATUS),
    ("openai", "gpt-4o", error(message="The model `gpt-4o` does not exist or you do not have "
                               "access to it.", type="invalid_request_error", code="model_not_found"),
     FailureKind.MODEL_MISSING),
    ("openai", "gpt-4o", error(message="This model is unavailable.", code="model_not_found"),
     FailureKind.MODEL_MISSING),
    ("openai", "gpt-4o", error(message="This is not a chat model and thus not supported in the "
                               "v1/chat/completions endpoint."), FailureKind.HTTP_STATUS),
    ("openai", "gpt-4", error(message="The model `gpt-4o` is not served at this endpoint"),
     FailureKind.HTTP_STATUS),
    ("vllm", "qwen3", b'{"object": "error", "message": "The model `qwen3` does not exist.", '
     b'"type": "NotFoundError", "param": null, "code": 404}', FailureKind.MODEL_MISSING),
    ("azure", "gpt-4o", error(code="DeploymentNotFound", message="The API deployment for this "
                              "resource does not exist."), FailureKind.MODEL_MISSING),
    ("azure", "gpt-4o", error(code="404", message="Resource not found"), FailureKind.HTTP_STATUS),
    ("anthropic", "claude-x", b'{"type": "error", "error": {"type": "not_found_error", '
     b'"message": "model: claude-x"}}', FailureKind.MODEL_MISSING),
    ("anthropic", "claude-x", b'{"type": "error", "error": {"type": "not_found_error", '
     b'"message": "Not Found"}}', FailureKind.HTTP_STATUS),
    ("gemini", "gemini-x", error(code=404, message="models/gemini-x is not found for API version "
                                 "v1beta, or is not supported for generateContent.",
                                 status="NOT_FOUND"), FailureKind.MODEL_MISSING),
    ("gemini", "gemini-x", b"<html><p>The requested URL <code>/v1betax/models/gemini-x</code> "
     b"was not found on this server.</p></html>", FailureKind.HTTP_STATUS),
    ("ollama", "llama3", b'{"error": "model \\"llama3\\" not found, try pulling it first"}',
     FailureKind.MODEL_MISSING),
    ("ollama", "llama3", b"404 page not found", FailureKind.HTTP_STATUS),
    ("cohere", "command-r", b'{"message": "model \'command-r\' not found, make sure the correct '
     b'model ID was used and that you have access to the model."}', FailureKind.MODEL_MISSING),
    ("cohere", "command-r", b'{"message": "GET /v1/models not found"}', FailureKind.HTTP_STATUS),
]


@pytest.mark.parametrize(
    ("kind", "model", "body", "verdict"),
    NOT_FOUND,
    ids=[f"{case[0]}-{i}-{case[3].value}" for i, case in enumerate(NOT_FOUND)],
)
async def test_a_404_is_a_missing_model_only_in_the_providers_own_words(
    kind: str, model: str, body: bytes, verdict: FailureKind
) -> None:
    cls = ADAPTER_TYPES[kind]
    adapter = cls(
        provider="p", base_url=cls.default_base_url or "https://example.test/v1", model=model,
        api_key=Secret(KEY), probe="completion",
    )
    adapter.bind_client(Canned(404, body))
    outcome: ProbeOutcome = await adapter.check_health()
    assert (outcome.failure, outcome.http_status) == (verdict, 404), outcome.error


async def test_an_openai_base_url_without_v1_is_a_wrong_url_not_a_missing_model(
    sim: Simulator,
) -> None:
    entry = next(e for e in sim.provider_entries() if e["name"] == "openai-chat")
    result = await probe_entry(sim, "openai-chat", base_url=entry["base_url"].removesuffix("/v1"))
    assert (result.failure, result.http_status) == (FailureKind.HTTP_STATUS, 404), result.error
    assert result.error == "HTTP 404: Invalid URL (GET /models)"


WRONG_PATHS = [
    (kind, probe_kind)
    for kind in CHAT_KINDS
    for probe_kind in ("models", "completion")
    if probe_kind == "completion" or ADAPTER_TYPES[kind].lists_models
]


@pytest.mark.parametrize(("kind", "probe_kind"), WRONG_PATHS)
async def test_a_wrong_path_is_an_http_status_for_every_type(
    sim: Simulator, kind: str, probe_kind: str
) -> None:
    entry = next(e for e in sim.provider_entries() if e["name"] == f"{kind}-chat")
    result = await probe_entry(
        sim, f"{kind}-chat", base_url=entry["base_url"] + "/wrong", probe=probe_kind
    )
    assert (result.failure, result.http_status) == (FailureKind.HTTP_STATUS, 404), result.error

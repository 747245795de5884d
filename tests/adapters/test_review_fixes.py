"""Review fixes: each speech provider's own voice; a 404 is a missing model only when it says so.

The speech cases run against the simulator, which takes only the voices a kind
documents, so a probe that asks every provider for OpenAI's "alloy" fails
there as it does upstream.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from adapters import ADAPTER_TYPES, FailureKind, Secret
from adapters.registry import PROVIDERS, ProviderSpec, adapter_class
from service import AdapterManager, ConfigError, ProbeResult, ProbeStatus, parse_config
from service.testing.simulator import Behavior, SimProvider, Simulator

KEY = "rhtestkey-review-0123456789abcdef"
SPEECH_KINDS = sorted(kind for kind, cls in ADAPTER_TYPES.items() if "audio_speech" in cls.modes)
#: A speech model of each provider, as its docs name them.
SPEECH_MODELS = {
    "groq": ("playai-tts", "canopylabs/orpheus-v1-english", "canopylabs/orpheus-arabic-saudi"),
    "together": ("cartesia/sonic-2", "hexgrad/Kokoro-82M", "canopylabs/orpheus-3b-0.1-ft"),
    "siliconflow": ("FunAudioLLM/CosyVoice2-0.5B", "fishaudio/fish-speech-1.5"),
}


def speech_models(kind: str) -> tuple[str, ...]:
    return SPEECH_MODELS.get(kind, ("tts-1",))


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    return [
        SimProvider(
            kind, kind, KEY, list(speech_models(kind)), Behavior(latency=0.0),
            model_modes=dict.fromkeys(speech_models(kind), "audio_speech"),
        )
        for kind in SPEECH_KINDS
    ]


async def probe(sim: Simulator, kind: str, model: str, **overrides: Any) -> ProbeResult:
    entry = next(e for e in sim.provider_entries() if e["name"] == kind)
    entry = {**entry, "model": model, "mode": "audio_speech", "probe": "completion", **overrides}
    config = parse_config(
        {"checks": {"adapter_timeout": 5, "recheck_timeouts": False},
         "models": [{"name": "m", "providers": [entry]}]},
        env={},
    )
    async with AdapterManager.from_config(config) as manager:
        report = await manager.health_checker.run(manager.model_adapters)
    return report.models["m"].results[kind]


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
    table = {"name": "p", "type": kind, "api_key": KEY, "voice": "autumn"}
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

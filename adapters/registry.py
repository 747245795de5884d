"""OpenAI-compatible providers as data: one line each, one adapter class made from each line.

Every provider here speaks OpenAI's wire format (``adapters.openai``) at its
own base URL; what differs is data: where it lives, whether it needs a key,
whether it lists its models, how the key is sent, which modes it serves and
(for speech) which voice its models take. To
add one, add a line to :data:`PROVIDERS`; its config ``type`` and its
adapter class (``adapter_name``, for log lines) follow from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final, Literal

from .base import ProbeRequest
from .modes import ALL_MODES
from .openai import OpenAIAdapter, SpeechVoices, openai_paid_call

__all__ = ["PROVIDERS", "REGISTRY_ADAPTERS", "ProviderSpec", "RegistryAdapter"]


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One OpenAI-compatible provider."""

    type: str  # the config ``type``
    adapter_name: str  # the class name log lines show
    base_url: str | None  # None: the config must give one (self-hosted servers)
    modes: str  # the modes it serves, space-separated (see adapters.modes.MODES)
    key_required: bool = True
    #: Whether ``GET {base}/models`` exists; without it the free probe needs
    #: ``probe_path`` (a health URL of yours) or ``probe = "completion"``.
    lists_models: bool = True
    auth: Literal["bearer", "api-key"] = "bearer"  # Authorization: Bearer, or an api-key header
    #: Sent as ``?api-version=`` on every request when set (config key ``api_version`` overrides).
    api_version: str | None = None
    #: The speech probe's voice by model id prefix (see ``adapters.openai.SpeechVoices``);
    #: required with ``audio_speech``, from the provider's documented voices.
    voices: SpeechVoices = ()

    @property
    def mode_set(self) -> frozenset[str]:
        return frozenset(self.modes.split())


# fmt: off
PROVIDERS: Final = (
    ProviderSpec("mistral", "MistralAdapter", "https://api.mistral.ai/v1", "chat embedding moderation"),
    ProviderSpec("groq", "GroqAdapter", "https://api.groq.com/openai/v1", "chat audio_transcription audio_speech responses",
                 voices=(("", "autumn"), ("canopylabs/orpheus-arabic-saudi", "fahad"),
                         ("playai-tts", "Arista-PlayAI"), ("playai-tts-arabic", "Ahmad-PlayAI"))),
    ProviderSpec("deepseek", "DeepSeekAdapter", "https://api.deepseek.com", "chat completion"),
    ProviderSpec("openrouter", "OpenRouterAdapter", "https://openrouter.ai/api/v1", "chat completion embedding responses"),
    ProviderSpec("together", "TogetherAdapter", "https://api.together.xyz/v1", "chat completion embedding image_generation rerank audio_speech audio_transcription",
                 voices=(("", "laidback woman"), ("hexgrad/Kokoro", "af_alloy"), ("canopylabs/orpheus", "tara"))),
    ProviderSpec("fireworks", "FireworksAdapter", "https://api.fireworks.ai/inference/v1", "chat completion embedding responses"),
    ProviderSpec("xai", "XAIAdapter", "https://api.x.ai/v1", "chat completion image_generation responses"),
    ProviderSpec("perplexity", "PerplexityAdapter", "https://api.perplexity.ai", "chat", lists_models=False),
    ProviderSpec("moonshot", "MoonshotAdapter", "https://api.moonshot.ai/v1", "chat"),
    ProviderSpec("dashscope", "DashScopeAdapter", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "chat completion embedding"),
    ProviderSpec("zhipu", "ZhipuAdapter", "https://open.bigmodel.cn/api/paas/v4", "chat embedding image_generation audio_transcription moderation", lists_models=False),
    ProviderSpec("siliconflow", "SiliconFlowAdapter", "https://api.siliconflow.cn/v1", "chat embedding rerank image_generation audio_speech audio_transcription",
                 voices=(("", "{model}:alex"),)),
    ProviderSpec("cerebras", "CerebrasAdapter", "https://api.cerebras.ai/v1", "chat completion"),
    ProviderSpec("nvidia-nim", "NvidiaNIMAdapter", "https://integrate.api.nvidia.com/v1", "chat completion embedding"),
    ProviderSpec("vllm", "VLLMAdapter", None, "chat completion embedding rerank audio_transcription responses", key_required=False),
    ProviderSpec("lm-studio", "LMStudioAdapter", "http://127.0.0.1:1234/v1", "chat completion embedding responses", key_required=False),
    ProviderSpec("llama-cpp", "LlamaCppAdapter", "http://127.0.0.1:8080/v1", "chat completion embedding rerank", key_required=False),
    ProviderSpec("azure-ai", "AzureAIAdapter", None, "chat embedding", lists_models=False, auth="api-key", api_version="2024-05-01-preview"),
)
# fmt: on


class RegistryAdapter(OpenAIAdapter):
    """An OpenAI-compatible provider described by its :class:`ProviderSpec`."""

    spec: ClassVar[ProviderSpec]

    def auth_headers(self) -> dict[str, str]:
        if self.spec.auth == "api-key":
            return {"api-key": self.api_key.reveal()} if self.api_key else {}
        return self.bearer_headers()

    def _params(self) -> dict[str, str]:
        version = self.options.get("api_version") or self.spec.api_version
        return {"api-version": version} if version else {}

    def free_request(self) -> ProbeRequest:
        if not self.lists_models:
            # The config refuses this; an adapter built by hand gets the same advice.
            raise ValueError(
                f"{self.spec.type} has no models list to probe for free: set probe_path "
                '(a health URL) or probe = "completion"'
            )
        return ProbeRequest(
            "GET", f"{self.base_url}/models", headers=self.auth_headers(), params=self._params()
        )

    def paid_request(self) -> ProbeRequest:
        return openai_paid_call(self).request(self.base_url, self.auth_headers(), self._params())


def adapter_class(spec: ProviderSpec) -> type[RegistryAdapter]:
    """The adapter class of one registry line."""
    unknown = spec.mode_set - ALL_MODES
    if unknown or not spec.mode_set:
        raise ValueError(f"registry entry {spec.type!r}: unknown modes {sorted(unknown)}")
    if ("audio_speech" in spec.mode_set) != bool(spec.voices):
        # OpenAI's "alloy" is OpenAI's: another provider's voice must be written down.
        raise ValueError(
            f"registry entry {spec.type!r}: voices go with audio_speech, and only with it"
        )
    attributes = {
        "__module__": __name__,
        "__doc__": f"{spec.type}: OpenAI's wire format at {spec.base_url or 'your base_url'}.",
        "spec": spec,
        "adapter_name": spec.adapter_name,
        "default_base_url": spec.base_url,
        "key_required": spec.key_required,
        "lists_models": spec.lists_models,
        "modes": spec.mode_set,
        "speech_voices": spec.voices,
        "option_keys": frozenset({"api_version"}) if spec.api_version else frozenset(),
    }
    return type(spec.adapter_name, (RegistryAdapter,), attributes)


#: Config ``type`` -> adapter class, for every registry line.
REGISTRY_ADAPTERS: Final[dict[str, type[RegistryAdapter]]] = {
    spec.type: adapter_class(spec) for spec in PROVIDERS
}

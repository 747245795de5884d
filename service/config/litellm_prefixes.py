"""LiteLLM's ``provider/`` model prefixes and the router-health types they map to: data only.

Adding a prefix is one line here. A prefix not listed is a deployment
router-health cannot check: it loads as ``type = "unsupported"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from adapters.modes import MODES

__all__ = ["CHECKED_MODES", "DEFAULT_INTERVAL", "NO_PREFIX", "PREFIXES", "Route"]


@dataclass(frozen=True, slots=True)
class Route:
    """Where one LiteLLM prefix goes."""

    type: str
    #: The variables LiteLLM reads the key from when ``api_key`` is absent, in
    #: its order: the first one set wins, else the first is named (and reported
    #: unset when the type needs a key).
    key_envs: tuple[str, ...] = ()
    #: LiteLLM's variable for ``api_base`` / ``api_version`` when absent (Azure).
    base_env: str | None = None
    version_env: str | None = None
    #: The mode a prefix implies when ``model_info.mode`` is absent.
    mode: str | None = None
    #: Endpoint paths LiteLLM accepts at the end of ``api_base`` (it appends
    #: them otherwise): taken off, since router-health's paths start at the root.
    endpoints: tuple[str, ...] = ()


#: LiteLLM's Cohere ``api_base`` is the whole endpoint URL (``.../v2/chat``).
_COHERE_ENDPOINTS: Final = tuple(
    f"/{version}/{call}"
    for version in ("v1", "v2")
    for call in ("chat", "generate", "embed", "rerank")
)

#: ``litellm_params.model`` without a ``provider/`` prefix is an OpenAI model.
NO_PREFIX: Final = "openai"

PREFIXES: Final[dict[str, Route]] = {
    "openai": Route("openai", ("OPENAI_API_KEY",)),
    "text-completion-openai": Route("openai", ("OPENAI_API_KEY",), mode="completion"),
    "custom_openai": Route("openai-compatible", ("OPENAI_API_KEY",)),
    "azure": Route(
        "azure",
        ("AZURE_API_KEY", "AZURE_OPENAI_API_KEY"),
        base_env="AZURE_API_BASE",
        version_env="AZURE_API_VERSION",
    ),
    "azure_ai": Route("azure-ai", ("AZURE_AI_API_KEY",)),
    "anthropic": Route("anthropic", ("ANTHROPIC_API_KEY",), endpoints=("/v1/messages",)),
    "gemini": Route("gemini", ("GEMINI_API_KEY",)),
    "vertex_ai": Route("vertex-ai"),
    "bedrock": Route("bedrock"),
    "volcengine": Route("volcengine", ("VOLCENGINE_API_KEY", "ARK_API_KEY")),
    "ollama": Route("ollama", endpoints=("/api/generate", "/api/embed")),
    "ollama_chat": Route("ollama", endpoints=("/api/chat",)),
    "hosted_vllm": Route("vllm"),
    "lm_studio": Route("lm-studio"),
    "openrouter": Route("openrouter", ("OPENROUTER_API_KEY", "OR_API_KEY")),
    "mistral": Route("mistral", ("MISTRAL_API_KEY",)),
    "groq": Route("groq", ("GROQ_API_KEY",)),
    "deepseek": Route("deepseek", ("DEEPSEEK_API_KEY",)),
    "together_ai": Route(
        "together",
        ("TOGETHER_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHERAI_API_KEY", "TOGETHER_AI_TOKEN"),
    ),
    "fireworks_ai": Route(
        "fireworks", ("FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY", "FIREWORKSAI_API_KEY")
    ),
    "xai": Route("xai", ("XAI_API_KEY",)),
    "perplexity": Route("perplexity", ("PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY")),
    "cohere": Route("cohere", ("COHERE_API_KEY", "CO_API_KEY"), endpoints=_COHERE_ENDPOINTS),
    "cohere_chat": Route("cohere", ("COHERE_API_KEY", "CO_API_KEY"), endpoints=_COHERE_ENDPOINTS),
    "dashscope": Route("dashscope", ("DASHSCOPE_API_KEY",)),
    "moonshot": Route("moonshot", ("MOONSHOT_API_KEY",)),
    "zai": Route("zhipu", ("ZAI_API_KEY",)),
    "cerebras": Route("cerebras", ("CEREBRAS_API_KEY",)),
    "nvidia_nim": Route("nvidia-nim", ("NVIDIA_NIM_API_KEY",)),
}

#: ``model_info.mode`` values router-health can check (LiteLLM's names, kept as
#: they are); any other mode (batch, realtime, ocr...) loads as unsupported.
CHECKED_MODES: Final = MODES

#: ``general_settings.health_check_interval`` when background checks are on
#: without one (LiteLLM's own default).
DEFAULT_INTERVAL: Final = 300

"""Provider adapters: one module per provider wire format, and the registry.

``ADAPTER_TYPES`` maps a config ``type`` to the class that speaks it.
"""

from __future__ import annotations

from .anthropic import AnthropicAdapter
from .azure import AzureOpenAIAdapter
from .base import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_LISTED,
    Adapter,
    FailureKind,
    HttpAdapter,
    ProbeOutcome,
    ProbeRequest,
    Secret,
    redact,
)
from .bedrock import BedrockAdapter
from .cohere import CohereAdapter
from .compatible import OpenAICompatibleAdapter
from .custom import CallableAdapter, SyncCallableAdapter
from .gemini import GeminiAdapter
from .modes import MODES
from .ollama import OllamaAdapter
from .openai import OpenAIAdapter
from .registry import PROVIDERS, REGISTRY_ADAPTERS, ProviderSpec, RegistryAdapter
from .unsupported import UnsupportedAdapter
from .vertex import VertexAIAdapter
from .volcengine import VolcengineAdapter

__all__ = [
    "ADAPTER_TYPES",
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_LISTED",
    "MODES",
    "PROVIDERS",
    "Adapter",
    "AnthropicAdapter",
    "AzureOpenAIAdapter",
    "BedrockAdapter",
    "CallableAdapter",
    "CohereAdapter",
    "FailureKind",
    "GeminiAdapter",
    "HttpAdapter",
    "OllamaAdapter",
    "OpenAIAdapter",
    "OpenAICompatibleAdapter",
    "ProbeOutcome",
    "ProbeRequest",
    "ProviderSpec",
    "RegistryAdapter",
    "Secret",
    "SyncCallableAdapter",
    "UnsupportedAdapter",
    "VertexAIAdapter",
    "VolcengineAdapter",
    "redact",
]

#: Config ``type`` -> adapter class. Keep in step with docs/providers.md.
ADAPTER_TYPES: dict[str, type[HttpAdapter]] = {
    "openai": OpenAIAdapter,
    "azure": AzureOpenAIAdapter,
    "anthropic": AnthropicAdapter,
    "volcengine": VolcengineAdapter,
    "gemini": GeminiAdapter,
    "ollama": OllamaAdapter,
    "openai-compatible": OpenAICompatibleAdapter,
    "cohere": CohereAdapter,
    "bedrock": BedrockAdapter,
    "vertex-ai": VertexAIAdapter,
    # The OpenAI-compatible registry: one line of data each (adapters/registry.py).
    **REGISTRY_ADAPTERS,
    "unsupported": UnsupportedAdapter,
}

"""Provider adapters: one module per provider wire format, and the registry.

``ADAPTER_TYPES`` maps a config ``type`` to the class that speaks it.
"""

from __future__ import annotations

from .anthropic import AnthropicAdapter
from .azure import AzureOpenAIAdapter
from .base import (
    DEFAULT_MAX_BODY_BYTES,
    Adapter,
    FailureKind,
    HttpAdapter,
    ProbeOutcome,
    ProbeRequest,
    Secret,
    redact,
)
from .compatible import OpenAICompatibleAdapter
from .custom import CallableAdapter, SyncCallableAdapter
from .gemini import GeminiAdapter
from .ollama import OllamaAdapter
from .openai import OpenAIAdapter
from .volcengine import VolcengineAdapter

__all__ = [
    "ADAPTER_TYPES",
    "DEFAULT_MAX_BODY_BYTES",
    "Adapter",
    "AnthropicAdapter",
    "AzureOpenAIAdapter",
    "CallableAdapter",
    "FailureKind",
    "GeminiAdapter",
    "HttpAdapter",
    "OllamaAdapter",
    "OpenAIAdapter",
    "OpenAICompatibleAdapter",
    "ProbeOutcome",
    "ProbeRequest",
    "Secret",
    "SyncCallableAdapter",
    "VolcengineAdapter",
    "redact",
]

#: Config ``type`` -> adapter class. Keep in step with the README's table.
ADAPTER_TYPES: dict[str, type[HttpAdapter]] = {
    "openai": OpenAIAdapter,
    "azure": AzureOpenAIAdapter,
    "anthropic": AnthropicAdapter,
    "volcengine": VolcengineAdapter,
    "gemini": GeminiAdapter,
    "ollama": OllamaAdapter,
    "openai-compatible": OpenAICompatibleAdapter,
}

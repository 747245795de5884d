"""Which wire each kind speaks: the one table a new kind is registered in.

Every kind in :data:`.behavior.KINDS` needs an entry (a test checks it).
"""

from __future__ import annotations

from typing import Final

from .anthropic import AnthropicWire
from .bedrock import BedrockWire
from .behavior import OPENAI_LIKE
from .cohere import CohereWire
from .gemini import GeminiWire
from .ollama import OllamaWire
from .openai_family import AzureAIWire, AzureWire, OpenAIWire
from .vertex import VertexWire
from .wire import Wire

WIRES: Final[dict[str, Wire]] = {
    **{kind: OpenAIWire(kind, prefix) for kind, prefix in OPENAI_LIKE.items()},
    "azure-ai": AzureAIWire(),
    "azure": AzureWire(),
    "anthropic": AnthropicWire(),
    "gemini": GeminiWire(),
    "ollama": OllamaWire(),
    "cohere": CohereWire(),
    "bedrock": BedrockWire(),
    "vertex-ai": VertexWire(),
}


def wire_for(kind: str) -> Wire:
    """The wire of ``kind`` (validated by :class:`.behavior.SimProvider`)."""
    return WIRES[kind]

"""Generic OpenAI-compatible servers: vLLM, DeepSeek, LM Studio, llama.cpp, TGI..."""

from __future__ import annotations

from typing import ClassVar

from .modes import ALL_MODES
from .openai import OpenAIAdapter

__all__ = ["OpenAICompatibleAdapter"]


class OpenAICompatibleAdapter(OpenAIAdapter):
    """OpenAI's wire format at a base URL you give; the key is optional (local servers).

    Every mode is allowed, rerank included (vLLM, llama.cpp and Jina serve
    ``POST /rerank``): which ones the server really has is yours to know.
    """

    adapter_name: ClassVar[str] = "OpenAICompatibleAdapter"
    default_base_url: ClassVar[str | None] = None
    key_required: ClassVar[bool] = False
    modes: ClassVar[frozenset[str]] = ALL_MODES

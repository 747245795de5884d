"""Volcengine Ark (doubao and friends): OpenAI's wire format under ``/api/v3``."""

from __future__ import annotations

from typing import ClassVar

from .openai import OpenAIAdapter

__all__ = ["VolcengineAdapter"]


class VolcengineAdapter(OpenAIAdapter):
    """Bearer auth; ``GET {base}/models`` or the mode's cheapest call under ``{base}``.

    Ark addresses models by inference endpoint id (``ep-...``) as well as by
    name, and only names appear in the models list: set ``verify_model =
    false`` when ``model`` is an endpoint id. Ark serves chat, embeddings,
    image generation (Seedream) and the Responses API in OpenAI's format.
    """

    adapter_name: ClassVar[str] = "VolcengineAdapter"
    default_base_url: ClassVar[str | None] = "https://ark.cn-beijing.volces.com/api/v3"
    modes: ClassVar[frozenset[str]] = frozenset(
        {"chat", "embedding", "image_generation", "responses"}
    )

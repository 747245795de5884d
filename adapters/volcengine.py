"""Volcengine Ark (doubao and friends): OpenAI's wire format under ``/api/v3``."""

from __future__ import annotations

from typing import ClassVar

from .openai import OpenAIAdapter

__all__ = ["VolcengineAdapter"]


class VolcengineAdapter(OpenAIAdapter):
    """Bearer auth; ``GET {base}/models`` or a 1-token ``POST {base}/chat/completions``.

    Ark addresses models by inference endpoint id (``ep-...``) as well as by
    name, and only names appear in the models list: set ``verify_model =
    false`` when ``model`` is an endpoint id.
    """

    adapter_name: ClassVar[str] = "VolcengineAdapter"
    default_base_url: ClassVar[str | None] = "https://ark.cn-beijing.volces.com/api/v3"

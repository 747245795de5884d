"""Anthropic: ``x-api-key`` and ``anthropic-version`` headers."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import HttpAdapter, ProbeOutcome, ProbeRequest
from .modes import PROBE_TEXT, usage_tokens

__all__ = ["DEFAULT_ANTHROPIC_VERSION", "AnthropicAdapter"]

DEFAULT_ANTHROPIC_VERSION = "2023-06-01"


class AnthropicAdapter(HttpAdapter):
    """``GET {base}/v1/models?limit=1000`` (free) or a ``max_tokens`` ``POST {base}/v1/messages``.

    Chat only: Anthropic serves no embeddings, images or audio.
    """

    adapter_name: ClassVar[str] = "AnthropicAdapter"
    default_base_url: ClassVar[str | None] = "https://api.anthropic.com"
    key_required: ClassVar[bool] = True
    option_keys: ClassVar[frozenset[str]] = frozenset({"anthropic_version"})

    def auth_headers(self) -> dict[str, str]:
        headers = {
            "anthropic-version": self.options.get("anthropic_version") or DEFAULT_ANTHROPIC_VERSION
        }
        if self.api_key:
            headers["x-api-key"] = self.api_key.reveal()
        return headers

    def free_request(self) -> ProbeRequest:
        # One page of up to 1000 models: enough to find ours without paging.
        return ProbeRequest(
            "GET", f"{self.base_url}/v1/models", headers=self.auth_headers(), params={"limit": "1000"}
        )

    def paid_request(self) -> ProbeRequest:
        return ProbeRequest(
            "POST",
            f"{self.base_url}/v1/messages",
            headers=self.auth_headers(),
            json_body={
                "model": self.probe_model_id,
                # Anthropic has one budget, max_tokens, thinking or not.
                "max_tokens": self.output_tokens,
                "messages": [{"role": "user", "content": PROBE_TEXT}],
            },
        )

    def judge_free(self, data: Any) -> ProbeOutcome:
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return self.bad_body("expected an object with a 'data' list of models")
        ids = [i["id"] for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)]
        if len(ids) != len(items):
            return self.bad_body("a 'data' entry has no string 'id'")
        return self.model_listed(ids)

    def judge_paid(self, data: Any) -> ProbeOutcome:
        if not isinstance(data, dict):
            return self.bad_body("expected a JSON object")
        if data.get("type") != "message" or not isinstance(data.get("content"), list):
            return self.bad_body("expected a message with a 'content' list")
        return ProbeOutcome.ok(tokens=usage_tokens(data.get("usage")))

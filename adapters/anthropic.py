"""Anthropic: ``x-api-key`` and ``anthropic-version`` headers."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import HttpAdapter, ProbeOutcome, ProbeRequest

__all__ = ["DEFAULT_ANTHROPIC_VERSION", "AnthropicAdapter"]

DEFAULT_ANTHROPIC_VERSION = "2023-06-01"


class AnthropicAdapter(HttpAdapter):
    """``GET {base}/v1/models?limit=1000`` (free) or a 1-token ``POST {base}/v1/messages``."""

    adapter_name: ClassVar[str] = "AnthropicAdapter"
    default_base_url: ClassVar[str | None] = "https://api.anthropic.com"
    key_required: ClassVar[bool] = True
    option_keys: ClassVar[frozenset[str]] = frozenset({"anthropic_version"})

    def _headers(self) -> dict[str, str]:
        headers = {
            "anthropic-version": self.options.get("anthropic_version") or DEFAULT_ANTHROPIC_VERSION
        }
        if self.api_key:
            headers["x-api-key"] = self.api_key.reveal()
        return headers

    def build_request(self) -> ProbeRequest:
        if self.probe == "completion":
            return ProbeRequest(
                "POST",
                f"{self.base_url}/v1/messages",
                headers=self._headers(),
                json_body={
                    "model": self.model,
                    "max_tokens": 1,
                    "messages": [{"role": "user", "content": "ping"}],
                },
            )
        # One page of up to 1000 models: enough to find ours without paging.
        return ProbeRequest(
            "GET", f"{self.base_url}/v1/models", headers=self._headers(), params={"limit": "1000"}
        )

    def judge(self, data: Any) -> ProbeOutcome:
        if not isinstance(data, dict):
            return self.bad_body("expected a JSON object")
        if self.probe == "completion":
            if data.get("type") != "message" or not isinstance(data.get("content"), list):
                return self.bad_body("expected a message with a 'content' list")
            return ProbeOutcome.ok()
        items = data.get("data")
        if not isinstance(items, list):
            return self.bad_body("expected an object with a 'data' list of models")
        ids = [i["id"] for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)]
        if len(ids) != len(items):
            return self.bad_body("a 'data' entry has no string 'id'")
        return self.model_listed(ids)

"""OpenAI (and every API that copies its wire format)."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import HttpAdapter, ProbeOutcome, ProbeRequest

__all__ = ["OpenAIAdapter", "chat_completion_body", "judge_chat_completion", "judge_model_list"]


def chat_completion_body(model: str) -> dict[str, Any]:
    """The cheapest billed call: one prompt token, one completion token."""
    return {"model": model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}


def judge_model_list(adapter: HttpAdapter, data: Any) -> ProbeOutcome:
    """``{"data": [{"id": ...}, ...]}``: parse it, and look for the configured model."""
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return adapter.bad_body("expected an object with a 'data' list of models")
    ids = [item["id"] for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)]
    if len(ids) != len(items):
        return adapter.bad_body("a 'data' entry has no string 'id'")
    return adapter.model_listed(ids)


def judge_chat_completion(adapter: HttpAdapter, data: Any) -> ProbeOutcome:
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        return adapter.bad_body("expected a chat completion with a non-empty 'choices' list")
    return ProbeOutcome.ok()


class OpenAIAdapter(HttpAdapter):
    """``GET {base}/models`` (free) or ``POST {base}/chat/completions`` (1 token), Bearer auth."""

    adapter_name: ClassVar[str] = "OpenAIAdapter"
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    key_required: ClassVar[bool] = True

    def build_request(self) -> ProbeRequest:
        if self.probe == "completion":
            return ProbeRequest(
                "POST",
                f"{self.base_url}/chat/completions",
                headers=self.bearer_headers(),
                json_body=chat_completion_body(self.model),
            )
        return ProbeRequest("GET", f"{self.base_url}/models", headers=self.bearer_headers())

    def judge(self, data: Any) -> ProbeOutcome:
        if self.probe == "completion":
            return judge_chat_completion(self, data)
        return judge_model_list(self, data)

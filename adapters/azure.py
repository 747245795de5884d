"""Azure OpenAI: ``api-key`` header, ``api-version`` query, deployments in the path."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import HttpAdapter, ProbeOutcome, ProbeRequest
from .openai import chat_completion_body, judge_chat_completion

__all__ = ["DEFAULT_AZURE_API_VERSION", "AzureOpenAIAdapter"]

DEFAULT_AZURE_API_VERSION = "2024-10-21"


class AzureOpenAIAdapter(HttpAdapter):
    """``GET {base}/openai/models`` (free) or a 1-token call to the deployment.

    The models list names base models, not deployments, so the free probe
    proves the resource answers and the key is valid; ``probe = "completion"``
    is what proves the deployment itself serves.
    """

    adapter_name: ClassVar[str] = "AzureOpenAIAdapter"
    default_base_url: ClassVar[str | None] = None
    key_required: ClassVar[bool] = True
    option_keys: ClassVar[frozenset[str]] = frozenset({"deployment", "api_version"})

    @property
    def deployment(self) -> str:
        return self.options.get("deployment") or self.model

    @property
    def api_version(self) -> str:
        return self.options.get("api_version") or DEFAULT_AZURE_API_VERSION

    def build_request(self) -> ProbeRequest:
        headers = {"api-key": self.api_key.reveal()} if self.api_key else {}
        params = {"api-version": self.api_version}
        if self.probe == "completion":
            body = chat_completion_body(self.model)
            del body["model"]  # the deployment in the path selects the model
            return ProbeRequest(
                "POST",
                f"{self.base_url}/openai/deployments/{self.deployment}/chat/completions",
                headers=headers,
                params=params,
                json_body=body,
            )
        return ProbeRequest("GET", f"{self.base_url}/openai/models", headers=headers, params=params)

    def judge(self, data: Any) -> ProbeOutcome:
        if self.probe == "completion":
            return judge_chat_completion(self, data)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return self.bad_body("expected an object with a 'data' list of models")
        return ProbeOutcome.ok()

"""Google Gemini (Generative Language API)."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import FailureKind, HttpAdapter, ProbeOutcome, ProbeRequest

__all__ = ["GeminiAdapter"]


class GeminiAdapter(HttpAdapter):
    """``GET {base}/models/{model}`` (free, and it names our model) or a 1-token generateContent.

    The key goes in the ``x-goog-api-key`` header rather than ``?key=``, so it
    never appears in a URL that a proxy or an error message might log.
    """

    adapter_name: ClassVar[str] = "GeminiAdapter"
    default_base_url: ClassVar[str | None] = "https://generativelanguage.googleapis.com/v1beta"
    key_required: ClassVar[bool] = True

    @property
    def _model_path(self) -> str:
        name = self.model.removeprefix("models/")
        return f"{self.base_url}/models/{name}"

    def failure_kind(self, status: int, message: str) -> FailureKind:
        # Google answers a bad key with 400 INVALID_ARGUMENT, not 401.
        if status == 400 and "api key" in message.lower():
            return FailureKind.AUTH
        return super().failure_kind(status, message)

    def build_request(self) -> ProbeRequest:
        headers = {"x-goog-api-key": self.api_key.reveal()} if self.api_key else {}
        if self.probe == "completion":
            return ProbeRequest(
                "POST",
                f"{self._model_path}:generateContent",
                headers=headers,
                json_body={
                    "contents": [{"role": "user", "parts": [{"text": "ping"}]}],
                    "generationConfig": {"maxOutputTokens": 1},
                },
            )
        return ProbeRequest("GET", self._model_path, headers=headers)

    def judge(self, data: Any) -> ProbeOutcome:
        if not isinstance(data, dict):
            return self.bad_body("expected a JSON object")
        if self.probe == "completion":
            if not isinstance(data.get("candidates"), list):
                return self.bad_body("expected a 'candidates' list")
            return ProbeOutcome.ok()
        name = data.get("name")
        if not isinstance(name, str):
            return self.bad_body("expected a model object with a 'name'")
        return self.model_listed([name.removeprefix("models/")], listed_as="model lookup")

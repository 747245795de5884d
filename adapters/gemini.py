"""Google Gemini (Generative Language API)."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import FailureKind, HttpAdapter, ProbeOutcome, ProbeRequest
from .modes import PROBE_TEXT, token_count

__all__ = ["GeminiAdapter"]

#: Gemini's list answers 50 per page by default, 1000 at most.
_PAGE_SIZE = "1000"



class GeminiAdapter(HttpAdapter):
    """``GET {base}/models/{model}`` (free, and it names our model) or the mode's cheapest call.

    Chat is ``generateContent`` with ``maxOutputTokens``; embedding is
    ``embedContent`` of one word. The key goes in the ``x-goog-api-key``
    header rather than ``?key=``, so it never appears in a URL that a proxy
    or an error message might log.
    """

    adapter_name: ClassVar[str] = "GeminiAdapter"
    default_base_url: ClassVar[str | None] = "https://generativelanguage.googleapis.com/v1beta"
    key_required: ClassVar[bool] = True
    modes: ClassVar[frozenset[str]] = frozenset({"chat", "embedding"})

    def _model_path(self, model: str) -> str:
        return f"{self.base_url}/models/{model.removeprefix('models/')}"

    def failure_kind(self, status: int, message: str) -> FailureKind:
        # Google answers a bad key with 400 INVALID_ARGUMENT, not 401.
        if status == 400 and "api key" in message.lower():
            return FailureKind.AUTH
        if status == 404:
            # "models/{id} is not found for API version v1beta, ...". Our paths name the
            # model, so a wrong URL's 404 ("The requested URL /v1/models/{id} was not
            # found") names it too: only Gemini's own words mean a missing model.
            ids = {m.removeprefix("models/") for m in (self.model, self.probe_model_id)}
            if any(f"models/{model_id} is not found" in message for model_id in ids):
                return FailureKind.MODEL_MISSING
            return FailureKind.HTTP_STATUS
        return super().failure_kind(status, message)

    def auth_headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self.api_key.reveal()} if self.api_key else {}

    def free_request(self) -> ProbeRequest:
        if self.wildcard:  # no one model to look up: list them
            return ProbeRequest(
                "GET",
                f"{self.base_url}/models",
                headers=self.auth_headers(),
                params={"pageSize": _PAGE_SIZE},
            )
        return ProbeRequest("GET", self._model_path(self.model), headers=self.auth_headers())

    def paid_request(self) -> ProbeRequest:
        content = {"parts": [{"text": PROBE_TEXT}]}
        if self.mode == "embedding":
            return ProbeRequest(
                "POST",
                f"{self._model_path(self.probe_model_id)}:embedContent",
                headers=self.auth_headers(),
                json_body={"content": content},
            )
        return ProbeRequest(
            "POST",
            f"{self._model_path(self.probe_model_id)}:generateContent",
            headers=self.auth_headers(),
            json_body={
                "contents": [{"role": "user", **content}],
                "generationConfig": {"maxOutputTokens": self.output_tokens},
            },
        )

    def judge_free(self, data: Any) -> ProbeOutcome:
        if not isinstance(data, dict):
            return self.bad_body("expected a JSON object")
        if self.wildcard:
            models = data.get("models")
            if not isinstance(models, list):
                return self.bad_body("expected an object with a 'models' list")
            names = [m.get("name") for m in models if isinstance(m, dict)]
            return self.model_listed(n.removeprefix("models/") for n in names if isinstance(n, str))
        name = data.get("name")
        if not isinstance(name, str):
            return self.bad_body("expected a model object with a 'name'")
        return self.model_listed([name.removeprefix("models/")], listed_as="model lookup")

    def judge_paid(self, data: Any) -> ProbeOutcome:
        if not isinstance(data, dict):
            return self.bad_body("expected a JSON object")
        if self.mode == "embedding":
            embedding = data.get("embedding")
            if not isinstance(embedding, dict) or not isinstance(embedding.get("values"), list):
                return self.bad_body("expected an 'embedding' with a 'values' list")
            return ProbeOutcome.ok()  # embedContent reports no usage
        if not isinstance(data.get("candidates"), list):
            return self.bad_body("expected a 'candidates' list")
        usage = data.get("usageMetadata")
        tokens = token_count(usage.get("totalTokenCount")) if isinstance(usage, dict) else None
        return ProbeOutcome.ok(tokens=tokens)

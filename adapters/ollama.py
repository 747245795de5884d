"""Ollama: a local model server, usually without auth."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import HttpAdapter, ProbeOutcome, ProbeRequest
from .modes import PROBE_TEXT, token_count

__all__ = ["OllamaAdapter"]

#: Each paid probe's path below the base URL.
_PATHS = {"chat": "/api/chat", "completion": "/api/generate", "embedding": "/api/embed"}



class OllamaAdapter(HttpAdapter):
    """``GET {base}/api/tags`` (free; is the model pulled?) or the mode's cheapest call.

    Chat is ``/api/chat``, completion ``/api/generate`` (both with
    ``num_predict``), embedding ``/api/embed`` of one word. Tokens are
    ``prompt_eval_count`` + ``eval_count``.
    """

    adapter_name: ClassVar[str] = "OllamaAdapter"
    default_base_url: ClassVar[str | None] = "http://127.0.0.1:11434"
    key_required: ClassVar[bool] = False
    modes: ClassVar[frozenset[str]] = frozenset(_PATHS)

    def free_request(self) -> ProbeRequest:
        return ProbeRequest("GET", f"{self.base_url}/api/tags", headers=self.auth_headers())

    def paid_request(self) -> ProbeRequest:
        body: dict[str, Any] = {"model": self.probe_model_id}
        if self.mode == "embedding":
            body["input"] = PROBE_TEXT
        else:
            if self.mode == "chat":
                body["messages"] = [{"role": "user", "content": PROBE_TEXT}]
            else:
                body["prompt"] = PROBE_TEXT
            body.update(stream=False, options={"num_predict": self.output_tokens})
        return ProbeRequest(
            "POST", f"{self.base_url}{_PATHS[self.mode]}", headers=self.auth_headers(), json_body=body
        )

    def judge_free(self, data: Any) -> ProbeOutcome:
        if not isinstance(data, dict):
            return self.bad_body("expected a JSON object")
        models = data.get("models")
        if not isinstance(models, list):
            return self.bad_body("expected an object with a 'models' list")
        names = {m.get("name") for m in models if isinstance(m, dict)}
        names.discard(None)
        if self.wildcard:
            return self.model_listed(str(n) for n in names)
        # "llama3" and "llama3:latest" name the same pulled model.
        ids = {str(n) for n in names} | {str(n).removesuffix(":latest") for n in names}
        return self.model_listed(sorted(ids), listed_as="pulled models (/api/tags)")

    def judge_paid(self, data: Any) -> ProbeOutcome:
        if not isinstance(data, dict):
            return self.bad_body("expected a JSON object")
        if self.mode == "embedding":
            if not isinstance(data.get("embeddings"), list):
                return self.bad_body("expected an 'embeddings' list")
        elif data.get("done") is not True:
            return self.bad_body("expected a finished generation ('done': true)")
        # No money, but the same measure as a hosted API: what the probe made the model do.
        counts = [token_count(data.get(k)) for k in ("prompt_eval_count", "eval_count")]
        if all(c is None for c in counts):
            return ProbeOutcome.ok()
        return ProbeOutcome.ok(tokens=sum(c or 0 for c in counts))

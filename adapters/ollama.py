"""Ollama: a local model server, usually without auth."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import HttpAdapter, ProbeOutcome, ProbeRequest

__all__ = ["OllamaAdapter"]


class OllamaAdapter(HttpAdapter):
    """``GET {base}/api/tags`` (free; is the model pulled?) or a 1-token ``/api/generate``."""

    adapter_name: ClassVar[str] = "OllamaAdapter"
    default_base_url: ClassVar[str | None] = "http://127.0.0.1:11434"
    key_required: ClassVar[bool] = False

    def build_request(self) -> ProbeRequest:
        if self.probe == "completion":
            return ProbeRequest(
                "POST",
                f"{self.base_url}/api/generate",
                headers=self.bearer_headers(),
                json_body={
                    "model": self.model,
                    "prompt": "ping",
                    "stream": False,
                    "options": {"num_predict": 1},
                },
            )
        return ProbeRequest("GET", f"{self.base_url}/api/tags", headers=self.bearer_headers())

    def judge(self, data: Any) -> ProbeOutcome:
        if not isinstance(data, dict):
            return self.bad_body("expected a JSON object")
        if self.probe == "completion":
            if data.get("done") is not True:
                return self.bad_body("expected a finished generation ('done': true)")
            return ProbeOutcome.ok()
        models = data.get("models")
        if not isinstance(models, list):
            return self.bad_body("expected an object with a 'models' list")
        names = {m.get("name") for m in models if isinstance(m, dict)}
        names.discard(None)
        # "llama3" and "llama3:latest" name the same pulled model.
        ids = {str(n) for n in names} | {str(n).removesuffix(":latest") for n in names}
        return self.model_listed(sorted(ids), listed_as="pulled models (/api/tags)")

"""Cohere's own API (v2): chat, embed and rerank; the models list is v1."""

from __future__ import annotations

from typing import Any, ClassVar, Final

from .base import HttpAdapter, ProbeOutcome, ProbeRequest
from .modes import PROBE_TEXT, token_count

__all__ = ["CohereAdapter"]

#: Cohere lists 20 models per page by default, 1000 at most.
_PAGE_SIZE: Final = "1000"



def _billed_tokens(units: Any) -> int | None:
    """``billed_units`` input + output tokens (a rerank bills search units, not tokens)."""
    if not isinstance(units, dict):
        return None
    counts = [token_count(units.get(k)) for k in ("input_tokens", "output_tokens")]
    if all(c is None for c in counts):
        return None
    return sum(c or 0 for c in counts)


class CohereAdapter(HttpAdapter):
    """``GET {base}/v1/models`` (free) or ``POST {base}/v2/chat|embed|rerank`` (Bearer auth)."""

    adapter_name: ClassVar[str] = "CohereAdapter"
    default_base_url: ClassVar[str | None] = "https://api.cohere.com"
    key_required: ClassVar[bool] = True
    modes: ClassVar[frozenset[str]] = frozenset({"chat", "embedding", "rerank"})

    def free_request(self) -> ProbeRequest:
        return ProbeRequest(
            "GET",
            f"{self.base_url}/v1/models",
            headers=self.auth_headers(),
            params={"page_size": _PAGE_SIZE},
        )

    def paid_request(self) -> ProbeRequest:
        body: dict[str, Any] = {"model": self.probe_model_id}
        if self.mode == "embedding":
            path = "/v2/embed"
            body.update(texts=[PROBE_TEXT], input_type="search_query", embedding_types=["float"])
        elif self.mode == "rerank":
            path = "/v2/rerank"
            body.update(query=PROBE_TEXT, documents=["pong"], top_n=1)
        else:
            path = "/v2/chat"
            body.update(
                messages=[{"role": "user", "content": PROBE_TEXT}], max_tokens=self.output_tokens
            )
        return ProbeRequest(
            "POST", f"{self.base_url}{path}", headers=self.auth_headers(), json_body=body
        )

    def judge_free(self, data: Any) -> ProbeOutcome:
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, list):
            return self.bad_body("expected an object with a 'models' list")
        names = [m["name"] for m in models if isinstance(m, dict) and isinstance(m.get("name"), str)]
        if len(names) != len(models):
            return self.bad_body("a 'models' entry has no string 'name'")
        return self.model_listed(names)

    def judge_paid(self, data: Any) -> ProbeOutcome:
        if not isinstance(data, dict):
            return self.bad_body("expected a JSON object")
        if self.mode == "embedding":
            if not isinstance(data.get("embeddings"), dict | list):
                return self.bad_body("expected an 'embeddings' object")
            meta = data.get("meta")
            units = meta.get("billed_units") if isinstance(meta, dict) else None
            return ProbeOutcome.ok(tokens=_billed_tokens(units))
        if self.mode == "rerank":
            if not isinstance(data.get("results"), list):
                return self.bad_body("expected a 'results' list")
            return ProbeOutcome.ok()  # billed in search units, not tokens
        if not isinstance(data.get("message"), dict):
            return self.bad_body("expected a chat answer with a 'message'")
        usage = data.get("usage")
        tokens = None
        if isinstance(usage, dict):
            tokens = _billed_tokens(usage.get("billed_units"))
            if tokens is None:
                tokens = _billed_tokens(usage.get("tokens"))
        return ProbeOutcome.ok(tokens=tokens)

"""Cohere's native API: ``GET /v1/models``, ``POST /v2/chat``, ``/v2/embed``, ``/v2/rerank``.

Errors are ``{"message": "..."}`` with the HTTP status saying what went wrong;
usage is reported as ``billed_units`` (and ``tokens`` for chat).
"""

from __future__ import annotations

from typing import Any, Final

from .behavior import SimProvider
from .connection import _json_reply, _Reply, _Request
from .wire import Match, Refused, Wire, retry_after_header, usage_reply

_ROUTES: Final = {
    "/v1/models": Match.free("list"),
    "/v2/chat": Match.model_call("chat"),
    "/v2/embed": Match.model_call("embedding"),
    "/v2/rerank": Match.model_call("rerank"),
}
_ENDPOINTS_BY_MODE: Final = {"chat": ["chat"], "embedding": ["embed"], "rerank": ["rerank"]}
_VECTOR: Final = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
_INPUT_TYPES: Final = ("search_document", "search_query", "classification", "clustering", "image")
_API_VERSION: Final = {"version": "2"}


def _model(model: str, mode: str) -> dict[str, Any]:
    endpoints = _ENDPOINTS_BY_MODE.get(mode, ["chat"])
    return {
        "name": model,
        "endpoints": endpoints,
        "finetuned": False,
        "context_length": 128000,
        "tokenizer_url": None,
        "default_endpoints": endpoints,
        "features": [],
    }


class CohereWire(Wire):
    """Cohere's v2 API with Bearer keys (``https://api.cohere.com``)."""

    def match(self, rest: str) -> Match | None:
        if rest.startswith("/v1/models/") and len(rest) > 11:
            return Match.free("get", rest[11:])
        return _ROUTES.get(rest)

    def max_tokens(self, op: str, data: Any) -> int:
        value = data.get("max_tokens") if isinstance(data, dict) and op == "chat" else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return 0
        return value

    def answer(self, provider: SimProvider, match: Match, data: Any, req: _Request) -> _Reply:
        if match.op == "list":
            wanted = req.query.get("endpoint")
            models = [_model(m, provider.mode_of(m)) for m in provider.models]
            if wanted:
                models = [m for m in models if wanted in m["endpoints"]]
            return _json_reply(200, {"models": models, "next_page_token": None})
        if match.op == "get":
            assert match.path_model is not None
            listed = self.served_model(provider, match.path_model)
            return _json_reply(200, _model(listed, provider.mode_of(listed)))
        if not isinstance(data, dict):
            raise Refused(self.unparsable())
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise self.bad_request("invalid request: model must be a non-empty string")
        self.served_model(provider, model)
        if provider.mode_of(model) != match.op:
            endpoint = {"chat": "chat", "embedding": "embed", "rerank": "rerank"}[match.op]
            raise self.bad_request(
                f"invalid request: model '{model}' is not supported for the {endpoint} endpoint"
            )
        if match.op == "chat":
            return self._chat(data)
        if match.op == "embedding":
            return self._embed(data)
        return self._rerank(data)

    def _chat(self, data: dict[str, Any]) -> _Reply:
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise self.bad_request("invalid request: messages must be a non-empty array")
        max_tokens = data.get("max_tokens")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise self.bad_request("invalid request: max_tokens must be a positive integer")
        body = {
            "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
            "finish_reason": "MAX_TOKENS" if max_tokens == 1 else "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": "p"}]},
            "usage": {
                "billed_units": {"input_tokens": 1, "output_tokens": 1},
                "tokens": {"input_tokens": 7, "output_tokens": 1},
            },
        }
        return usage_reply(body, 2)

    def _embed(self, data: dict[str, Any]) -> _Reply:
        texts = data.get("texts")
        inputs = data.get("inputs")
        items = texts if isinstance(texts, list) else inputs
        if not isinstance(items, list) or not items:
            raise self.bad_request(
                "invalid request: one of texts, images or inputs must be a non-empty array"
            )
        if data.get("input_type") not in _INPUT_TYPES:
            raise self.bad_request(
                "invalid request: input_type must be one of " + ", ".join(_INPUT_TYPES)
            )
        types = data.get("embedding_types") or ["float"]
        if not isinstance(types, list):
            raise self.bad_request("invalid request: embedding_types must be an array")
        embeddings = {t: [_VECTOR if t == "float" else [1] * 8] * len(items) for t in types}
        tokens = len(items)
        body = {
            "id": "da6e531f-54c6-4a73-bf92-f60566d8d753",
            "embeddings": embeddings,
            "texts": [t for t in items if isinstance(t, str)],
            "meta": {"api_version": _API_VERSION, "billed_units": {"input_tokens": tokens}},
            "response_type": "embeddings_by_type",
        }
        return usage_reply(body, tokens)

    def _rerank(self, data: dict[str, Any]) -> _Reply:
        query = data.get("query")
        documents = data.get("documents")
        if not isinstance(query, str) or not query:
            raise self.bad_request("invalid request: query must be a non-empty string")
        if not isinstance(documents, list) or not documents:
            raise self.bad_request("invalid request: documents must be a non-empty array")
        top_n = data.get("top_n")
        count = len(documents) if not isinstance(top_n, int) else max(1, min(top_n, len(documents)))
        results = [{"index": i, "relevance_score": round(0.9 / (i + 1), 6)} for i in range(count)]
        body = {
            "id": "07734bd2-2473-4f07-94e1-0d9f0e6843cf",
            "results": results,
            # Rerank is billed in search units (one per query of up to 100 documents).
            "meta": {"api_version": _API_VERSION, "billed_units": {"search_units": 1}},
        }
        return usage_reply(body, 1)

    def error_body(
        self,
        status: int,
        message: str,
        *,
        err_type: str | None = None,
        code: str | int | None = None,
        param: str | None = None,
    ) -> Any:
        return {"message": message}

    def not_found_path(self, method: str, path: str) -> _Reply:
        return self.error_reply(404, f"{method} {path} not found")

    def model_not_found(self, model: str) -> _Reply:
        return self.error_reply(
            404,
            f"model '{model}' not found, make sure the correct model ID was used and that you "
            "have access to the model.",
        )

    def auth_error(self, *, echo_key: str | None = None, missing: bool = False) -> _Reply:
        if missing:
            return self.error_reply(401, "no api key supplied")
        message = "invalid api token" if echo_key is None else f"invalid api token: {echo_key}"
        return self.error_reply(401, message)

    def rate_limited(self, retry_after: float) -> _Reply:
        return self.error_reply(
            429,
            "You are past the rate limit of your API key (simulated). Please retry later.",
            headers=retry_after_header(retry_after),
        )

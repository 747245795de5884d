"""The Gemini API (``/v1beta``): models, generateContent, embedContent, countTokens.

Errors are Google's ``{"error": {"code", "message", "status"}}``; a wrong key
is a 400 ``API_KEY_INVALID`` and a missing one a 403, as on the real API.
"""

from __future__ import annotations

from typing import Any, Final

from .behavior import SimProvider
from .connection import _json_reply, _Reply, _Request
from .wire import Match, Refused, Wire, retry_after_header, usage_reply

GOOGLE_STATUSES: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

#: ``models/{m}:{action}`` -> (the route's op, whether a model runs).
_ACTIONS: Final = {
    "generateContent": ("chat", True),
    "embedContent": ("embedding", True),
    "batchEmbedContents": ("embedding", True),
    "countTokens": ("count_tokens", False),
}
_METHODS_BY_MODE: Final = {
    "chat": ["generateContent", "countTokens"],
    "embedding": ["embedContent", "countTokens"],
}
_VECTOR: Final = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


class GoogleErrors(Wire):
    """Google's error documents (shared with other Google APIs' wires)."""

    def error_body(
        self,
        status: int,
        message: str,
        *,
        err_type: str | None = None,
        code: str | int | None = None,
        param: str | None = None,
    ) -> Any:
        default_status = "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"
        return {
            "error": {
                "code": status,
                "message": message,
                "status": err_type or GOOGLE_STATUSES.get(status, default_status),
            }
        }

    def not_found_path(self, method: str, path: str) -> _Reply:
        return self.error_reply(404, f"Requested entity was not found: {path}")

    def rate_limited(self, retry_after: float) -> _Reply:
        return self.error_reply(
            429,
            "Resource has been exhausted (e.g. check quota).",
            err_type="RESOURCE_EXHAUSTED",
            headers=retry_after_header(retry_after),
        )


class GeminiWire(GoogleErrors):
    """``/v1beta/models[/{m}[:action]]``, the key in ``x-goog-api-key`` or ``?key=``."""

    def match(self, rest: str) -> Match | None:
        if rest == "/v1beta/models":
            return Match.free("list")
        if not rest.startswith("/v1beta/models/") or len(rest) <= 15:
            return None
        tail = rest[15:]
        if ":" not in tail:
            return Match.free("get", tail)
        model, _, action = tail.rpartition(":")
        if action not in _ACTIONS or not model:
            return None
        op, paid = _ACTIONS[action]
        return Match("POST", op, model, paid=paid)

    def sent_key(self, req: _Request) -> str | None:
        return req.headers.get("x-goog-api-key") or req.query.get("key")

    def max_tokens(self, op: str, data: Any) -> int:
        config = data.get("generationConfig") if isinstance(data, dict) else None
        value = config.get("maxOutputTokens") if isinstance(config, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return 0
        return value

    def answer(self, provider: SimProvider, match: Match, data: Any, req: _Request) -> _Reply:
        if match.op == "list":
            return _json_reply(200, {"models": [self._model(provider, m) for m in provider.models]})
        assert match.path_model is not None
        model = self.served_model(provider, match.path_model)
        if match.op == "get":
            return _json_reply(200, self._model(provider, model))
        if not isinstance(data, dict):
            raise Refused(self.unparsable())
        mode = provider.mode_of(model)
        action = req.path.rpartition(":")[2]
        if match.op != "count_tokens" and mode != match.op:
            raise Refused(
                self.error_reply(
                    404,
                    f"models/{model} is not found for API version v1beta, or is not supported "
                    f"for {action}. Call ListModels to see the list of available models and "
                    "their supported methods.",
                )
            )
        if action == "batchEmbedContents":
            requests = data.get("requests")
            if not isinstance(requests, list) or not requests:
                raise self.bad_request("* BatchEmbedContentsRequest.requests: requests is required")
            usage = {"promptTokenCount": len(requests), "totalTokenCount": len(requests)}
            body = {"embeddings": [{"values": _VECTOR}] * len(requests), "usageMetadata": usage}
            return usage_reply(body, len(requests))
        if action == "embedContent":
            if not isinstance(data.get("content"), dict):
                raise self.bad_request("* EmbedContentRequest.content: content is not specified")
            usage = {"promptTokenCount": 1, "totalTokenCount": 1}
            return usage_reply({"embedding": {"values": _VECTOR}, "usageMetadata": usage}, 1)
        if not isinstance(data.get("contents"), list) or not data["contents"]:
            raise self.bad_request("* GenerateContentRequest.contents: contents is not specified")
        if match.op == "count_tokens":
            return _json_reply(200, {"totalTokens": len(data["contents"])})
        body = {
            "candidates": [
                {
                    "content": {"parts": [{"text": "p"}], "role": "model"},
                    "finishReason": "MAX_TOKENS",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 1,
                "candidatesTokenCount": 1,
                "totalTokenCount": 2,
            },
            "modelVersion": model,
        }
        return usage_reply(body, 2)

    @staticmethod
    def _model(provider: SimProvider, model: str) -> dict[str, Any]:
        methods = _METHODS_BY_MODE.get(provider.mode_of(model), _METHODS_BY_MODE["chat"])
        return {
            "name": f"models/{model}",
            "displayName": model,
            "supportedGenerationMethods": methods,
        }

    def model_not_found(self, model: str) -> _Reply:
        return self.error_reply(404, f"models/{model} is not found", err_type="NOT_FOUND")

    def auth_error(self, *, echo_key: str | None = None, missing: bool = False) -> _Reply:
        if missing:
            return self.error_reply(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity "
                "to call this API.",
                err_type="PERMISSION_DENIED",
            )
        message = "API key not valid. Please pass a valid API key."
        if echo_key is not None:
            message = f"API key not valid: {echo_key}. Please pass a valid API key."
        body = self.error_body(400, message, err_type="INVALID_ARGUMENT")
        body["error"]["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            }
        ]
        return _json_reply(400, body)

    def forced_auth_error(self, echo_key: str | None, echo: bool) -> _Reply:
        # Gemini answers a bad key with 400 in real life; these modes exercise
        # the 401 path, so they get a 401 UNAUTHENTICATED document.
        message = "API key not valid. Please pass a valid API key."
        if echo:
            message = f"API key not valid: {echo_key or '(none)'}. Please pass a valid API key."
        return self.error_reply(401, message, err_type="UNAUTHENTICATED")

"""Anthropic's Messages API: models, messages, token counting; ``{"type": "error"}`` errors."""

from __future__ import annotations

from typing import Any, Final

from .behavior import SimProvider
from .connection import _json_reply, _Reply, _Request
from .wire import Match, Refused, Wire, bearer_token, retry_after_header, usage_reply

_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _model(model: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model,
        "display_name": model,
        "created_at": "2024-02-29T00:00:00Z",
    }


class AnthropicWire(Wire):
    """``/v1/models``, ``/v1/messages`` (+ ``/count_tokens``), ``anthropic-version`` required.

    The key is taken from ``x-api-key`` or as a Bearer token: the current SDK
    sends its API key as ``Authorization: Bearer``, which the real API accepts.
    """

    def match(self, rest: str) -> Match | None:
        if rest == "/v1/models":
            return Match.free("list")
        if rest.startswith("/v1/models/") and len(rest) > 11:
            return Match.free("get", rest[11:])
        if rest == "/v1/messages":
            return Match.model_call("chat")
        if rest == "/v1/messages/count_tokens":  # free of charge upstream
            return Match.free("count_tokens", method="POST")
        return None

    def required_headers(self, req: _Request) -> _Reply | None:
        if req.headers.get("anthropic-version"):
            return None
        return self.error_reply(400, "anthropic-version: header is required")

    def sent_key(self, req: _Request) -> str | None:
        return req.headers.get("x-api-key") or bearer_token(req)

    def max_tokens(self, op: str, data: Any) -> int:
        value = data.get("max_tokens") if isinstance(data, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return 0
        return value

    def answer(self, provider: SimProvider, match: Match, data: Any, req: _Request) -> _Reply:
        if match.op == "list":
            return self._list(provider.models, req)
        if match.op == "get":
            assert match.path_model is not None
            return _json_reply(200, _model(self.served_model(provider, match.path_model)))
        if not isinstance(data, dict):
            raise Refused(self.unparsable())
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise self.bad_request("model: Field required")
        if match.op == "chat":
            max_tokens = data.get("max_tokens")
            if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
                raise self.bad_request("max_tokens: Field required")
            if max_tokens < 1:
                raise self.bad_request("max_tokens: Input should be greater than or equal to 1")
        messages = data.get("messages")
        if not isinstance(messages, list):
            raise self.bad_request("messages: Field required")
        self.served_model(provider, model)
        if match.op == "count_tokens":
            return _json_reply(200, {"input_tokens": max(1, len(messages))})
        if not messages:
            raise self.bad_request("messages: at least one message is required")
        output_tokens = 1
        usage = {
            "input_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
        }
        body = {
            "id": "msg_sim",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "p"}],
            "stop_reason": "max_tokens",
            "stop_sequence": None,
            "usage": usage,
        }
        return usage_reply(body, 1 + output_tokens)

    def _list(self, models: list[str], req: _Request) -> _Reply:
        raw = req.query.get("limit", "20")
        try:
            limit = int(raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return self.error_reply(400, "limit: Input should be between 1 and 1000")
        page = models[:limit]
        return _json_reply(
            200,
            {
                "data": [_model(m) for m in page],
                "has_more": len(models) > limit,
                "first_id": page[0],
                "last_id": page[-1],
            },
        )

    def error_body(
        self,
        status: int,
        message: str,
        *,
        err_type: str | None = None,
        code: str | int | None = None,
        param: str | None = None,
    ) -> Any:
        default_type = "api_error" if status >= 500 else "invalid_request_error"
        return {
            "type": "error",
            "error": {
                "type": err_type or _ERROR_TYPES.get(status, default_type),
                "message": message,
            },
        }

    def not_found_path(self, method: str, path: str) -> _Reply:
        return self.error_reply(404, "Not Found")

    def model_not_found(self, model: str) -> _Reply:
        return self.error_reply(404, f"model: {model}", err_type="not_found_error")

    def auth_error(self, *, echo_key: str | None = None, missing: bool = False) -> _Reply:
        message = "invalid x-api-key" if echo_key is None else f"invalid x-api-key: {echo_key}"
        return self.error_reply(401, message, err_type="authentication_error")

    def rate_limited(self, retry_after: float) -> _Reply:
        return self.error_reply(
            429,
            "Number of requests has exceeded your rate limit (simulated).",
            err_type="rate_limit_error",
            headers=retry_after_header(retry_after),
        )

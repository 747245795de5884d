"""The error documents each provider kind answers with, one place per kind.

Adapters parse exactly these shapes, so they follow the real APIs: OpenAI-style
``{"error": {"message", "type", "code"}}``, Azure's ``{"error": {"code",
"message"}}``, Anthropic's ``{"type": "error", ...}``, Google's
``{"error": {"code", "message", "status"}}`` and Ollama's ``{"error": "..."}``.
"""

from __future__ import annotations

from typing import Any, Final

from .behavior import _OPENAI_LIKE
from .connection import _json_reply, _Reply

_OPENAI_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_GOOGLE_STATUSES: Final = {
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


def _error_body(
    kind: str,
    status: int,
    message: str,
    *,
    err_type: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The error document ``kind`` answers with; adapters parse exactly these shapes."""
    if kind in _OPENAI_LIKE:
        default_type = "server_error" if status >= 500 else "invalid_request_error"
        return {
            "error": {
                "message": message,
                "type": err_type or _OPENAI_ERROR_TYPES.get(status, default_type),
                "code": code,
            }
        }
    if kind == "azure":
        return {"error": {"code": code or str(status), "message": message}}
    if kind == "anthropic":
        default_type = "api_error" if status >= 500 else "invalid_request_error"
        return {
            "type": "error",
            "error": {
                "type": err_type or _ANTHROPIC_ERROR_TYPES.get(status, default_type),
                "message": message,
            },
        }
    if kind == "gemini":
        default_status = "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"
        return {
            "error": {
                "code": status,
                "message": message,
                "status": err_type or _GOOGLE_STATUSES.get(status, default_status),
            }
        }
    return {"error": message}  # ollama


def _error_reply(
    kind: str,
    status: int,
    message: str,
    *,
    err_type: str | None = None,
    code: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> _Reply:
    body = _error_body(kind, status, message, err_type=err_type, code=code)
    return _json_reply(status, body, headers)


def _not_found_path(kind: str, method: str, path: str) -> _Reply:
    if kind in _OPENAI_LIKE:
        return _error_reply(kind, 404, f"Invalid URL ({method} {path})")
    if kind == "azure":
        return _error_reply(kind, 404, "Resource not found")
    if kind == "anthropic":
        return _error_reply(kind, 404, "Not Found")
    if kind == "gemini":
        return _error_reply(kind, 404, f"Requested entity was not found: {path}")
    return _error_reply(kind, 404, "404 page not found")


def _model_not_found(kind: str, model: str) -> _Reply:
    if kind in _OPENAI_LIKE:
        return _error_reply(
            kind,
            404,
            f"The model `{model}` does not exist",
            err_type="invalid_request_error",
            code="model_not_found",
        )
    if kind == "azure":
        return _error_reply(
            kind,
            404,
            "The API deployment for this resource does not exist.",
            code="DeploymentNotFound",
        )
    if kind == "anthropic":
        return _error_reply(kind, 404, f"model: {model}", err_type="not_found_error")
    if kind == "gemini":
        return _error_reply(kind, 404, f"models/{model} is not found", err_type="NOT_FOUND")
    return _error_reply(kind, 404, f"model '{model}' not found")


def _auth_error(kind: str, *, echo_key: str | None = None, missing: bool = False) -> _Reply:
    """The kind's answer to a bad key; with ``echo_key`` the message leaks the key.

    Leaking is deliberate (mode ``echo_key``): some real upstreams quote the
    key they were sent, and the checker must redact it before logging.
    """
    echo = echo_key is not None
    shown = echo_key or "(none)"
    if kind in _OPENAI_LIKE:
        message = "Incorrect API key provided."
        if echo:
            message = (
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
        return _error_reply(
            kind, 401, message, err_type="invalid_request_error", code="invalid_api_key"
        )
    if kind == "azure":
        message = "Access denied due to invalid subscription key or wrong API endpoint."
        if echo:
            message = (
                f"Access denied due to invalid subscription key {shown} or wrong API endpoint."
            )
        return _error_reply(kind, 401, message, code="401")
    if kind == "anthropic":
        message = f"invalid x-api-key: {shown}" if echo else "invalid x-api-key"
        return _error_reply(kind, 401, message, err_type="authentication_error")
    if kind == "gemini":
        if missing:
            return _error_reply(
                kind,
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity "
                "to call this API.",
                err_type="PERMISSION_DENIED",
            )
        message = "API key not valid. Please pass a valid API key."
        if echo:
            message = f"API key not valid: {shown}. Please pass a valid API key."
        body = _error_body(kind, 400, message, err_type="INVALID_ARGUMENT")
        body["error"]["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            }
        ]
        return _json_reply(400, body)
    message = f"unauthorized: invalid key {shown}" if echo else "unauthorized"
    return _error_reply(kind, 401, message)


def _forced_auth_error(kind: str, echo_key: str | None, echo: bool) -> _Reply:
    """Modes ``unauthorized``/``echo_key``: always HTTP 401, whatever the kind.

    Gemini answers a bad key with 400 in real life; these modes are about
    exercising the 401 path, so Gemini gets a 401 UNAUTHENTICATED document here.
    """
    if kind != "gemini":
        return _auth_error(kind, echo_key=echo_key if echo else None)
    message = "API key not valid. Please pass a valid API key."
    if echo:
        message = f"API key not valid: {echo_key or '(none)'}. Please pass a valid API key."
    return _error_reply(kind, 401, message, err_type="UNAUTHENTICATED")


def _rate_limited(kind: str, retry_after: float) -> _Reply:
    seconds = _format_seconds(retry_after)
    headers = [("retry-after", seconds)]
    if kind in _OPENAI_LIKE:
        return _error_reply(
            kind,
            429,
            f"Rate limit reached for requests (simulated). Please try again in {seconds}s.",
            err_type="rate_limit_error",
            code="rate_limit_exceeded",
            headers=headers,
        )
    if kind == "azure":
        return _error_reply(
            kind,
            429,
            "Requests to the ChatCompletions_Create Operation under Azure OpenAI API have "
            f"exceeded the rate limit of your current tier. Please retry after {seconds} seconds.",
            code="429",
            headers=headers,
        )
    if kind == "anthropic":
        return _error_reply(
            kind,
            429,
            "Number of requests has exceeded your rate limit (simulated).",
            err_type="rate_limit_error",
            headers=headers,
        )
    if kind == "gemini":
        return _error_reply(
            kind,
            429,
            "Resource has been exhausted (e.g. check quota).",
            err_type="RESOURCE_EXHAUSTED",
            headers=headers,
        )
    return _error_reply(kind, 429, "too many requests (simulated)", headers=headers)


def _format_seconds(value: float) -> str:
    """Retry-After text: whole seconds as an integer (what RFC 9110 allows), else the float."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))

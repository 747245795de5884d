"""The OpenAI wire format and the providers that speak it: routes, keys, error documents.

One :class:`OpenAIWire` per kind, differing in the base path (``/v1``,
``/openai/v1``, ``/api/paas/v4``...) and in the shape of their error documents
(:data:`_DIALECTS`); Azure OpenAI (deployments in the path, ``api-key``,
``api-version``) and Azure AI model inference are subclasses. What each mode's
call validates and answers is in :mod:`.openai_modes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from . import openai_modes
from .behavior import SimProvider
from .connection import _json_reply, _Reply, _Request
from .multipart import parse_form
from .wire import Match, Wire, bearer_token, format_seconds, retry_after_header

_MODEL_CREATED: Final = 1700000000

#: The path below the base URL of each model call, and its mode.
_ENDPOINTS: Final[Mapping[str, str]] = {
    "/chat/completions": "chat",
    "/completions": "completion",
    "/embeddings": "embedding",
    "/images/generations": "image_generation",
    "/audio/speech": "audio_speech",
    "/audio/transcriptions": "audio_transcription",
    "/rerank": "rerank",
    "/moderations": "moderation",
    "/responses": "responses",
}

_OPENAI_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
}

#: How each kind's errors look when it is not OpenAI's ``{"error": {...}}``:
#: vLLM and Mistral answer a flat ``{"object": "error", ...}``, OpenRouter puts
#: the HTTP status in ``error.code``, xAI answers ``{"code", "error"}`` strings,
#: Zhipu ``{"error": {"code": "1002", ...}}`` with its own numeric codes,
#: Azure AI ``{"error": {"code", "message", "status"}}``.
_DIALECTS: Final[Mapping[str, str]] = {
    "mistral": "flat",
    "vllm": "flat",
    "openrouter": "openrouter",
    "xai": "xai",
    "zhipu": "zhipu",
    "azure-ai": "azure",
}

#: Kinds that serve /completions with chat models too (OpenAI and Azure refuse).
_STRICT_COMPLETIONS: Final = frozenset({"openai", "azure"})

#: Health routes at the server's origin, outside the API (and its key).
_HEALTH_PATHS: Final[Mapping[str, frozenset[str]]] = {
    "vllm": frozenset({"/health"}),
    "llama-cpp": frozenset({"/health"}),
    "openai-compatible": frozenset({"/health"}),
    "nvidia-nim": frozenset({"/v1/health/ready", "/v1/health/live"}),
}

_ZHIPU_CODES: Final = {401: "1002", 404: "1211", 429: "1302", 400: "1214"}
_AZURE_CODES: Final = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    429: "Too Many Requests",
}

_INCORRECT_KEY: Final = "Incorrect API key provided."


def openai_model(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": _MODEL_CREATED, "owned_by": "system"}


class OpenAIWire(Wire):
    """The OpenAI API under ``prefix``, with ``kind``'s error dialect."""

    def __init__(self, kind: str, prefix: str) -> None:
        self.kind = kind
        self.prefix = prefix
        self.dialect = _DIALECTS.get(kind, "openai")
        self.strict_completions = kind in _STRICT_COMPLETIONS
        self.health_paths = _HEALTH_PATHS.get(kind, frozenset())

    # -- routing ---------------------------------------------------------------

    def match(self, rest: str) -> Match | None:
        if rest in self.health_paths:
            return Match("GET", "health", public=True)
        prefix = self.prefix
        if not rest.startswith(prefix + "/"):
            return None
        tail = rest[len(prefix) :]
        if tail == "/models":
            return Match.free("list")
        if tail.startswith("/models/") and len(tail) > 8:
            return Match.free("get", tail[8:])
        op = _ENDPOINTS.get(tail)
        return Match.model_call(op) if op else None

    def read_body(self, match: Match, req: _Request) -> Any:
        if match.op != "audio_transcription":
            return super().read_body(match, req)
        content_type = req.headers.get("content-type", "")
        form = parse_form(content_type, req.body)
        if form is None:
            shown = content_type.partition(";")[0] or "none"
            raise self.bad_request(
                f"Invalid Content-Type header ({shown}), expected multipart/form-data. "
                "(HINT: If you're using curl, you can pass -H 'Content-Type: multipart/form-data')"
            )
        return form

    def max_tokens(self, op: str, data: Any) -> int:
        if not isinstance(data, dict):
            return 0
        if op == "chat":
            value = data.get("max_tokens")
            if value is None:
                value = data.get("max_completion_tokens")
        elif op == "completion":
            value = data.get("max_tokens")
        elif op == "responses":
            value = data.get("max_output_tokens")
        else:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return 0
        return value

    def answer(self, provider: SimProvider, match: Match, data: Any, req: _Request) -> _Reply:
        if match.op == "health":
            return _Reply(200, b"", "text/plain; charset=utf-8")
        if match.op == "list":
            return self.list_reply(provider)
        if match.op == "get":
            assert match.path_model is not None
            return _json_reply(200, openai_model(self.served_model(provider, match.path_model)))
        return openai_modes.answer(
            self,
            provider,
            match.op,
            match.path_model,
            data,
            strict_completions=self.strict_completions,
        )

    def list_reply(self, provider: SimProvider) -> _Reply:
        return _json_reply(
            200, {"object": "list", "data": [openai_model(m) for m in provider.models]}
        )

    # -- errors ------------------------------------------------------------------

    def error_body(
        self,
        status: int,
        message: str,
        *,
        err_type: str | None = None,
        code: str | int | None = None,
        param: str | None = None,
    ) -> Any:
        default_type = "server_error" if status >= 500 else "invalid_request_error"
        kind_of_error = err_type or _OPENAI_ERROR_TYPES.get(status, default_type)
        dialect = self.dialect
        if dialect == "flat":
            return {
                "object": "error",
                "message": message,
                "type": kind_of_error,
                "param": param,
                "code": code if code is not None else status,
            }
        if dialect == "openrouter":
            return {"error": {"message": message, "code": status}}
        if dialect == "xai":
            return {"code": _XAI_CODES.get(status, "Internal error"), "error": message}
        if dialect == "zhipu":
            return {"error": {"code": _ZHIPU_CODES.get(status, str(status)), "message": message}}
        if dialect == "azure":
            azure_code = code if code is not None else _AZURE_CODES.get(status, str(status))
            return {"error": {"code": azure_code, "message": message, "status": status}}
        return {"error": {"message": message, "type": kind_of_error, "param": param, "code": code}}

    def not_found_path(self, method: str, path: str) -> _Reply:
        return self.error_reply(404, f"Invalid URL ({method} {path})")

    def model_not_found(self, model: str) -> _Reply:
        return self.error_reply(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )

    def wrong_mode(self, model: str, mode: str, op: str) -> _Reply:
        # OpenAI's own words for the two classic mix-ups; one sentence for the rest.
        if op == "chat":
            return self.error_reply(
                404,
                "This is not a chat model and thus not supported in the v1/chat/completions "
                "endpoint. Did you mean to use v1/completions?",
                param="model",
            )
        if op == "completion" and mode == "chat":
            return self.error_reply(
                404,
                "This is a chat model and not supported in the v1/completions endpoint. "
                "Did you mean to use v1/chat/completions?",
                param="model",
            )
        endpoint = next(path for path, mode_ in _ENDPOINTS.items() if mode_ == op)
        return self.error_reply(
            400,
            f"The model `{model}` ({mode.replace('_', ' ')}) does not support "
            f"the {endpoint} endpoint.",
            param="model",
            code="model_not_supported",
        )

    def auth_error(self, *, echo_key: str | None = None, missing: bool = False) -> _Reply:
        message = _INCORRECT_KEY
        if echo_key is not None:
            message = (
                f"Incorrect API key provided: {echo_key}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
        return self.error_reply(
            401, message, err_type="invalid_request_error", code="invalid_api_key"
        )

    def rate_limited(self, retry_after: float) -> _Reply:
        seconds = format_seconds(retry_after)
        return self.error_reply(
            429,
            f"Rate limit reached for requests (simulated). Please try again in {seconds}s.",
            err_type="rate_limit_error",
            code="rate_limit_exceeded",
            headers=retry_after_header(retry_after),
        )


_XAI_CODES: Final = {
    400: "Client specified an invalid argument",
    401: "The caller does not have permission to execute the specified operation",
    403: "The caller does not have permission to execute the specified operation",
    404: "Some requested entity was not found",
    429: "Too many requests",
}


class AzureWire(OpenAIWire):
    """Azure OpenAI: ``/openai/deployments/{deployment}/...?api-version=``, key in ``api-key``."""

    def __init__(self) -> None:
        super().__init__("azure", "/openai")
        self.dialect = "azure-openai"

    def precheck(self, req: _Request) -> _Reply | None:
        if req.query.get("api-version"):
            return None
        return self.error_reply(404, "Resource not found")

    def match(self, rest: str) -> Match | None:
        if rest == "/openai/models":
            return Match.free("list")
        if rest.startswith("/openai/models/") and len(rest) > 15:
            return Match.free("get", rest[15:])
        if rest == "/openai/responses":  # the SDK's path: the deployment is the body's model
            return Match.model_call("responses")
        parts = rest.split("/", 4)
        if len(parts) == 5 and parts[1:3] == ["openai", "deployments"] and parts[3]:
            op = _ENDPOINTS.get("/" + parts[4])
            return Match.model_call(op, parts[3]) if op else None
        return None

    def sent_key(self, req: _Request) -> str | None:
        return req.headers.get("api-key")

    def list_reply(self, provider: SimProvider) -> _Reply:
        data = [{"id": m, "object": "model", "status": "succeeded"} for m in provider.models]
        return _json_reply(200, {"data": data, "object": "list"})

    def error_body(
        self,
        status: int,
        message: str,
        *,
        err_type: str | None = None,
        code: str | int | None = None,
        param: str | None = None,
    ) -> Any:
        error: dict[str, Any] = {"code": code or str(status), "message": message}
        if err_type is not None or param is not None:  # an OpenAI model error passed through
            error.update(type=err_type or "invalid_request_error", param=param)
        return {"error": error}

    def not_found_path(self, method: str, path: str) -> _Reply:
        return self.error_reply(404, "Resource not found")

    def model_not_found(self, model: str) -> _Reply:
        return self.error_reply(
            404, "The API deployment for this resource does not exist.", code="DeploymentNotFound"
        )

    def wrong_mode(self, model: str, mode: str, op: str) -> _Reply:
        operation = _AZURE_OPERATIONS[op]
        return self.error_reply(
            400,
            f"The {operation} operation does not work with the specified model, {model}. "
            "Please choose different model and try again. You can learn more about which "
            "models can be used with each operation here: https://go.microsoft.com/fwlink/"
            "?linkid=2197993.",
            code="OperationNotSupported",
        )

    def auth_error(self, *, echo_key: str | None = None, missing: bool = False) -> _Reply:
        message = "Access denied due to invalid subscription key or wrong API endpoint."
        if echo_key is not None:
            message = (
                f"Access denied due to invalid subscription key {echo_key} or wrong API endpoint."
            )
        return self.error_reply(401, message, code="401")

    def rate_limited(self, retry_after: float) -> _Reply:
        seconds = format_seconds(retry_after)
        return self.error_reply(
            429,
            "Requests to the ChatCompletions_Create Operation under Azure OpenAI API have "
            f"exceeded the rate limit of your current tier. Please retry after {seconds} seconds.",
            code="429",
            headers=retry_after_header(retry_after),
        )


_AZURE_OPERATIONS: Final = {
    "chat": "chatCompletion",
    "completion": "completion",
    "embedding": "embeddings",
    "image_generation": "imagesGeneration",
    "audio_speech": "audioSpeech",
    "audio_transcription": "audioTranscription",
    "rerank": "rerank",
    "moderation": "moderation",
    "responses": "responses",
}


class AzureAIWire(OpenAIWire):
    """Azure AI model inference (``https://<resource>.services.ai.azure.com/models``).

    The key goes in ``api-key`` or as a Bearer token; ``api-version`` is taken
    but not required (clients configured as OpenAI-compatible omit it).
    ``GET /models/info`` describes the endpoint's model.
    """

    def __init__(self) -> None:
        super().__init__("azure-ai", "/models")

    def match(self, rest: str) -> Match | None:
        if rest == "/models/info":
            return Match.free("info")
        return super().match(rest)

    def sent_key(self, req: _Request) -> str | None:
        return req.headers.get("api-key") or bearer_token(req)

    def answer(self, provider: SimProvider, match: Match, data: Any, req: _Request) -> _Reply:
        if match.op == "info":
            model = provider.models[0]
            info = {
                "model_name": model,
                "model_type": _AZURE_AI_MODEL_TYPES.get(provider.mode_of(model), "chat-completion"),
                "model_provider_name": "Simulated",
            }
            return _json_reply(200, info)
        return super().answer(provider, match, data, req)

    def auth_error(self, *, echo_key: str | None = None, missing: bool = False) -> _Reply:
        message = "Access denied due to invalid subscription key or wrong API endpoint."
        if echo_key is not None:
            message = (
                f"Access denied due to invalid subscription key {echo_key} or wrong API endpoint."
            )
        return self.error_reply(401, message)


_AZURE_AI_MODEL_TYPES: Final = {
    "chat": "chat-completion",
    "embedding": "embeddings",
    "completion": "text-generation",
}

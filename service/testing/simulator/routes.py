"""Each kind's API: the routes it serves, how it validates a request, its healthy answers.

Pure functions of the provider and the request (no I/O): :func:`_route` checks
path, method, headers, key, body and model the way the real API does, counts
the probe, and returns the reply a healthy upstream would send.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from .behavior import _OPENAI_LIKE, ProviderStats, SimProvider
from .connection import _json_reply, _Reply, _Request
from .error_replies import _auth_error, _error_reply, _model_not_found, _not_found_path

_MODEL_CREATED: Final = 1700000000


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _openai_model(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": _MODEL_CREATED, "owned_by": "system"}


def _anthropic_model(model: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model,
        "display_name": model,
        "created_at": "2024-02-29T00:00:00Z",
    }


def _gemini_model(model: str) -> dict[str, Any]:
    return {
        "name": f"models/{model}",
        "displayName": model,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }


def _chat_completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-sim",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "p"},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@dataclass(frozen=True, slots=True)
class _Match:
    """A recognised provider route: the method it takes, what it does, the model in its path."""

    method: str
    op: str  # list | get | ping | complete | chat
    path_model: str | None = None


_LIST_OPS: Final = frozenset({"list", "get", "ping"})
_COMPLETION_OPS: Final = frozenset({"complete", "chat"})


def _match_route(kind: str, rest: str) -> _Match | None:
    """Map a path below ``/{name}`` to the route that kind serves there, if any."""
    if kind in _OPENAI_LIKE:
        prefix = _OPENAI_LIKE[kind]
        if rest == f"{prefix}/models":
            return _Match("GET", "list")
        if rest.startswith(f"{prefix}/models/") and len(rest) > len(prefix) + 8:
            return _Match("GET", "get", rest[len(prefix) + 8 :])
        if rest == f"{prefix}/chat/completions":
            return _Match("POST", "complete")
        return None
    if kind == "azure":
        if rest == "/openai/models":
            return _Match("GET", "list")
        parts = rest.split("/")
        if (
            len(parts) == 6
            and parts[1:3] == ["openai", "deployments"]
            and parts[3]
            and parts[4:] == ["chat", "completions"]
        ):
            return _Match("POST", "complete", parts[3])
        return None
    if kind == "anthropic":
        if rest == "/v1/models":
            return _Match("GET", "list")
        if rest.startswith("/v1/models/") and len(rest) > 11:
            return _Match("GET", "get", rest[11:])
        if rest == "/v1/messages":
            return _Match("POST", "complete")
        return None
    if kind == "gemini":
        if rest == "/v1beta/models":
            return _Match("GET", "list")
        if rest.startswith("/v1beta/models/") and len(rest) > 15:
            tail = rest[15:]
            if ":" not in tail:
                return _Match("GET", "get", tail)
            model, _, action = tail.rpartition(":")
            if action == "generateContent" and model:
                return _Match("POST", "complete", model)
        return None
    # ollama
    if rest in ("/", "/api/version"):
        return _Match("GET", "ping")
    if rest == "/api/tags":
        return _Match("GET", "list")
    if rest == "/api/generate":
        return _Match("POST", "complete")
    if rest == "/api/chat":
        return _Match("POST", "chat")
    return None


def _max_tokens(kind: str, data: Any) -> int:
    """The output-token budget a completion call asked for (0 if none or not an int)."""
    if not isinstance(data, dict):
        return 0
    value: Any = None
    if kind == "gemini":
        config = data.get("generationConfig")
        value = config.get("maxOutputTokens") if isinstance(config, dict) else None
    elif kind == "ollama":
        options = data.get("options")
        value = options.get("num_predict") if isinstance(options, dict) else None
    else:
        value = data.get("max_tokens")
        if value is None and kind != "anthropic":
            value = data.get("max_completion_tokens")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


@dataclass(slots=True)
class _Routed:
    """Outcome of validating a request: the reply, and whether modes apply to it."""

    reply: _Reply
    probe: bool  # True: validation passed, ``reply`` is the healthy answer


def _sent_key(kind: str, req: _Request) -> str | None:
    """The credential the client presented, the way this kind expects it."""
    h = req.headers
    if kind == "azure":
        return h.get("api-key")
    if kind == "anthropic":
        return h.get("x-api-key")
    if kind == "gemini":
        return h.get("x-goog-api-key") or req.query.get("key")
    auth = h.get("authorization")
    if auth is None:
        return None
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else auth


def _route(
    provider: SimProvider,
    rest: str,
    req: _Request,
    stats: ProviderStats,
    *,
    check_auth: bool = True,
) -> _Routed:
    """Validate path, method, headers, key and body the way the real API does.

    Probe counters (``stats``) move as soon as a route is recognised, whatever the
    outcome: they record what the client *called*, which is what billing
    tests care about.
    """
    kind = provider.kind
    if kind == "azure" and not req.query.get("api-version"):
        return _Routed(_error_reply(kind, 404, "Resource not found"), False)
    match = _match_route(kind, rest)
    if match is None:
        return _Routed(_not_found_path(kind, req.method, rest), False)
    if req.method != match.method:
        reply = _error_reply(kind, 405, f"Method Not Allowed: {req.method} {rest}")
        reply.headers.append(("allow", match.method))
        return _Routed(reply, False)

    data: Any = None
    body_ok = True
    if match.op in _COMPLETION_OPS:
        try:
            data = json.loads(req.body) if req.body else None
        except ValueError:
            body_ok = False
        stats.completion_probes += 1
        stats.max_tokens_requested += _max_tokens(kind, data)
    else:
        stats.list_probes += 1

    if kind == "anthropic" and not req.headers.get("anthropic-version"):
        return _Routed(_error_reply(kind, 400, "anthropic-version: header is required"), False)
    if check_auth and provider.api_key is not None:
        sent = _sent_key(kind, req)
        if sent != provider.api_key:
            return _Routed(_auth_error(kind, missing=sent is None), False)

    model: str | None = match.path_model
    if match.op in _COMPLETION_OPS:
        if not body_ok or not isinstance(data, dict):
            return _Routed(
                _error_reply(kind, 400, "could not parse the JSON body of your request"),
                False,
            )
        if model is None:
            body_model = data.get("model")
            if not isinstance(body_model, str) or not body_model:
                return _Routed(_error_reply(kind, 400, "model: Field required"), False)
            model = body_model
        if kind == "anthropic" and not isinstance(data.get("max_tokens"), int):
            return _Routed(_error_reply(kind, 400, "max_tokens: Field required"), False)
    if model is not None and not _serves(provider, model):
        return _Routed(_model_not_found(kind, model), False)
    return _Routed(_ok_reply(provider, match.op, model, req), True)


def _serves(provider: SimProvider, model: str) -> bool:
    if model in provider.models:
        return True
    # Ollama resolves an untagged name to ":latest", as the real server does.
    return provider.kind == "ollama" and ":" not in model and f"{model}:latest" in provider.models


def _ok_reply(provider: SimProvider, op: str, model: str | None, req: _Request) -> _Reply:
    """The healthy answer for a validated request."""
    kind, models = provider.kind, provider.models
    if op == "complete" or op == "chat":
        assert model is not None
        if kind == "anthropic":
            return _json_reply(
                200,
                {
                    "id": "msg_sim",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": "p"}],
                    "stop_reason": "max_tokens",
                    "usage": {"input_tokens": 1, "output_tokens": 1},
                },
            )
        if kind == "gemini":
            return _json_reply(
                200,
                {
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
                },
            )
        if kind == "ollama":
            answer: dict[str, Any] = {"model": model, "created_at": _now_iso()}
            if op == "chat":
                answer["message"] = {"role": "assistant", "content": "p"}
            else:
                answer["response"] = "p"
            answer.update(done=True, done_reason="length")
            return _json_reply(200, answer)
        return _json_reply(200, _chat_completion(model))
    if op == "get":
        assert model is not None
        if kind == "anthropic":
            return _json_reply(200, _anthropic_model(model))
        if kind == "gemini":
            return _json_reply(200, _gemini_model(model))
        return _json_reply(200, _openai_model(model))
    if op == "ping":
        if req.path.endswith("/api/version"):
            return _json_reply(200, {"version": "0.5.7"})
        return _Reply(200, b"Ollama is running", "text/plain; charset=utf-8")
    # op == "list"
    if kind in _OPENAI_LIKE:
        return _json_reply(200, {"object": "list", "data": [_openai_model(m) for m in models]})
    if kind == "azure":
        return _json_reply(
            200,
            {
                "data": [{"id": m, "object": "model", "status": "succeeded"} for m in models],
                "object": "list",
            },
        )
    if kind == "anthropic":
        return _anthropic_list(models, req)
    if kind == "gemini":
        return _json_reply(200, {"models": [_gemini_model(m) for m in models]})
    return _json_reply(
        200,
        {
            "models": [
                {
                    "name": m,
                    "model": m,
                    "modified_at": "2024-05-01T00:00:00Z",
                    "size": 1,
                    "digest": "sha256:0",
                }
                for m in models
            ]
        },
    )


def _anthropic_list(models: list[str], req: _Request) -> _Reply:
    raw = req.query.get("limit", "20")
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        return _error_reply("anthropic", 400, "limit: Input should be between 1 and 1000")
    page = models[:limit]
    return _json_reply(
        200,
        {
            "data": [_anthropic_model(m) for m in page],
            "has_more": len(models) > limit,
            "first_id": page[0],
            "last_id": page[-1],
        },
    )

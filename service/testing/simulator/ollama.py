"""Ollama's native API: version, tags, show, generate, chat, embed; ``{"error": "..."}`` errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from .behavior import SimProvider
from .connection import _json_reply, _Reply, _Request
from .wire import Match, Refused, Wire, retry_after_header, usage_reply

_VECTOR: Final = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
#: Nanoseconds, as Ollama reports its timings.
_TIMINGS: Final = {"total_duration": 1_000_000, "load_duration": 100_000}

_ROUTES: Final = {
    "/": Match.free("ping"),
    "/api/version": Match.free("ping"),
    "/api/tags": Match.free("list"),
    "/api/show": Match.free("show", method="POST"),
    "/api/generate": Match.model_call("completion"),
    "/api/chat": Match.model_call("chat"),
    "/api/embed": Match.model_call("embedding"),
    "/api/embeddings": Match.model_call("embedding"),  # the older, single-prompt route
}


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class OllamaWire(Wire):
    """An Ollama server; a key (Bearer) only when one is configured (a gateway in front)."""

    def match(self, rest: str) -> Match | None:
        return _ROUTES.get(rest)

    def max_tokens(self, op: str, data: Any) -> int:
        options = data.get("options") if isinstance(data, dict) else None
        value = options.get("num_predict") if isinstance(options, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return 0
        return value

    def serves(self, provider: SimProvider, model: str) -> bool:
        # An untagged name means ":latest", as the real server resolves it.
        return model in provider.models or (
            ":" not in model and f"{model}:latest" in provider.models
        )

    def answer(self, provider: SimProvider, match: Match, data: Any, req: _Request) -> _Reply:
        if match.op == "ping":
            if req.path.endswith("/api/version"):
                return _json_reply(200, {"version": "0.5.7"})
            return _Reply(200, b"Ollama is running", "text/plain; charset=utf-8")
        if match.op == "list":
            return _json_reply(200, {"models": [_tag(m) for m in provider.models]})
        if not isinstance(data, dict):
            raise Refused(self.unparsable())
        model = data.get("model") or data.get("name")  # "name": older clients' spelling
        if not isinstance(model, str) or not model:
            raise self.bad_request("model is required")
        self.served_model(provider, model)
        mode = provider.mode_of(model)
        if match.op == "show":
            return _json_reply(200, _show(model, mode))
        if match.op in ("chat", "completion") and mode != "chat":
            verb = "chat" if match.op == "chat" else "generate"
            raise self.bad_request(f'"{model}" does not support {verb}')
        if match.op == "embedding":
            return self._embed(model, data, req)
        answer: dict[str, Any] = {"model": model, "created_at": _now_iso()}
        if match.op == "chat":
            answer["message"] = {"role": "assistant", "content": "p"}
        else:
            answer["response"] = "p"
        answer.update(
            done=True,
            done_reason="length",
            **_TIMINGS,
            prompt_eval_count=1,
            prompt_eval_duration=10_000,
            eval_count=1,
            eval_duration=10_000,
        )
        return usage_reply(answer, 2)

    def _embed(self, model: str, data: dict[str, Any], req: _Request) -> _Reply:
        if req.path.endswith("/api/embeddings"):
            if not isinstance(data.get("prompt"), str):
                raise self.bad_request("prompt is required")
            return usage_reply({"embedding": _VECTOR}, 1)
        raw = data.get("input")
        inputs = raw if isinstance(raw, list) else [raw]
        if raw is None or not inputs or not all(isinstance(i, str) for i in inputs):
            raise self.bad_request("invalid input type")
        body = {
            "model": model,
            "embeddings": [_VECTOR] * len(inputs),
            **_TIMINGS,
            "prompt_eval_count": len(inputs),
        }
        return usage_reply(body, len(inputs))

    def error_body(
        self,
        status: int,
        message: str,
        *,
        err_type: str | None = None,
        code: str | int | None = None,
        param: str | None = None,
    ) -> Any:
        return {"error": message}

    def not_found_path(self, method: str, path: str) -> _Reply:
        return self.error_reply(404, "404 page not found")

    def model_not_found(self, model: str) -> _Reply:
        return self.error_reply(404, f"model '{model}' not found")

    def auth_error(self, *, echo_key: str | None = None, missing: bool = False) -> _Reply:
        message = "unauthorized" if echo_key is None else f"unauthorized: invalid key {echo_key}"
        return self.error_reply(401, message)

    def rate_limited(self, retry_after: float) -> _Reply:
        return self.error_reply(
            429, "too many requests (simulated)", headers=retry_after_header(retry_after)
        )


def _tag(model: str) -> dict[str, Any]:
    return {
        "name": model,
        "model": model,
        "modified_at": "2024-05-01T00:00:00Z",
        "size": 1,
        "digest": "sha256:0",
    }


def _show(model: str, mode: str) -> dict[str, Any]:
    """``POST /api/show``: the model's Modelfile, details and capabilities."""
    family = model.partition(":")[0].split("-")[0] or "llama"
    return {
        "modelfile": f"FROM {model}\n",
        "parameters": 'stop "<|eot_id|>"',
        "template": "{{ .Prompt }}",
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": "8.0B",
            "quantization_level": "Q4_0",
        },
        "model_info": {"general.architecture": family, "general.parameter_count": 8030261248},
        "capabilities": ["embedding"] if mode == "embedding" else ["completion"],
        "modified_at": "2024-05-01T00:00:00Z",
    }

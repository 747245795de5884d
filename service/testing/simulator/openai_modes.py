"""What each OpenAI-family model call validates and answers, one function per mode.

Validation follows the real API: a missing or mistyped field gets OpenAI's own
400 message and code, a model of another mode the provider's "wrong endpoint"
error, a reasoning model's ``max_tokens`` the "Use 'max_completion_tokens'
instead." refusal. Every billed answer carries ``usage`` with the real field
names and bills its total (``_Reply.billed_tokens``).
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from . import openai_fields as fields
from . import openai_media
from .behavior import SimProvider
from .connection import _Reply
from .wire import Refused, Wire, usage_reply

#: The calls a model of each mode answers (a chat model also serves /responses).
_ACCEPTS: Final[Mapping[str, frozenset[str]]] = {
    "chat": frozenset({"chat", "responses"}),
    "completion": frozenset({"completion"}),
    "embedding": frozenset({"embedding"}),
    "image_generation": frozenset({"image_generation"}),
    "audio_speech": frozenset({"audio_speech"}),
    "audio_transcription": frozenset({"audio_transcription"}),
    "rerank": frozenset({"rerank"}),
    "moderation": frozenset({"moderation"}),
    "responses": frozenset({"responses"}),
}

#: Tokens a reasoning model thinks before it answers: a budget at or below this
#: ends with no visible text, as the real models do at ``max_completion_tokens=1``.
REASONING_TOKENS: Final = 8

_MODERATION_CATEGORIES: Final = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
    "sexual/minors", "violence", "violence/graphic",
)  # fmt: skip


def answer(
    wire: Wire,
    provider: SimProvider,
    op: str,
    path_model: str | None,
    data: Any,
    *,
    strict_completions: bool,
) -> _Reply:
    """Validate a model call of mode ``op`` and answer it (or raise :class:`Refused`)."""
    if not isinstance(data, dict):
        raise Refused(wire.unparsable())
    model = path_model if path_model is not None else _body_model(wire, op, data)
    if model is not None:
        wire.served_model(provider, model)
        mode = provider.mode_of(model)
        accepted = _ACCEPTS[mode]
        if mode == "chat" and not strict_completions:
            accepted = accepted | {"completion"}  # vLLM & co. complete with any model
        if op not in accepted:
            raise Refused(wire.wrong_mode(model, mode, op))
    return _ANSWERS[op](wire, provider, model, data)


def _body_model(wire: Wire, op: str, data: dict[str, Any]) -> str | None:
    raw = data.get("model")
    if raw is None and op == "moderation":
        return None  # OpenAI picks its default moderation model
    if raw is None or raw == "":
        raise wire.bad_request("you must provide a model parameter")
    if not isinstance(raw, str):
        raise fields.invalid_type(wire, "model", raw, "a string")
    return raw


# -- answers ----------------------------------------------------------------


def _generate(budget: int | None, reasoning: bool) -> tuple[str, str, int, int]:
    """(text, finish_reason, completion tokens, reasoning tokens) within ``budget``."""
    if not reasoning:
        return "p", "length" if budget == 1 else "stop", 1, 0
    if budget is not None and budget <= REASONING_TOKENS:
        return "", "length", budget, budget  # thought until the budget ran out
    return "p", "stop", REASONING_TOKENS + 1, REASONING_TOKENS


def _chat(wire: Wire, provider: SimProvider, model: str | None, data: dict[str, Any]) -> _Reply:
    assert model is not None
    messages = fields.require(wire, data, "messages")
    if not isinstance(messages, list):
        raise fields.invalid_type(wire, "messages", messages, "an array")
    if not messages:
        raise wire.bad_request(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    reasoning = provider.is_reasoning(model)
    if reasoning and data.get("max_tokens") is not None:
        raise wire.bad_request(
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            param="max_tokens",
            code="unsupported_parameter",
        )
    max_tokens = fields.integer(wire, data, "max_tokens", minimum=1)
    budget = fields.integer(wire, data, "max_completion_tokens", minimum=1)
    text, finish, completion_tokens, reasoning_tokens = _generate(
        budget if budget is not None else max_tokens, reasoning
    )
    usage: dict[str, Any] = {
        "prompt_tokens": 1,
        "completion_tokens": completion_tokens,
        "total_tokens": 1 + completion_tokens,
    }
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    body = {
        "id": "chatcmpl-sim",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
        ],
        "usage": usage,
    }
    return usage_reply(body, 1 + completion_tokens)


def _completion(
    wire: Wire, provider: SimProvider, model: str | None, data: dict[str, Any]
) -> _Reply:
    prompts = fields.texts(wire, data, "prompt")
    max_tokens = fields.integer(wire, data, "max_tokens", minimum=0)
    prompt_tokens = sum(fields.count_tokens(p) for p in prompts)
    completion_tokens = 1 if max_tokens is None else min(1, max_tokens)
    body = {
        "id": "cmpl-sim",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "text": "p"[:completion_tokens],
                "index": 0,
                "logprobs": None,
                "finish_reason": "length",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return usage_reply(body, prompt_tokens + completion_tokens)


def _embedding(
    wire: Wire, provider: SimProvider, model: str | None, data: dict[str, Any]
) -> _Reply:
    texts = fields.texts(wire, data, "input")
    encoding = fields.choice(wire, data, "encoding_format", ("float", "base64"), "float")
    dimensions = fields.integer(wire, data, "dimensions", minimum=1, maximum=3072) or 8
    vector = [round((i % 7 + 1) / 10, 1) for i in range(dimensions)]
    embedding: Any = vector
    if encoding == "base64":  # little-endian float32, what the SDKs decode
        embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
    tokens = sum(fields.count_tokens(t) for t in texts)
    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": embedding} for i in range(len(texts))
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return usage_reply(body, tokens)


def _rerank(wire: Wire, provider: SimProvider, model: str | None, data: dict[str, Any]) -> _Reply:
    query = fields.string(wire, data, "query", required=True)
    assert query is not None
    documents = fields.require(wire, data, "documents")
    if not isinstance(documents, list) or not documents:
        raise wire.bad_request(
            "'documents' must be a non-empty array of strings or {'text': ...} objects",
            param="documents",
        )
    texts: list[str] = []
    for document in documents:
        text = document.get("text") if isinstance(document, dict) else document
        if not isinstance(text, str):
            raise fields.invalid_type(wire, "documents", document, "a string")
        texts.append(text)
    top_n = fields.integer(wire, data, "top_n", minimum=1) or len(texts)
    results = [
        {"index": i, "relevance_score": round(0.9 / (i + 1), 6), "document": {"text": text}}
        for i, text in enumerate(texts)
    ][:top_n]
    tokens = fields.count_tokens(query) + sum(fields.count_tokens(t) for t in texts)
    body = {
        "id": "rerank-sim",
        "model": model,
        "results": results,
        "usage": {"total_tokens": tokens},
    }
    return usage_reply(body, tokens)


def _moderation(
    wire: Wire, provider: SimProvider, model: str | None, data: dict[str, Any]
) -> _Reply:
    texts = fields.texts(wire, data, "input")
    result = {
        "flagged": False,
        "categories": dict.fromkeys(_MODERATION_CATEGORIES, False),
        "category_scores": dict.fromkeys(_MODERATION_CATEGORIES, 1e-06),
        "category_applied_input_types": {key: ["text"] for key in _MODERATION_CATEGORIES},
    }
    body = {
        "id": "modr-sim",
        "model": model or "omni-moderation-latest",
        "results": [result] * len(texts),
    }
    return usage_reply(body, 0)  # moderation is free of charge


def _responses(
    wire: Wire, provider: SimProvider, model: str | None, data: dict[str, Any]
) -> _Reply:
    assert model is not None
    fields.texts(wire, data, "input")
    budget = fields.integer(wire, data, "max_output_tokens", minimum=16)
    reasoning = provider.is_reasoning(model)
    text, finish, output_tokens, reasoning_tokens = _generate(budget, reasoning)
    output: list[dict[str, Any]] = []
    if reasoning:
        output.append({"type": "reasoning", "id": "rs_sim", "summary": []})
    if text:
        output.append(
            {
                "type": "message",
                "id": "msg_sim",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        )
    complete = finish == "stop"
    usage: dict[str, Any] = {
        "input_tokens": 1,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": 1 + output_tokens,
    }
    body = {
        "id": "resp_sim",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed" if complete else "incomplete",
        "error": None,
        "incomplete_details": None if complete else {"reason": "max_output_tokens"},
        "model": model,
        "output": output,
        "max_output_tokens": budget,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }
    return usage_reply(body, 1 + output_tokens)


_Answer = Callable[[Wire, SimProvider, "str | None", dict[str, Any]], _Reply]

_ANSWERS: Final[Mapping[str, _Answer]] = {
    "chat": _chat,
    "completion": _completion,
    "embedding": _embedding,
    "image_generation": openai_media.image_generation,
    "audio_speech": openai_media.audio_speech,
    "audio_transcription": openai_media.audio_transcription,
    "rerank": _rerank,
    "moderation": _moderation,
    "responses": _responses,
}

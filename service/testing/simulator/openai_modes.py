"""What each OpenAI-family model call validates and answers, one function per mode.

Validation follows the real API: a missing or mistyped field gets OpenAI's own
400 message and code, a model of another mode the provider's "wrong endpoint"
error, a reasoning model's ``max_tokens`` the "Use 'max_completion_tokens'
instead." refusal. Every billed answer carries ``usage`` with the real field
names and bills its total (``_Reply.billed_tokens``).
"""

from __future__ import annotations

import base64
import math
import struct
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from . import audio
from .behavior import SimProvider
from .connection import _Reply
from .multipart import UploadedFile
from .wire import Refused, usage_reply

if TYPE_CHECKING:
    from .openai_family import OpenAIWire

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

_IMAGE_SIZES: Final = {
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
    "dall-e-3": ("1024x1024", "1024x1792", "1792x1024"),
    "gpt-image": ("1024x1024", "1024x1536", "1536x1024", "auto"),
}
_PNG_1PX: Final = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
_VOICES: Final = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
    "verse", "marin", "cedar",
)  # fmt: skip
_AUDIO_FILE_FORMATS: Final = (
    "flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm",
)  # fmt: skip
_TRANSCRIPT_FORMATS: Final = ("json", "text", "srt", "verbose_json", "vtt")
_MODERATION_CATEGORIES: Final = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
    "sexual/minors", "violence", "violence/graphic",
)  # fmt: skip


def answer(
    wire: OpenAIWire, provider: SimProvider, op: str, path_model: str | None, data: Any
) -> _Reply:
    """Validate a model call of mode ``op`` and answer it (or raise :class:`Refused`)."""
    if not isinstance(data, dict):
        raise Refused(wire.unparsable())
    model = path_model if path_model is not None else _body_model(wire, op, data)
    if model is not None:
        wire.served_model(provider, model)
        mode = provider.mode_of(model)
        accepted = _ACCEPTS[mode]
        if mode == "chat" and not wire.strict_completions:
            accepted = accepted | {"completion"}  # vLLM & co. complete with any model
        if op not in accepted:
            raise Refused(wire.wrong_mode(model, mode, op))
    return _ANSWERS[op](wire, provider, model, data)


def _body_model(wire: OpenAIWire, op: str, data: dict[str, Any]) -> str | None:
    raw = data.get("model")
    if raw is None and op == "moderation":
        return None  # OpenAI picks its default moderation model
    if raw is None or raw == "":
        raise wire.bad_request("you must provide a model parameter")
    if not isinstance(raw, str):
        raise _invalid_type(wire, "model", raw, "a string")
    return raw


# -- field checks, with OpenAI's messages ---------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _invalid_type(wire: OpenAIWire, name: str, value: Any, expected: str) -> Refused:
    return wire.bad_request(
        f"Invalid type for '{name}': expected {expected}, but got {_json_type(value)} instead.",
        param=name,
        code="invalid_type",
    )


def _required(wire: OpenAIWire, data: dict[str, Any], name: str) -> Any:
    value = data.get(name)
    if value is None:
        raise wire.bad_request(
            f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
        )
    return value


def _string(wire: OpenAIWire, data: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = _required(wire, data, name) if required else data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid_type(wire, name, value, "a string")
    if not value:
        raise wire.bad_request(
            f"Invalid '{name}': string too short. Expected a string with minimum length 1, "
            "but got an empty string instead.",
            param=name,
            code="string_below_min_length",
        )
    return value


def _integer(
    wire: OpenAIWire,
    data: dict[str, Any],
    name: str,
    *,
    minimum: int,
    maximum: int | None = None,
) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_type(wire, name, value, "an integer")
    if value < minimum:
        raise wire.bad_request(
            f"Invalid '{name}': integer below minimum value. Expected a value >= {minimum}, "
            f"but got {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    if maximum is not None and value > maximum:
        raise wire.bad_request(
            f"Invalid '{name}': integer above maximum value. Expected a value <= {maximum}, "
            f"but got {value} instead.",
            param=name,
            code="integer_above_max_value",
        )
    return value


def _choice(
    wire: OpenAIWire, data: dict[str, Any], name: str, allowed: tuple[str, ...], default: str
) -> str:
    value = data.get(name, default)
    if value not in allowed:
        supported = ", ".join(f"'{a}'" for a in allowed)
        raise wire.bad_request(
            f"Invalid value: '{value}'. Supported values are: {supported}.",
            param=name,
            code="invalid_value",
        )
    return str(value)


def _texts(wire: OpenAIWire, data: dict[str, Any], name: str) -> list[str]:
    """A string-or-array field (``input``, ``prompt``) as a non-empty list of texts."""
    value = _required(wire, data, name)
    items = value if isinstance(value, list) else [value]
    if not isinstance(value, str | list):
        raise _invalid_type(wire, name, value, "a string or array")
    if not items or any(item == "" or item == [] for item in items):
        raise wire.bad_request(
            f"'$.{name}' is invalid. Please check the API reference: "
            "https://platform.openai.com/docs/api-reference.",
            param=name,
        )
    return [item if isinstance(item, str) else "x" for item in items]  # token ids: one each


def _tokens(text: str) -> int:
    """A stand-in token count: one per word, at least one."""
    return max(1, len(text.split()))


# -- answers ----------------------------------------------------------------


def _generate(budget: int | None, reasoning: bool) -> tuple[str, str, int, int]:
    """(text, finish_reason, completion tokens, reasoning tokens) within ``budget``."""
    if not reasoning:
        return "p", "length" if budget == 1 else "stop", 1, 0
    if budget is not None and budget <= REASONING_TOKENS:
        return "", "length", budget, budget  # thought until the budget ran out
    return "p", "stop", REASONING_TOKENS + 1, REASONING_TOKENS


def _chat(
    wire: OpenAIWire, provider: SimProvider, model: str | None, data: dict[str, Any]
) -> _Reply:
    assert model is not None
    messages = _required(wire, data, "messages")
    if not isinstance(messages, list):
        raise _invalid_type(wire, "messages", messages, "an array")
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
    max_tokens = _integer(wire, data, "max_tokens", minimum=1)
    budget = _integer(wire, data, "max_completion_tokens", minimum=1)
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
    wire: OpenAIWire, provider: SimProvider, model: str | None, data: dict[str, Any]
) -> _Reply:
    prompts = _texts(wire, data, "prompt")
    max_tokens = _integer(wire, data, "max_tokens", minimum=0)
    prompt_tokens = sum(_tokens(p) for p in prompts)
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
    wire: OpenAIWire, provider: SimProvider, model: str | None, data: dict[str, Any]
) -> _Reply:
    texts = _texts(wire, data, "input")
    encoding = _choice(wire, data, "encoding_format", ("float", "base64"), "float")
    dimensions = _integer(wire, data, "dimensions", minimum=1, maximum=3072) or 8
    vector = [round((i % 7 + 1) / 10, 1) for i in range(dimensions)]
    embedding: Any = vector
    if encoding == "base64":  # little-endian float32, what the SDKs decode
        embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
    tokens = sum(_tokens(t) for t in texts)
    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": embedding} for i in range(len(texts))
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return usage_reply(body, tokens)


def _image_family(model: str) -> str | None:
    name = model.rpartition("/")[2].lower()
    if name.startswith("gpt-image"):
        return "gpt-image"
    return name if name in _IMAGE_SIZES else None


def _image_generation(
    wire: OpenAIWire, provider: SimProvider, model: str | None, data: dict[str, Any]
) -> _Reply:
    assert model is not None
    prompt = _string(wire, data, "prompt", required=True)
    assert prompt is not None
    family = _image_family(model)
    n = _integer(wire, data, "n", minimum=1, maximum=1 if family == "dall-e-3" else 10) or 1
    size = data.get("size")
    sizes = _IMAGE_SIZES.get(family or "")
    if size is not None and sizes is not None and size not in sizes:
        listed = ", ".join(f"'{s}'" for s in sizes)
        raise wire.bad_request(f"'{size}' is not one of [{listed}] - 'size'")
    created = int(time.time())
    if family != "gpt-image":
        fmt = _choice(wire, data, "response_format", ("url", "b64_json"), "url")
        item: dict[str, Any] = (
            {"url": "https://simulator.invalid/images/sim.png"}
            if fmt == "url"
            else {"b64_json": _PNG_1PX}
        )
        if family == "dall-e-3":
            item["revised_prompt"] = prompt
        return usage_reply({"created": created, "data": [item] * n}, 0)
    text_tokens = _tokens(prompt)
    output_tokens = 272 * n  # a low-quality square image, per OpenAI's price table
    usage: dict[str, Any] = {
        "total_tokens": text_tokens + output_tokens,
        "input_tokens": text_tokens,
        "output_tokens": output_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
    }
    body = {"created": created, "data": [{"b64_json": _PNG_1PX}] * n, "usage": usage}
    return usage_reply(body, text_tokens + output_tokens)


def _audio_speech(
    wire: OpenAIWire, provider: SimProvider, model: str | None, data: dict[str, Any]
) -> _Reply:
    text = _string(wire, data, "input", required=True)
    assert text is not None
    if len(text) > 4096:
        raise wire.bad_request(
            "Invalid 'input': string too long. Expected a string with maximum length 4096, "
            f"but got a string with length {len(text)} instead.",
            param="input",
            code="string_above_max_length",
        )
    _required(wire, data, "voice")
    _choice(wire, data, "voice", _VOICES, "")
    fmt = _choice(wire, data, "response_format", tuple(audio.SPEECH_FORMATS), "mp3")
    speed = data.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4:
        raise wire.bad_request(
            f"Invalid 'speed': expected a number in [0.25, 4.0], but got {speed!r} instead.",
            param="speed",
            code="invalid_value",
        )
    # Billed per character, and the answer is the audio itself: no usage document.
    return _Reply(200, audio.speech(text, fmt), audio.SPEECH_FORMATS[fmt])


def _audio_transcription(
    wire: OpenAIWire, provider: SimProvider, model: str | None, data: dict[str, Any]
) -> _Reply:
    assert model is not None
    upload = data.get("file")
    if not isinstance(upload, UploadedFile):
        raise wire.bad_request(
            "Missing required parameter: 'file'.", param="file", code="missing_required_parameter"
        )
    extension = upload.filename.rpartition(".")[2].lower() if "." in upload.filename else ""
    if extension not in _AUDIO_FILE_FORMATS:
        raise wire.bad_request(
            f"Invalid file format. Supported formats: {list(_AUDIO_FILE_FORMATS)}"
        )
    seconds = audio.wav_duration(upload.data)  # the one format the simulator decodes
    if seconds is None:
        raise wire.bad_request(
            "Audio file might be corrupted or unsupported", param="file", code="invalid_value"
        )
    fmt = _choice(wire, data, "response_format", _TRANSCRIPT_FORMATS, "json")
    whisper = model.rpartition("/")[2].lower().startswith("whisper")
    if not whisper and fmt not in ("json", "text"):
        raise wire.bad_request(
            f"response_format '{fmt}' is not compatible with model '{model}'. "
            "Use 'json' or 'text' instead.",
            param="response_format",
            code="unsupported_value",
        )
    usage: dict[str, Any]
    billed = 0
    if whisper:  # billed by the second
        usage = {"type": "duration", "seconds": max(1, math.ceil(seconds))}
    else:
        audio_tokens = max(1, math.ceil(seconds * 10))
        billed = audio_tokens + 1
        usage = {
            "type": "tokens",
            "input_tokens": audio_tokens,
            "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
            "output_tokens": 1,
            "total_tokens": billed,
        }
    if fmt in ("text", "srt", "vtt"):  # silence: an empty transcript
        reply = _Reply(200, b"", "text/plain; charset=utf-8")
        reply.billed_tokens = billed
        return reply
    body: dict[str, Any] = {"text": "", "usage": usage}
    if fmt == "verbose_json":
        body = {"task": "transcribe", "language": "english", "duration": seconds, **body}
        body["segments"] = []
    return usage_reply(body, billed)


def _rerank(
    wire: OpenAIWire, provider: SimProvider, model: str | None, data: dict[str, Any]
) -> _Reply:
    query = _string(wire, data, "query", required=True)
    assert query is not None
    documents = _required(wire, data, "documents")
    if not isinstance(documents, list) or not documents:
        raise wire.bad_request(
            "'documents' must be a non-empty array of strings or {'text': ...} objects",
            param="documents",
        )
    texts: list[str] = []
    for document in documents:
        text = document.get("text") if isinstance(document, dict) else document
        if not isinstance(text, str):
            raise _invalid_type(wire, "documents", document, "a string")
        texts.append(text)
    top_n = _integer(wire, data, "top_n", minimum=1) or len(texts)
    results = [
        {"index": i, "relevance_score": round(0.9 / (i + 1), 6), "document": {"text": text}}
        for i, text in enumerate(texts)
    ][:top_n]
    tokens = _tokens(query) + sum(_tokens(t) for t in texts)
    body = {
        "id": "rerank-sim",
        "model": model,
        "results": results,
        "usage": {"total_tokens": tokens},
    }
    return usage_reply(body, tokens)


def _moderation(
    wire: OpenAIWire, provider: SimProvider, model: str | None, data: dict[str, Any]
) -> _Reply:
    texts = _texts(wire, data, "input")
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
    wire: OpenAIWire, provider: SimProvider, model: str | None, data: dict[str, Any]
) -> _Reply:
    assert model is not None
    _texts(wire, data, "input")
    budget = _integer(wire, data, "max_output_tokens", minimum=16)
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


_Answer = Callable[["OpenAIWire", SimProvider, "str | None", dict[str, Any]], _Reply]

_ANSWERS: Final[Mapping[str, _Answer]] = {
    "chat": _chat,
    "completion": _completion,
    "embedding": _embedding,
    "image_generation": _image_generation,
    "audio_speech": _audio_speech,
    "audio_transcription": _audio_transcription,
    "rerank": _rerank,
    "moderation": _moderation,
    "responses": _responses,
}

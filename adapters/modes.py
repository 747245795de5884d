"""What kind of model an adapter checks (its *mode*), and the pieces every paid probe shares.

A deployment serves one kind of call: chat, embeddings, images, speech...
The free probe (the provider's model list) is the same for every mode; the
paid probe (``probe = "completion"``) is that mode's cheapest real call, so an
embedding model is never judged by a chat call it cannot answer.
"""

from __future__ import annotations

import functools
import io
import re
import wave
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "ALL_MODES",
    "DEFAULT_MODE",
    "MODES",
    "PROBE_TEXT",
    "REASONING_MAX_TOKENS",
    "RESPONSES_MIN_OUTPUT_TOKENS",
    "WILDCARD",
    "is_reasoning_model",
    "multipart_body",
    "silent_wav",
    "token_count",
    "usage_tokens",
]

#: Every mode a provider entry may name, in the order the docs list them.
MODES: Final = (
    "chat",
    "completion",
    "embedding",
    "image_generation",
    "audio_speech",
    "audio_transcription",
    "rerank",
    "moderation",
    "responses",
)
ALL_MODES: Final = frozenset(MODES)
DEFAULT_MODE: Final = "chat"
#: ``model = "*"``: whatever the provider serves (its list probe reports the ids).
WILDCARD: Final = "*"
#: The one word every paid probe sends: one token in any tokenizer.
PROBE_TEXT: Final = "ping"
#: A reasoning model spends tokens thinking before it answers: at 1 token it
#: fails or answers nothing, so its probes get room for a short answer.
REASONING_MAX_TOKENS: Final = 64
#: OpenAI's Responses API refuses ``max_output_tokens`` below 16.
RESPONSES_MIN_OUTPUT_TOKENS: Final = 16

# o1, o3, o4-mini, o3-pro-2025-06-10..., and the gpt-5 family (gpt-5, gpt-5-mini, gpt-5.1...).
_REASONING: Final = re.compile(r"(?:o[134](?:-.*)?|gpt-5.*)", re.IGNORECASE)


def is_reasoning_model(model: str) -> bool:
    """Whether ``model`` (after any ``provider/`` prefix) is an o-series or gpt-5 model."""
    return _REASONING.fullmatch(model.rsplit("/", 1)[-1]) is not None


@functools.cache
def silent_wav(milliseconds: int = 100, rate: int = 8000) -> bytes:
    """A tiny mono 16-bit WAV of silence: the cheapest audio a transcription model accepts."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * (rate * milliseconds // 1000))
    return buffer.getvalue()


# Fixed, so a request is the same bytes every time (tests compare them); it
# cannot occur in the fields we send (ASCII words and a WAV of zero samples).
_BOUNDARY: Final = "router-health-probe-3f9c2a"


def multipart_body(
    fields: Mapping[str, str], file_field: str, filename: str, content_type: str, data: bytes
) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with text ``fields`` and one file; returns (body, content type)."""
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    parts.append(
        (
            f"--{_BOUNDARY}\r\nContent-Disposition: form-data; name=\"{file_field}\"; "
            f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
        ).encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{_BOUNDARY}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={_BOUNDARY}"


def token_count(value: Any) -> int | None:
    """``value`` if it is a count (an int >= 0; ``true`` is not one), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def usage_tokens(usage: Any) -> int | None:
    """The total billed tokens of a ``usage`` object, whichever provider's shape it has.

    OpenAI ``{prompt_tokens, completion_tokens, total_tokens}``, the Responses
    API and Anthropic ``{input_tokens, output_tokens[, total_tokens]}``;
    None when there is no count to trust.
    """
    if not isinstance(usage, dict):
        return None
    total = token_count(usage.get("total_tokens"))
    if total is not None:
        return total
    for first, second in (("prompt_tokens", "completion_tokens"), ("input_tokens", "output_tokens")):
        a, b = token_count(usage.get(first)), token_count(usage.get(second))
        if a is not None or b is not None:
            return (a or 0) + (b or 0)
    return None

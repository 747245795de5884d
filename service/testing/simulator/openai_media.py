"""The OpenAI family's media modes: image generation, speech, transcription.

Images are checked against each model's sizes, speech answers audio bytes
(no usage document: it is billed per character), and a transcription takes
a multipart upload that must be a WAV file, the one format decoded here.
"""

from __future__ import annotations

import math
import time
from typing import Any, Final

from . import audio
from . import openai_fields as fields
from .behavior import SimProvider
from .connection import _Reply
from .multipart import UploadedFile
from .wire import Wire, usage_reply

_IMAGE_SIZES: Final = {
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
    "dall-e-3": ("1024x1024", "1024x1792", "1792x1024"),
    "gpt-image": ("1024x1024", "1024x1536", "1536x1024", "auto"),
}
_PNG_1PX: Final = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
_OPENAI_VOICES: Final = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
    "verse", "marin", "cedar",
)  # fmt: skip
#: Each kind's documented speech voices (OpenAI's for the kinds not named):
#: Groq's Orpheus and PlayAI voices, Together's Cartesia, Kokoro and Orpheus
#: ones, SiliconFlow's presets, which it names with the model ("{model}:alex").
_VOICES: Final[dict[str, tuple[str, ...]]] = {
    "groq": (
        "autumn", "diana", "hannah", "austin", "daniel", "troy",
        "abdullah", "fahad", "sultan", "lulwa", "noura", "aisha",
        "Arista-PlayAI", "Atlas-PlayAI", "Basil-PlayAI", "Celeste-PlayAI", "Fritz-PlayAI",
        "Ahmad-PlayAI", "Amira-PlayAI", "Khalid-PlayAI", "Nasser-PlayAI",
    ),
    "together": (
        "laidback woman", "polite man", "storyteller lady", "friendly sidekick",
        "af_alloy", "af_bella", "af_heart", "tara", "leah", "jess", "leo", "dan",
    ),
    "siliconflow": tuple(
        f"{{model}}:{name}"
        for name in ("alex", "benjamin", "charles", "david", "anna", "bella", "claire", "diana")
    ),
}  # fmt: skip
_AUDIO_FILE_FORMATS: Final = (
    "flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm",
)  # fmt: skip
_TRANSCRIPT_FORMATS: Final = ("json", "text", "srt", "verbose_json", "vtt")


def _image_family(model: str) -> str | None:
    name = model.rpartition("/")[2].lower()
    if name.startswith("gpt-image"):
        return "gpt-image"
    return name if name in _IMAGE_SIZES else None


def image_generation(
    wire: Wire, provider: SimProvider, model: str | None, data: dict[str, Any]
) -> _Reply:
    assert model is not None
    prompt = fields.string(wire, data, "prompt", required=True)
    assert prompt is not None
    family = _image_family(model)
    n = fields.integer(wire, data, "n", minimum=1, maximum=1 if family == "dall-e-3" else 10) or 1
    size = data.get("size")
    sizes = _IMAGE_SIZES.get(family or "")
    if size is not None and sizes is not None and size not in sizes:
        listed = ", ".join(f"'{s}'" for s in sizes)
        raise wire.bad_request(f"'{size}' is not one of [{listed}] - 'size'")
    created = int(time.time())
    if family != "gpt-image":
        fmt = fields.choice(wire, data, "response_format", ("url", "b64_json"), "url")
        item: dict[str, Any] = (
            {"url": "https://simulator.invalid/images/sim.png"}
            if fmt == "url"
            else {"b64_json": _PNG_1PX}
        )
        if family == "dall-e-3":
            item["revised_prompt"] = prompt
        return usage_reply({"created": created, "data": [item] * n}, 0)
    text_tokens = fields.count_tokens(prompt)
    output_tokens = 272 * n  # a low-quality square image, per OpenAI's price table
    usage: dict[str, Any] = {
        "total_tokens": text_tokens + output_tokens,
        "input_tokens": text_tokens,
        "output_tokens": output_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
    }
    body = {"created": created, "data": [{"b64_json": _PNG_1PX}] * n, "usage": usage}
    return usage_reply(body, text_tokens + output_tokens)


def audio_speech(
    wire: Wire, provider: SimProvider, model: str | None, data: dict[str, Any]
) -> _Reply:
    text = fields.string(wire, data, "input", required=True)
    assert text is not None
    if len(text) > 4096:
        raise wire.bad_request(
            "Invalid 'input': string too long. Expected a string with maximum length 4096, "
            f"but got a string with length {len(text)} instead.",
            param="input",
            code="string_above_max_length",
        )
    fields.require(wire, data, "voice")
    voices = _VOICES.get(provider.kind, _OPENAI_VOICES)
    fields.choice(wire, data, "voice", tuple(v.replace("{model}", model or "") for v in voices), "")
    fmt = fields.choice(wire, data, "response_format", tuple(audio.SPEECH_FORMATS), "mp3")
    speed = data.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4:
        raise wire.bad_request(
            f"Invalid 'speed': expected a number in [0.25, 4.0], but got {speed!r} instead.",
            param="speed",
            code="invalid_value",
        )
    # Billed per character, and the answer is the audio itself: no usage document.
    return _Reply(200, audio.speech(text, fmt), audio.SPEECH_FORMATS[fmt])


def audio_transcription(
    wire: Wire, provider: SimProvider, model: str | None, data: dict[str, Any]
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
    fmt = fields.choice(wire, data, "response_format", _TRANSCRIPT_FORMATS, "json")
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

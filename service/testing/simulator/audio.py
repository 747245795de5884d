"""Audio the simulator reads (uploaded WAV files) and writes (speech answers)."""

from __future__ import annotations

import io
import wave
from typing import Final

_RATE: Final = 8000

#: Speech formats OpenAI's /audio/speech answers in, with their content types.
SPEECH_FORMATS: Final = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

#: One silent MPEG-1 Layer III frame (32 kbit/s, 8 kHz... any decoder skips it):
#: enough for a client that sniffs the first bytes; nobody decodes a probe's audio.
_MP3_FRAME: Final = b"\xff\xfb\x10\xc4" + b"\x00" * 100
_MAGIC: Final = {
    "mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00" + _MP3_FRAME,
    "opus": b"OggS\x00\x02" + b"\x00" * 20 + b"OpusHead",
    "aac": b"\xff\xf1\x50\x80\x02\x1f\xfc" + b"\x00" * 8,
    "flac": b"fLaC\x00\x00\x00\x22" + b"\x00" * 34,
}


def silent_wav(seconds: float) -> bytes:
    """A mono 16-bit PCM WAV file of silence."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(_RATE)
        out.writeframes(b"\x00\x00" * int(_RATE * seconds))
    return buffer.getvalue()


def wav_duration(data: bytes) -> float | None:
    """Seconds of audio in a PCM WAV file; None if ``data`` is empty or not one."""
    if not data:
        return None
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            frames, rate = wav.getnframes(), wav.getframerate()
    except (wave.Error, EOFError):
        return None
    if rate <= 0:
        return None
    return frames / rate


def speech(text: str, response_format: str) -> bytes:
    """The audio answer to ``text``: real WAV/PCM silence, else a format's first bytes."""
    seconds = min(10.0, 0.06 * len(text))
    if response_format == "wav":
        return silent_wav(seconds)
    if response_format == "pcm":
        return b"\x00\x00" * int(24000 * seconds)
    return _MAGIC[response_format]

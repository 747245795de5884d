"""OpenAI (and every API that copies its wire format): one path and body per mode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

from .base import AnswerKind, HttpAdapter, ProbeOutcome, ProbeRequest
from .modes import (
    ALL_MODES,
    PROBE_TEXT,
    RESPONSES_MIN_OUTPUT_TOKENS,
    multipart_body,
    silent_wav,
    usage_tokens,
)

__all__ = [
    "OPENAI_MODES",
    "OPENAI_PATHS",
    "OPENAI_VOICES",
    "OpenAIAdapter",
    "OpenAIFamilyAdapter",
    "PaidCall",
    "SpeechVoices",
    "chat_completion_body",
    "image_generation_body",
    "judge_chat_completion",
    "judge_model_list",
    "judge_openai_paid",
    "openai_paid_call",
    "voice_for",
]

#: Where each mode's cheapest real call goes, below the base URL.
OPENAI_PATHS: Final = {
    "chat": "/chat/completions",
    "completion": "/completions",
    "embedding": "/embeddings",
    "image_generation": "/images/generations",
    "audio_speech": "/audio/speech",
    "audio_transcription": "/audio/transcriptions",
    "rerank": "/rerank",
    "moderation": "/moderations",
    "responses": "/responses",
}
#: OpenAI itself serves every mode but rerank (a Cohere/Jina/vLLM endpoint).
OPENAI_MODES: Final = ALL_MODES - {"rerank"}
#: The cheapest image each OpenAI family makes (an image is billed however small,
#: so the probe is only sent with ``allow_image_probe = true``). dall-e-3 and
#: gpt-image refuse 256x256; other providers' models get their own default size,
#: since a size they do not take would fail every probe.
_IMAGE_SIZES: Final = {"dall-e-2": "256x256", "dall-e-3": "1024x1024", "gpt-image": "1024x1024"}

#: The voice a speech probe asks for, by model id prefix: the longest prefix that
#: matches wins, ``""`` matches any model, ``{model}`` stands for the model id.
#: Voices are the provider's (and often the model's) own: a voice it does not
#: have fails every probe with a 400, so each speech provider lists its own.
SpeechVoices = tuple[tuple[str, str], ...]
OPENAI_VOICES: Final[SpeechVoices] = (("", "alloy"),)


def voice_for(voices: SpeechVoices, model: str) -> str:
    """The voice of ``voices`` for ``model`` (see :data:`SpeechVoices`)."""
    matching = [(prefix, voice) for prefix, voice in voices if model.startswith(prefix)]
    if not matching:
        raise ValueError(f"no speech voice for model {model!r}: set voice")
    _, voice = max(matching, key=lambda pair: len(pair[0]))
    return voice.replace("{model}", model)


def image_generation_body(model: str) -> dict[str, Any]:
    """One image of the cheapest size and quality ``model``'s family offers."""
    name = model.rpartition("/")[2].lower()
    family = "gpt-image" if name.startswith("gpt-image") else name
    body: dict[str, Any] = {"prompt": "a small grey dot", "n": 1}
    if family in _IMAGE_SIZES:
        body["size"] = _IMAGE_SIZES[family]
    if family == "gpt-image":
        body["quality"] = "low"
    return body


def chat_completion_body(model: str, max_tokens: int = 1, *, reasoning: bool = False) -> dict[str, Any]:
    """The cheapest billed chat call: one prompt token, ``max_tokens`` of answer.

    Reasoning models (o-series, gpt-5) refuse ``max_tokens``: they take
    ``max_completion_tokens``, which counts their thinking too.
    """
    budget = "max_completion_tokens" if reasoning else "max_tokens"
    return {"model": model, "messages": [{"role": "user", "content": PROBE_TEXT}], budget: max_tokens}


@dataclass(frozen=True, slots=True)
class PaidCall:
    """A mode's paid probe: the path below the base URL and the body (JSON or multipart)."""

    path: str
    json_body: dict[str, Any] | None = None
    content: bytes | None = None
    content_type: str | None = None

    def request(
        self, base_url: str, headers: dict[str, str], params: dict[str, str] | None = None
    ) -> ProbeRequest:
        return ProbeRequest(
            "POST",
            base_url + self.path,
            headers=headers,
            params=params or {},
            json_body=self.json_body,
            content=self.content,
            content_type=self.content_type,
        )


def openai_paid_call(adapter: OpenAIFamilyAdapter, *, with_model: bool = True) -> PaidCall:
    """The cheapest real call of ``adapter.mode`` in OpenAI's format.

    ``with_model=False`` leaves the model out of the body (Azure: the
    deployment in the path selects it).
    """
    mode, model, budget = adapter.mode, adapter.probe_model_id, adapter.output_tokens
    path = OPENAI_PATHS[mode]
    if mode == "audio_transcription":
        fields = {"model": model} if with_model else {}
        content, content_type = multipart_body(fields, "file", "probe.wav", "audio/wav", silent_wav())
        return PaidCall(path, content=content, content_type=content_type)
    if mode == "image_generation" and not adapter.allow_image_probe:
        # The config refuses this too; an adapter built by hand must not bill an image either.
        raise ValueError("image generation is billed per image: set allow_image_probe = true")
    body: dict[str, Any]
    if mode == "chat":
        body = chat_completion_body(model, budget, reasoning=adapter.is_reasoning)
        del body["model"]
    elif mode == "completion":
        body = {"prompt": PROBE_TEXT, "max_tokens": budget}
    elif mode == "image_generation":
        body = image_generation_body(model)
    elif mode == "audio_speech":
        body = {"input": "a", "voice": adapter.speech_voice}  # billed per character: one
    elif mode == "rerank":
        body = {"query": PROBE_TEXT, "documents": ["pong"], "top_n": 1}
    elif mode == "responses":
        body = {"input": PROBE_TEXT, "max_output_tokens": max(budget, RESPONSES_MIN_OUTPUT_TOKENS)}
    else:  # embedding, moderation
        body = {"input": PROBE_TEXT}
    return PaidCall(path, json_body={"model": model, **body} if with_model else body)


def judge_model_list(adapter: HttpAdapter, data: Any) -> ProbeOutcome:
    """``{"data": [{"id": ...}, ...]}`` (or the bare list Together sends): look for our model."""
    items = data.get("data") if isinstance(data, dict) else data
    if not isinstance(items, list):
        return adapter.bad_body("expected an object with a 'data' list of models")
    ids = [item["id"] for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)]
    if len(ids) != len(items):
        return adapter.bad_body("a 'data' entry has no string 'id'")
    return adapter.model_listed(ids)


def judge_chat_completion(adapter: HttpAdapter, data: Any) -> ProbeOutcome:
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        return adapter.bad_body("expected a chat completion with a non-empty 'choices' list")
    return ProbeOutcome.ok(tokens=usage_tokens(data.get("usage")))


#: What a healthy answer of each JSON mode holds: a key, and whether its list may be empty.
_ANSWER_SHAPES: Final = {
    "chat": ("choices", "a chat completion with a non-empty 'choices' list"),
    "completion": ("choices", "a completion with a non-empty 'choices' list"),
    "embedding": ("data", "an embedding list with a non-empty 'data' list"),
    "image_generation": ("data", "an image list with a non-empty 'data' list"),
    "rerank": ("results", "a rerank answer with a non-empty 'results' list"),
    "moderation": ("results", "a moderation answer with a non-empty 'results' list"),
    "responses": ("output", "a response with an 'output' list"),
}


def judge_openai_paid(adapter: HttpAdapter, data: Any) -> ProbeOutcome:
    """A paid probe's JSON answer in OpenAI's format, for ``adapter.mode``; tokens from ``usage``."""
    if not isinstance(data, dict):
        return adapter.bad_body("expected a JSON object")
    if adapter.mode == "audio_transcription":
        if not isinstance(data.get("text"), str):
            return adapter.bad_body("expected a transcription with a 'text' string")
    else:
        key, shape = _ANSWER_SHAPES[adapter.mode]
        value = data.get(key)
        # A response cut at max_output_tokens may have output [] and still be served.
        if not isinstance(value, list) or (not value and adapter.mode != "responses"):
            return adapter.bad_body(f"expected {shape}")
    return ProbeOutcome.ok(tokens=usage_tokens(data.get("usage")))


class OpenAIFamilyAdapter(HttpAdapter):
    """What every OpenAI-format adapter shares: the answers' shapes, binary speech."""

    modes: ClassVar[frozenset[str]] = OPENAI_MODES
    model_missing_codes: ClassVar[frozenset[str]] = frozenset({"model_not_found"})
    #: The speech probe's voice by model (the config key ``voice`` overrides it).
    speech_voices: ClassVar[SpeechVoices] = OPENAI_VOICES

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # ``voice`` is a config key of exactly the types that serve speech: derived
        # from ``modes`` here, so no subclass (or registry line) can forget it.
        super().__init_subclass__(**kwargs)
        keys = cls.option_keys - {"voice"}
        cls.option_keys = keys | {"voice"} if "audio_speech" in cls.modes else keys

    @property
    def speech_voice(self) -> str:
        """The voice the speech probe asks for: ``voice`` as configured, else this type's."""
        return self.options.get("voice") or voice_for(self.speech_voices, self.probe_model_id)

    def answer_kind(self) -> AnswerKind:
        if self.probe == "completion" and self.mode == "audio_speech":
            return "binary"  # the answer is the audio itself
        return super().answer_kind()

    def judge_free(self, data: Any) -> ProbeOutcome:
        return judge_model_list(self, data)

    def judge_paid(self, data: Any) -> ProbeOutcome:
        return judge_openai_paid(self, data)


class OpenAIAdapter(OpenAIFamilyAdapter):
    """``GET {base}/models`` (free) or each mode's cheapest call under ``{base}``, Bearer auth."""

    adapter_name: ClassVar[str] = "OpenAIAdapter"
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    key_required: ClassVar[bool] = True

    def free_request(self) -> ProbeRequest:
        return ProbeRequest("GET", f"{self.base_url}/models", headers=self.auth_headers())

    def paid_request(self) -> ProbeRequest:
        return openai_paid_call(self).request(self.base_url, self.auth_headers())

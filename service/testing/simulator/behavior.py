"""What is simulated: providers, their behaviour, and the counters kept for them.

The data model of the simulator: the provider kinds (:data:`KINDS`, with the
URL path each one's ``base_url`` ends in) and failure modes (:data:`MODES`) it
knows, :class:`SimProvider` and its :class:`Behavior` (validated on
construction, so a typo in a test or a spec file fails where it is written),
and the :class:`ProviderStats` counters.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

MODES: Final = (
    "ok",
    "hang",
    "slow_body",
    "status",
    "rate_limited",
    "unauthorized",
    "malformed_json",
    "html",
    "wrong_shape",
    "reset",
    "huge_body",
    "echo_key",
    "body",
)

#: Kinds that speak the OpenAI wire format, with the path their real ``base_url``
#: ends in (what follows ``{root_url}/{name}`` here). The OpenAI-compatible
#: registry providers are each a kind of their own, so a simulated provider's
#: ``kind`` is also its router-health config ``type``.
OPENAI_LIKE: Final[Mapping[str, str]] = {
    "openai": "/v1",
    "openai-compatible": "/v1",
    "volcengine": "/api/v3",  # Ark mounts the OpenAI API under /api/v3
    "mistral": "/v1",
    "groq": "/openai/v1",
    "deepseek": "",  # https://api.deepseek.com (the /v1 alias exists too)
    "openrouter": "/api/v1",
    "together": "/v1",
    "fireworks": "/inference/v1",
    "xai": "/v1",
    "perplexity": "",  # https://api.perplexity.ai
    "moonshot": "/v1",
    "dashscope": "/compatible-mode/v1",
    "zhipu": "/api/paas/v4",
    "siliconflow": "/v1",
    "cerebras": "/v1",
    "nvidia-nim": "/v1",
    "vllm": "/v1",
    "lm-studio": "/v1",
    "llama-cpp": "/v1",
    "azure-ai": "/models",  # Azure AI model inference: https://<res>.services.ai.azure.com/models
}

#: Kinds with a wire format of their own, with the path their ``base_url`` ends in.
NATIVE: Final[Mapping[str, str]] = {
    "azure": "",
    "anthropic": "",
    "gemini": "/v1beta",
    "ollama": "",
    "cohere": "",
    "bedrock": "",  # one base URL for the control plane and the runtime
    "vertex-ai": "",
}

#: What each kind's ``base_url`` appends to ``{root_url}/{name}``.
_BASE_SUFFIX: Final[Mapping[str, str]] = {**OPENAI_LIKE, **NATIVE}

KINDS: Final = tuple(_BASE_SUFFIX)

#: What a model does: the router-health ``mode`` names. A chat call to an
#: embedding model gets the provider's own "wrong endpoint" error.
MODEL_MODES: Final = (
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

#: Reasoning models by name (after any "org/" prefix): o1, o3, o4-mini..., gpt-5*.
_REASONING_NAME: Final = re.compile(r"(o[134](-.*)?|gpt-5.*)", re.IGNORECASE)


def default_mode(model: str) -> str:
    """The mode a model has unless its provider says otherwise, from its name.

    The names the providers use: ``text-embedding-*``/``*embed*``,
    ``dall-e-*``/``gpt-image-*``, ``tts-*``/``*-tts``, ``whisper-*``/``*transcribe*``,
    ``*rerank*``, ``*moderation*``, the legacy completion models; else chat.
    """
    name = model.rpartition("/")[2].lower()
    if "rerank" in name:
        return "rerank"
    if "moderation" in name:
        return "moderation"
    if "embed" in name:
        return "embedding"
    if name.startswith(("dall-e", "gpt-image")):
        return "image_generation"
    if name.startswith("tts-") or name.endswith("-tts"):
        return "audio_speech"
    if name.startswith("whisper") or "transcribe" in name:
        return "audio_transcription"
    if name == "gpt-3.5-turbo-instruct" or name.startswith(("davinci-", "babbage-")):
        return "completion"
    return "chat"


#: A header value the simulator will send: visible ASCII and spaces, no CR/LF.
_HEADER_VALUE: Final = re.compile(r"[\x21-\x7e][\x20-\x7e]*")


class UnknownProviderError(KeyError, ValueError):
    """No provider of that name is simulated.

    It is both a ``KeyError`` (a lookup by name failed) and a ``ValueError``
    (what :meth:`Simulator.set_behavior` promises for bad arguments), so
    callers can catch whichever reads naturally at their call site.
    """

    def __str__(self) -> str:
        return f"no simulated provider named {self.args[0]!r}"


def _check_seconds(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")


@dataclass
class Behavior:
    """How one simulated provider answers; change it live with ``set_behavior``.

    Validated on construction so a typo in a test or a spec file fails where it
    is written instead of showing up as a mysteriously healthy provider.
    """

    latency: float = 0.05  # seconds before the response headers
    jitter: float = 0.0  # +- uniform seconds added to latency (never below 0)
    error_rate: float = 0.0  # probability [0,1] that a request gets a 500 instead
    mode: str = "ok"  # one of MODES
    status: int = 500  # for modes "status" and "body"
    retry_after: float = 1.0  # for mode "rate_limited" (Retry-After header, seconds)
    trickle_interval: float = 1.0  # for mode "slow_body": seconds between body bytes
    # Requests worked on at once (during their latency) before the next one gets
    # an immediate 429 with Retry-After = ``retry_after`` (0 = no limit): a
    # provider's concurrency cap. Refusals are counted in ProviderStats.rate_limited.
    concurrency_limit: int = 0
    # For mode "body": answer ``status`` with this text as the body, where every
    # ``{key}`` becomes the key the client sent (empty when it sent none), as
    # ``content_type``. Any upstream answer a test needs: a gateway's page that
    # quotes the key at a chosen offset, a 200 that is not JSON, a custom document.
    body: str = ""
    content_type: str = "text/plain; charset=utf-8"

    def __post_init__(self) -> None:
        for name in ("latency", "jitter", "retry_after", "trickle_interval"):
            _check_seconds(name, getattr(self, name))
        limit = self.concurrency_limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(
                f"concurrency_limit must be a whole number >= 0 (0 = no limit), not {limit!r}"
            )
        rate = self.error_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValueError(f"error_rate must be a number in [0, 1], not {rate!r}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {', '.join(MODES)}")
        if not isinstance(self.body, str):
            raise ValueError(f"body must be a string, not {type(self.body).__name__}")
        content_type = self.content_type
        if not isinstance(content_type, str) or not _HEADER_VALUE.fullmatch(content_type):
            raise ValueError(
                f"content_type must be a non-empty header value (visible ASCII and spaces), "
                f"not {content_type!r}"
            )
        status = self.status
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError(f"status must be an HTTP status in 200..599, not {status!r}")


@dataclass
class SimProvider:
    """One simulated upstream, served under ``/{name}/``.

    ``models`` may mix ids and ``{"id": ..., "mode": ..., "reasoning": ...}``
    entries (handy in spec files); those are folded into ``model_modes`` and
    ``reasoning_models``, so ``models`` is always a list of ids afterwards.
    A model's mode defaults by its name (:func:`default_mode`).
    """

    name: str  # unique; URL prefix /{name}/...
    kind: str  # one of KINDS
    api_key: str | None = None  # expected key; None = no auth required
    # Ids; a spec file may also give {"id", "mode", "reasoning"} entries (see above).
    models: list[str] = field(default_factory=lambda: ["sim-model"])
    behavior: Behavior = field(default_factory=Behavior)
    model_modes: dict[str, str] = field(default_factory=dict)  # model -> one of MODEL_MODES
    reasoning_models: list[str] = field(default_factory=list)  # besides o1/o3/o4*/gpt-5*

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("provider name must be a non-empty string")
        if self.name.startswith("_") or any(c in self.name for c in "/?#% \t"):
            raise ValueError(
                f"provider name {self.name!r} must not start with '_' or contain '/?#%' or spaces"
            )
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise ValueError("api_key must be a non-empty string or None")
        if not isinstance(self.model_modes, Mapping) or not isinstance(self.reasoning_models, list):
            raise ValueError("model_modes must be a mapping and reasoning_models a list")
        self.model_modes = dict(self.model_modes)
        self.reasoning_models = list(self.reasoning_models)
        if not isinstance(self.models, list) or not self.models:
            raise ValueError("models must be a non-empty list of model ids")
        entries: list[Any] = self.models
        self.models = [self._model_id(entry) for entry in entries]
        for model, mode in self.model_modes.items():
            if mode not in MODEL_MODES:
                raise ValueError(
                    f"model {model!r}: unknown mode {mode!r}; expected one of "
                    f"{', '.join(MODEL_MODES)}"
                )
        if not all(isinstance(m, str) and m for m in self.reasoning_models):
            raise ValueError("reasoning_models must be a list of model ids")
        if isinstance(self.behavior, Mapping):  # convenience for specs / JSON
            self.behavior = Behavior(**self.behavior)
        if not isinstance(self.behavior, Behavior):
            raise ValueError("behavior must be a Behavior")

    def _model_id(self, entry: Any) -> str:
        """An id from a ``models`` entry, recording a dict entry's mode and reasoning flag."""
        if isinstance(entry, str) and entry:
            return entry
        if not isinstance(entry, Mapping):
            raise ValueError("models must be a non-empty list of model ids")
        model = entry.get("id")
        unknown = set(entry) - {"id", "mode", "reasoning"}
        if not isinstance(model, str) or not model or unknown:
            raise ValueError(
                f"a model entry must be an id or {{'id', 'mode', 'reasoning'}}, not {dict(entry)!r}"
            )
        if "mode" in entry:
            self.model_modes[model] = entry["mode"]
        if entry.get("reasoning") is True and model not in self.reasoning_models:
            self.reasoning_models.append(model)
        return model

    def mode_of(self, model: str) -> str:
        """What ``model`` does here: its entry in ``model_modes``, else by its name."""
        return self.model_modes.get(model) or default_mode(model)

    def is_reasoning(self, model: str) -> bool:
        """Whether ``model`` refuses ``max_tokens`` (OpenAI's reasoning models)."""
        if model in self.reasoning_models:
            return True
        return _REASONING_NAME.fullmatch(model.rpartition("/")[2]) is not None


@dataclass
class ProviderStats:
    """Counters for one provider (or the sum of all, from ``total_stats``).

    Every counted request ends as exactly one of ``completed`` or
    ``disconnected``, so ``requests == in_flight + completed + disconnected``
    holds between resets. A response the simulator cuts off on purpose (mode
    ``reset``) counts as completed: it was delivered as scripted. A response
    cut off because the server itself was shut down counts as disconnected.
    """

    requests: int = 0  # requests received (all paths)
    in_flight: int = 0  # requests currently being answered
    completed: int = 0  # responses fully sent
    disconnected: int = 0  # client went away before the response finished
    list_probes: int = 0  # free calls: list/get/show a model, count tokens, version
    completion_probes: int = 0  # calls that run a model (any mode), billed by the provider
    max_tokens_requested: int = 0  # sum of max_tokens (or equivalent) in completion calls
    # Sum of the usage totals (tokens) in the healthy model answers actually
    # delivered: what the provider would bill. Zero proves nothing was billed.
    billed_tokens: int = 0
    rate_limited: int = 0  # 429s sent: mode "rate_limited" or over ``concurrency_limit``


_BEHAVIOR_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(Behavior))
_STATS_FIELDS: Final = tuple(f.name for f in dataclasses.fields(ProviderStats))

"""``[[models]]`` and their ``[[models.providers]]``: one adapter per provider entry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from adapters.base import Secret

from .values import name_problem

__all__ = ["ACTIVE_PROBES", "PROBES", "ModelConfig", "ProviderConfig"]

#: What an adapter sends: a free model list, a 1-token completion, or nothing
#: while the router reports traffic (passive).
PROBES: Final = ("models", "completion", "passive")
#: The probes a passive adapter falls back to while the router sends it no traffic.
ACTIVE_PROBES: Final = ("models", "completion")


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One ``[[models.providers]]`` entry: one adapter.

    The probe keys (``mode`` to ``allow_image_probe``) shape what its probe
    sends and how the answer is judged; see docs/configuration.md.
    """

    name: str
    type: str
    base_url: str
    model: str
    api_key: Secret | None = field(default=None, repr=False)
    api_key_env: str | None = None
    probe: str = "models"  # or "completion", or "passive" (see ``active_probe``)
    passive_fallback: str = "models"  # the probe a passive entry sends while idle
    timeout: float | None = None
    verify_model: bool = True
    options: Mapping[str, str] = field(default_factory=dict)  # deployment, api_version, ...
    min_interval: float | None = None  # overrides [checks] min_interval for this entry
    max_concurrent: int | None = None  # cap on this provider name's probes in flight
    # This entry's own tags; its effective tags add its model's (see effective_tags).
    tags: tuple[str, ...] = ()
    # Background-check keys this entry overrides (see CheckSchedule).
    schedule: Mapping[str, Any] = field(default_factory=dict)
    mode: str = "chat"  # what the deployment serves: adapters.modes.MODES
    reasoning: bool | None = None  # None: decided from the model id (o-series, gpt-5)
    probe_model: str | None = None  # the model the paid probe calls instead of ``model``
    max_tokens: int | None = None  # the paid probe's output budget (None: 1, or 64 reasoning)
    probe_path: str | None = None  # GET origin + this path replaces the free probe
    # Extra headers sent on every probe; values are secrets (from headers or headers_env).
    headers: Mapping[str, Secret] = field(default_factory=dict, repr=False)
    headers_env: Mapping[str, str] = field(default_factory=dict)  # header -> env var name
    expect_status: tuple[int, ...] = ()  # healthy statuses; () = any 2xx
    allow_image_probe: bool = False  # image generation may be billed by a paid probe

    def __post_init__(self) -> None:
        _check_names(
            ("name", self.name), ("model", self.model),
            *((key, value) for key, value in self.options.items() if isinstance(value, str)),
        )

    @property
    def passive(self) -> bool:
        return self.probe == "passive"

    @property
    def secrets(self) -> tuple[Secret, ...]:
        """The key and every header value: masked wherever text leaves the process."""
        return tuple(s for s in (self.api_key, *self.headers.values()) if s)

    @property
    def active_probe(self) -> str:
        """The request this entry's adapter sends when it does probe."""
        return self.passive_fallback if self.passive else self.probe


@dataclass(frozen=True, slots=True)
class ModelConfig:
    name: str
    providers: tuple[ProviderConfig, ...]
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_names(("model name", self.name))

    def effective_tags(self, provider: ProviderConfig) -> tuple[str, ...]:
        """A provider's tags: this model's, then the provider's own (each once)."""
        return tuple(dict.fromkeys((*self.tags, *provider.tags)))


def _check_names(*names: tuple[str, object]) -> None:
    """ValueError when a name has control, format or bidi characters (see ``name_problem``)."""
    for what, value in names:
        problem = name_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise ValueError(f"{what} {problem}")

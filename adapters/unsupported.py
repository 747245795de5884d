"""A deployment we cannot check: listed in reports with its reason, never probed.

A LiteLLM config may name providers router-health has no adapter for (an
unknown prefix). Such an entry is loaded as ``type = "unsupported"`` with a
one-line ``reason`` instead of failing the whole config: it shows in every
report as status ``unsupported``, and it does not make its model unhealthy
(see ``service.engine.report.model_status``).
"""

from __future__ import annotations

from typing import ClassVar

from .base import FailureKind, HttpAdapter, ProbeOutcome, ProbeRequest

__all__ = ["UnsupportedAdapter"]


class UnsupportedAdapter(HttpAdapter):
    """Answers ``unsupported`` with its ``reason`` at once: no request is ever sent."""

    adapter_name: ClassVar[str] = "UnsupportedAdapter"
    default_base_url: ClassVar[str | None] = None
    key_required: ClassVar[bool] = False
    option_keys: ClassVar[frozenset[str]] = frozenset({"reason"})
    lists_models: ClassVar[bool] = False

    @property
    def reason(self) -> str:
        return self.options.get("reason") or "no adapter for this provider"

    def build_request(self) -> ProbeRequest:
        raise RuntimeError("an unsupported deployment is never probed")

    async def check_health(self) -> ProbeOutcome:
        return ProbeOutcome.fail(FailureKind.UNSUPPORTED, f"not checked: {self.reason}")

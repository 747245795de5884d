"""Azure OpenAI: ``api-key`` header, ``api-version`` query, deployments in the path."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import FailureKind, ProbeOutcome, ProbeRequest
from .openai import OPENAI_MODES, OpenAIFamilyAdapter, judge_model_list, openai_paid_call

__all__ = ["AZURE_MODES", "DEFAULT_AZURE_API_VERSION", "AzureOpenAIAdapter"]

DEFAULT_AZURE_API_VERSION = "2024-10-21"
#: Azure serves OpenAI's calls per deployment, but no moderations endpoint,
#: and the Responses API lives outside the deployments path.
AZURE_MODES = OPENAI_MODES - {"moderation", "responses"}


class AzureOpenAIAdapter(OpenAIFamilyAdapter):
    """``GET {base}/openai/models`` (free) or the mode's cheapest call to the deployment.

    The models list names base models, not deployments, so the free probe
    proves the resource answers and the key is valid; ``probe = "completion"``
    is what proves the deployment itself serves.
    """

    adapter_name: ClassVar[str] = "AzureOpenAIAdapter"
    default_base_url: ClassVar[str | None] = None
    key_required: ClassVar[bool] = True
    option_keys: ClassVar[frozenset[str]] = frozenset({"deployment", "api_version"})
    modes: ClassVar[frozenset[str]] = AZURE_MODES
    #: "The API deployment for this resource does not exist." names no deployment.
    model_missing_codes: ClassVar[frozenset[str]] = frozenset(
        {"DeploymentNotFound", "model_not_found"}
    )

    @property
    def deployment(self) -> str:
        """The deployment a paid probe calls: ``probe_model`` (a cheaper sibling deployment) first."""
        return self.probe_model or self.options.get("deployment") or self.model

    @property
    def api_version(self) -> str:
        return self.options.get("api_version") or DEFAULT_AZURE_API_VERSION

    def auth_headers(self) -> dict[str, str]:
        return {"api-key": self.api_key.reveal()} if self.api_key else {}

    def failure_kind(self, status: int, message: str) -> FailureKind:
        if status == 404 and self.names_model(message, self.deployment):
            return FailureKind.MODEL_MISSING
        return super().failure_kind(status, message)

    def free_request(self) -> ProbeRequest:
        return ProbeRequest(
            "GET",
            f"{self.base_url}/openai/models",
            headers=self.auth_headers(),
            params={"api-version": self.api_version},
        )

    def paid_request(self) -> ProbeRequest:
        # The deployment in the path selects the model: the body names none.
        call = openai_paid_call(self, with_model=False)
        return call.request(
            f"{self.base_url}/openai/deployments/{self.deployment}",
            self.auth_headers(),
            {"api-version": self.api_version},
        )

    def judge_free(self, data: Any) -> ProbeOutcome:
        if self.wildcard:
            return judge_model_list(self, data)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return self.bad_body("expected an object with a 'data' list of models")
        return ProbeOutcome.ok()

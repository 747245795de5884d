"""Google Vertex AI: OAuth2 access tokens from google-auth, then the publisher model API.

The free probe reads the model's metadata (``GET {base}/v1/publishers/{publisher}/models/{model}``,
what Google's SDK calls for a base model); the paid probe runs the model once
under the project: ``generateContent`` with ``maxOutputTokens`` 1 for Gemini,
``predict`` with one word for Google's embedding models, ``rawPredict`` with
``max_tokens`` 1 for Anthropic's models on Vertex.

google-auth comes with the optional extra ``router-health[vertex]`` and is
imported only when a Vertex AI adapter is built, so this module imports without it.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final
from urllib.parse import quote

import trio

from .base import FailureKind, HttpAdapter, ProbeOutcome, ProbeRequest, Secret
from .modes import PROBE_TEXT, usage_tokens

__all__ = [
    "DEFAULT_LOCATION",
    "DEFAULT_VERTEX_BASE_URL",
    "VertexAIAdapter",
    "vertex_model",
]

_EXTRA_HINT: Final = "type 'vertex-ai' needs the vertex extra: pip install 'router-health[vertex]'"
DEFAULT_LOCATION: Final = "us-central1"
#: Regional endpoint; the "global" location has no region in its host.
DEFAULT_VERTEX_BASE_URL: Final = "https://{location}-aiplatform.googleapis.com"
_GLOBAL_BASE_URL: Final = "https://aiplatform.googleapis.com"
_SCOPES: Final = ("https://www.googleapis.com/auth/cloud-platform",)
#: The Messages API version Anthropic's models on Vertex take in the body.
ANTHROPIC_VERTEX_VERSION: Final = "vertex-2023-10-16"
#: Publishers whose paid call this adapter knows.
_PAID_PUBLISHERS: Final = frozenset({"google", "anthropic"})
#: How long the token endpoint may take (the worker thread is abandoned at the probe's deadline).
_TOKEN_TIMEOUT: Final = 30.0


def vertex_model(model: str) -> tuple[str, str]:
    """``(publisher, model id)`` from a configured model.

    ``publishers/anthropic/models/claude-...``, ``anthropic/claude-...`` and
    LiteLLM's ``vertex_ai/...`` name the publisher; a bare ``claude-*`` is
    Anthropic's; anything else is Google's.
    """
    model = model.removeprefix("vertex_ai/")
    parts = model.split("/")
    if len(parts) == 4 and parts[0] == "publishers" and parts[2] == "models":
        return parts[1], parts[3]
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    if model.startswith("claude-"):
        return "anthropic", model
    return "google", model


def _google_auth() -> Any:
    """google-auth's modules, or the one-line error naming the extra that brings them."""
    try:
        import google.auth
        import google.auth.exceptions
        import google.auth.transport
        import google.oauth2.credentials
        import google.oauth2.service_account
    except ImportError:
        raise ValueError(_EXTRA_HINT) from None
    return google


class _CredentialsProblem(Exception):
    """No usable Google credentials or token; the message says why."""


@dataclass(eq=False)
class _TokenSource:
    """An adapter's credentials and token; shared with its copies (the cost budget's free twin)."""

    #: google-auth's credentials; None until application default credentials are resolved.
    credentials: Any = None
    token: str | None = None
    #: The project the credentials name (used when the config names none).
    project: str | None = None
    resolving: trio.Lock = field(default_factory=trio.Lock)
    # One token refresh at a time, also across abandoned worker threads.
    refreshing: threading.Lock = field(default_factory=threading.Lock)


class _UrllibResponse:
    """google-auth's transport response, over what urllib read."""

    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data


class _UrllibRequest:
    """google-auth's transport request over the standard library.

    google-auth needs some HTTP client for its token calls; urllib spares the
    extra a dependency on ``requests``. It runs in a worker thread only.
    """

    def __init__(self, exceptions: Any) -> None:
        self._exceptions = exceptions

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _UrllibResponse:
        request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout or _TOKEN_TIMEOUT) as answer:
                return _UrllibResponse(answer.status, dict(answer.headers), answer.read())
        except urllib.error.HTTPError as exc:  # an answer all the same: google-auth reads it
            with exc:
                return _UrllibResponse(exc.code, dict(exc.headers), exc.read())
        except (OSError, ValueError) as exc:
            raise self._exceptions.TransportError(f"{type(exc).__name__}: {exc}") from None


class VertexAIAdapter(HttpAdapter):
    """Bearer tokens from ``credentials_file`` (a service account or user credentials JSON) or ADC.

    With ``api_key`` (a Vertex AI express mode key) the probes carry it in
    ``x-goog-api-key`` instead, at the global endpoint, and no token is fetched.

    Getting a token means a call to Google's token endpoint (or the metadata
    server), so it happens in a worker thread, and the token is kept until
    google-auth deems it near expiry (a few minutes before it lapses).
    """

    adapter_name: ClassVar[str] = "VertexAIAdapter"
    default_base_url: ClassVar[str | None] = DEFAULT_VERTEX_BASE_URL
    key_required: ClassVar[bool] = False
    option_keys: ClassVar[frozenset[str]] = frozenset({"project", "location", "credentials_file"})
    modes: ClassVar[frozenset[str]] = frozenset({"chat", "embedding"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._google = _google_auth()
        self.location = self.options.get("location") or DEFAULT_LOCATION
        if not all(c.isalnum() or c == "-" for c in self.location):
            raise ValueError(
                f"provider {self.provider!r}: location {self.location!r} is not a Google "
                "Cloud location (like us-central1, europe-west4 or global)"
            )
        if self.api_key and self.options.get("credentials_file"):
            raise ValueError(
                f"provider {self.provider!r}: give either api_key (a Vertex AI express mode "
                "key) or credentials_file, not both"
            )
        # Express mode (an API key) is served by the global endpoint.
        if (self.location == "global" or self.api_key) and self.base_url == DEFAULT_VERTEX_BASE_URL:
            self.base_url = _GLOBAL_BASE_URL
        self.base_url = self.base_url.replace("{location}", self.location)
        self.publisher, self.model_name = vertex_model(self.model)
        paid_publisher, _ = vertex_model(self.probe_model_id)
        if self.probe == "completion" and (
            paid_publisher not in _PAID_PUBLISHERS
            or (self.mode == "embedding" and paid_publisher != "google")
        ):
            raise ValueError(
                f"provider {self.provider!r}: the vertex-ai paid probe knows Google's models "
                f"(chat, embedding) and Anthropic's (chat), not {paid_publisher!r} {self.mode}; "
                'use probe = "models"'
            )
        self._source = _TokenSource()
        if path := self.options.get("credentials_file"):
            self._source.credentials = self._load_file(path)

    @property
    def project(self) -> str | None:
        """The configured project, else the one the credentials name."""
        return self.options.get("project") or self._source.project

    # -- credentials ----------------------------------------------------------------

    def _load_file(self, path: str) -> Any:
        """A service account's key or a user's credentials (``gcloud auth application-default login``).

        Loaded by their type alone, as google-auth advises for files from
        elsewhere: other kinds (workload identity federation, impersonation)
        go through application default credentials instead.
        """
        where = f"provider {self.provider!r}: credentials_file {path!r}"
        try:
            with open(path, encoding="utf-8") as file:
                info = json.load(file)
        except OSError as exc:
            raise ValueError(f"{where}: {exc.strerror or exc}") from None
        except ValueError:
            raise ValueError(f"{where} is not a JSON credentials file") from None
        kind = info.get("type") if isinstance(info, dict) else None
        oauth2 = self._google.oauth2
        loaders = {
            "service_account": oauth2.service_account.Credentials.from_service_account_info,
            "authorized_user": oauth2.credentials.Credentials.from_authorized_user_info,
        }
        if kind not in loaders:
            raise ValueError(
                f"{where} holds {kind or 'no'} credentials; service_account and authorized_user "
                "files are read here, others through application default credentials (leave "
                "credentials_file out and set GOOGLE_APPLICATION_CREDENTIALS)"
            )
        try:
            credentials = loaders[kind](info, scopes=_SCOPES)
        except (ValueError, KeyError, self._google.auth.exceptions.GoogleAuthError) as exc:
            # The message names what is missing or malformed, never a key's value.
            raise ValueError(f"{where}: not a valid {kind} file ({exc})") from None
        project = info.get("project_id") or info.get("quota_project_id")
        self._source.project = project if isinstance(project, str) else None
        return credentials

    def _default_credentials(self) -> Any:
        """Application default credentials (runs in a worker thread: it may do I/O)."""
        google = self._google
        try:
            credentials, project = google.auth.default(scopes=_SCOPES)
        except google.auth.exceptions.GoogleAuthError as exc:
            raise _CredentialsProblem(f"Google credentials: {exc}") from None
        self._source.project = project
        return credentials

    def _refresh(self, credentials: Any) -> str:
        """A valid access token, refreshed if google-auth says it must be (in a worker thread)."""
        google = self._google
        with self._source.refreshing:
            if not credentials.valid:
                try:
                    credentials.refresh(_UrllibRequest(google.auth.exceptions))
                except google.auth.exceptions.GoogleAuthError as exc:
                    raise _CredentialsProblem(
                        f"getting a Google access token failed: {exc}"
                    ) from None
            token: str = credentials.token
            return token

    async def _prepare_token(self) -> None:
        source = self._source
        if source.credentials is None:
            async with source.resolving:  # one resolution, whatever the overlapping probes
                if source.credentials is None:
                    source.credentials = await trio.to_thread.run_sync(
                        self._default_credentials, abandon_on_cancel=True
                    )
        credentials = source.credentials
        if credentials.valid and credentials.token:
            source.token = credentials.token
        else:
            source.token = await trio.to_thread.run_sync(
                self._refresh, credentials, abandon_on_cancel=True
            )

    async def check_health(self) -> ProbeOutcome:
        if self._client is not None and not self.api_key:  # not open: the base answers not_open
            try:
                await self._prepare_token()
            except _CredentialsProblem as exc:  # nothing went out
                return ProbeOutcome.fail(FailureKind.AUTH, self._scrub(str(exc)), sent=False)
            if self.probe == "completion" and not self.project:
                return ProbeOutcome.fail(
                    FailureKind.EXCEPTION,
                    'no Google Cloud project for the paid probe: set project = "my-project" '
                    "(the credentials name none)",
                    sent=False,
                )
        return await super().check_health()

    @property
    def secrets(self) -> tuple[Secret, ...]:
        token = self._source.token
        return (*super().secrets, *((Secret(token),) if token else ()))

    # -- requests -------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        if self.api_key:  # express mode: the key in a header, never in the URL
            return {"x-goog-api-key": self.api_key.reveal()}
        token = self._source.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        quota_project = getattr(self._source.credentials, "quota_project_id", None)
        if isinstance(quota_project, str) and quota_project:
            # User credentials bill a quota project, as google-auth's own apply() says.
            headers["x-goog-user-project"] = quota_project
        return headers

    def free_request(self) -> ProbeRequest:
        # The metadata names the model without a "@version" suffix (Anthropic's ids carry one).
        name = self.model_name.partition("@")[0]
        return ProbeRequest(
            "GET",
            f"{self.base_url}/v1/publishers/{_segment(self.publisher)}/models/{_segment(name)}",
            headers=self.auth_headers(),
        )

    def paid_request(self) -> ProbeRequest:
        publisher, model = vertex_model(self.probe_model_id)
        # Express mode (an API key, no project) calls the model without a project path.
        scope = (
            f"/projects/{_segment(self.project or '')}/locations/{_segment(self.location)}"
            if self.project or not self.api_key
            else ""
        )
        url = f"{self.base_url}/v1{scope}/publishers/{_segment(publisher)}/models/{_segment(model)}"
        if publisher == "anthropic":
            body: dict[str, Any] = {
                "anthropic_version": ANTHROPIC_VERTEX_VERSION,
                "messages": [{"role": "user", "content": PROBE_TEXT}],
                "max_tokens": self.output_tokens,
            }
            return ProbeRequest(
                "POST", f"{url}:rawPredict", headers=self.auth_headers(), json_body=body
            )
        if self.mode == "embedding":
            body = {"instances": [{"content": PROBE_TEXT}]}
            return ProbeRequest(
                "POST", f"{url}:predict", headers=self.auth_headers(), json_body=body
            )
        body = {
            "contents": [{"role": "user", "parts": [{"text": PROBE_TEXT}]}],
            "generationConfig": {"maxOutputTokens": self.output_tokens},
        }
        return ProbeRequest(
            "POST", f"{url}:generateContent", headers=self.auth_headers(), json_body=body
        )

    # -- verdicts -------------------------------------------------------------------

    def failure_kind(self, status: int, message: str) -> FailureKind:
        # "Publisher Model `...` was not found or your project does not have access to it."
        if status == 404:
            return FailureKind.MODEL_MISSING
        return super().failure_kind(status, message)

    def judge_free(self, data: Any) -> ProbeOutcome:
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(name, str):
            return self.bad_body("expected a publisher model with a 'name'")
        wanted = self.model_name.partition("@")[0]
        found = name.rsplit("/", 1)[-1].partition("@")[0]
        if self.verify_model and found != wanted:
            return ProbeOutcome.fail(
                FailureKind.MODEL_MISSING,
                f"asked for model {wanted!r}, the lookup answered {found!r}",
            )
        return ProbeOutcome.ok()

    def judge_paid(self, data: Any) -> ProbeOutcome:
        if not isinstance(data, dict):
            return self.bad_body("expected a JSON object")
        publisher, _ = vertex_model(self.probe_model_id)
        if publisher == "anthropic":
            if data.get("type") != "message" or not isinstance(data.get("content"), list):
                return self.bad_body("expected a message with a 'content' list")
            return ProbeOutcome.ok(tokens=usage_tokens(data.get("usage")))
        if self.mode == "embedding":
            predictions = data.get("predictions")
            if not isinstance(predictions, list) or not predictions:
                return self.bad_body("expected a non-empty 'predictions' list")
            return ProbeOutcome.ok(tokens=_embedding_tokens(predictions))
        if not isinstance(data.get("candidates"), list):
            return self.bad_body("expected a 'candidates' list")
        usage = data.get("usageMetadata")
        total = usage.get("totalTokenCount") if isinstance(usage, dict) else None
        return ProbeOutcome.ok(tokens=_count(total))


def _segment(value: str) -> str:
    """One path segment, escaped ("@" stays: Vertex model versions are written with it)."""
    return quote(value, safe="@-_.~")


def _embedding_tokens(predictions: list[Any]) -> int | None:
    """The tokens of every prediction's ``embeddings.statistics.token_count``; None if one has none."""
    total = 0
    for prediction in predictions:
        embeddings = prediction.get("embeddings") if isinstance(prediction, dict) else None
        statistics = embeddings.get("statistics") if isinstance(embeddings, dict) else None
        count = _count(statistics.get("token_count")) if isinstance(statistics, dict) else None
        if count is None:
            return None
        total += count
    return total


def _count(value: Any) -> int | None:
    """A token count as Google writes it: an int, a whole float, or an int64 as a string."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

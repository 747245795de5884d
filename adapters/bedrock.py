"""AWS Bedrock: SigV4-signed probes, signed by botocore's own signer.

The free probe asks the control plane (``bedrock.{region}``) about the model:
GetFoundationModel, GetInferenceProfile for a cross-region profile id
(``us.anthropic.claude-...``), ListFoundationModels for ``model = "*"``. The
paid probe is one call on the runtime (``bedrock-runtime.{region}``): a
Converse with ``maxTokens`` 1 for chat, an InvokeModel with one word for the
Titan and Cohere embedding models.

botocore comes with the optional extra ``router-health[bedrock]`` and is
imported only when a Bedrock adapter is built, so this module imports without it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import trio

from .base import FailureKind, HttpAdapter, ProbeOutcome, ProbeRequest, Secret
from .modes import PROBE_TEXT

__all__ = [
    "DEFAULT_BEDROCK_BASE_URL",
    "SIGNING_NAME",
    "BedrockAdapter",
    "bedrock_model_id",
    "bedrock_region",
]

_EXTRA_HINT: Final = "type 'bedrock' needs the bedrock extra: pip install 'router-health[bedrock]'"
#: Both APIs sign as "bedrock": the ``signingName`` of the bedrock *and* the
#: bedrock-runtime service models in botocore (the runtime's endpoint prefix differs).
SIGNING_NAME: Final = "bedrock"
#: The runtime endpoint; the control plane is the same host without "-runtime".
DEFAULT_BEDROCK_BASE_URL: Final = "https://bedrock-runtime.{region}.amazonaws.com"
#: Cross-region inference profiles put a geography before the model id.
_PROFILE_GEOGRAPHIES: Final = frozenset({"us", "us-gov", "eu", "apac", "jp", "au", "ca", "global"})
#: LiteLLM's route prefixes ("bedrock/converse/<id>"): not part of the id Bedrock knows.
_ROUTE_PREFIXES: Final = ("bedrock/", "converse/", "invoke/")
_REGION: Final = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")
_HOST_REGION: Final = re.compile(
    r"\.([a-z]{2}(?:-[a-z]+)+-\d{1,2})\.(?:vpce\.)?amazonaws\.com(?:\.cn)?$"
)
#: What botocore leaves unescaped in a path label (``percent_encode``): AWS
#: recomputes the signature over the path as sent, so ours must be encoded alike.
_LABEL_SAFE: Final = "-_.~"
_ENV_KEYS: Final = ("aws_access_key_id_env", "aws_secret_access_key_env", "aws_session_token_env")

Lookup = Literal["foundation", "profile", "other"]


def bedrock_model_id(model: str) -> str:
    """The id Bedrock knows: LiteLLM's ``bedrock/``, ``converse/`` and ``invoke/`` prefixes dropped."""
    for prefix in _ROUTE_PREFIXES:
        model = model.removeprefix(prefix)
    return model


def _lookup_of(model_id: str) -> tuple[Lookup, str]:
    """Which control-plane call describes ``model_id``, and the identifier it takes."""
    if model_id.startswith("arn:"):
        resource = model_id.split(":", 5)[-1]
        kind, _, name = resource.partition("/")
        if kind == "foundation-model" and name:
            return "foundation", name
        if kind in ("inference-profile", "application-inference-profile"):
            return "profile", model_id
        return "other", model_id  # provisioned, custom, imported models: no free lookup
    geography, _, rest = model_id.partition(".")
    if geography in _PROFILE_GEOGRAPHIES and "." in rest:
        return "profile", model_id
    return "foundation", model_id


def _label(value: str) -> str:
    return quote(value, safe=_LABEL_SAFE)


def _control_plane(runtime_url: str) -> str:
    """The control plane's URL: the runtime host without "-runtime" (a custom URL serves both)."""
    parts = urlsplit(runtime_url)
    host = parts.netloc.replace("bedrock-runtime", "bedrock", 1)
    return urlunsplit(parts._replace(netloc=host))


def _host_header(url: str) -> str:
    """The Host header the transports send for ``url`` (the default port left out)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    shown = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return shown if parts.port in (None, default) else f"{shown}:{parts.port}"


def _botocore() -> Any:
    """botocore's modules, or the one-line error naming the extra that brings them."""
    try:
        import botocore.auth  # type: ignore[import-untyped]
        import botocore.awsrequest  # type: ignore[import-untyped]
        import botocore.credentials  # type: ignore[import-untyped]
        import botocore.exceptions  # type: ignore[import-untyped]
        import botocore.session  # type: ignore[import-untyped]
    except ImportError:
        raise ValueError(_EXTRA_HINT) from None
    return botocore


def bedrock_region(region: str | None, base_url: str, env: Mapping[str, str]) -> str | None:
    """The region a Bedrock entry signs for, as the adapter finds it; None when nothing names one.

    ``region``, else ``AWS_REGION`` or ``AWS_DEFAULT_REGION`` in ``env``, else
    the region in ``base_url``'s host (a VPC endpoint), else the AWS profile's
    (when botocore is installed: without it the adapter cannot be built anyway).
    The config parser asks this too, so a missing region is a config error.
    """
    found = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if found:
        return found
    in_host = _HOST_REGION.search(urlsplit(base_url).hostname or "")
    return in_host.group(1) if in_host else _profile_region()


def _profile_region() -> str | None:
    """The region of the AWS profile in use (``~/.aws/config``), as boto3 would find it."""
    try:
        botocore = _botocore()
    except ValueError:  # no botocore: building the adapter says which extra to install
        return None
    try:
        region = botocore.session.get_session().get_config_variable("region")
    except botocore.exceptions.BotoCoreError:
        return None  # a profile that does not exist: the caller says what to set
    return region if isinstance(region, str) and region else None


class _CredentialsProblem(Exception):
    """No usable AWS credentials; the message says where they were looked for."""


@dataclass(eq=False)
class _SigningKeys:
    """What an adapter signs with; shared with its copies (the cost budget's free twin)."""

    #: botocore's credentials; None until the default chain has been resolved.
    source: Any
    #: The key triple (ReadOnlyCredentials) the next request is signed with.
    current: Any = None
    resolving: trio.Lock = field(default_factory=trio.Lock)


class BedrockAdapter(HttpAdapter):
    """SigV4 with botocore's signer; credentials from ``*_env`` options or botocore's default chain.

    With ``api_key`` (a Bedrock API key) the probes carry it as a Bearer
    token instead, and nothing is signed.

    Every request is signed as the last step of :meth:`build_request`, over
    the exact method, URL, headers and body bytes the transport sends. The
    default chain (environment, ``~/.aws``, SSO, container or instance role)
    may read files or ask a metadata service, so it is resolved once, on the
    first probe, in a worker thread; refreshable credentials (roles, SSO) are
    refreshed there too.
    """

    adapter_name: ClassVar[str] = "BedrockAdapter"
    default_base_url: ClassVar[str | None] = DEFAULT_BEDROCK_BASE_URL
    key_required: ClassVar[bool] = False
    option_keys: ClassVar[frozenset[str]] = frozenset({"region", *_ENV_KEYS})
    modes: ClassVar[frozenset[str]] = frozenset({"chat", "embedding"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._botocore = _botocore()
        self.region = self._region()
        self.base_url = self.base_url.replace("{region}", self.region)
        self.control_url = _control_plane(self.base_url)
        self.model_id = bedrock_model_id(self.model)
        self._lookup, self._lookup_id = _lookup_of(self.model_id)
        if self.probe == "completion" and self.mode == "embedding":
            self._embedding_body()  # an unknown embedding family fails here, not at each probe
        if self.api_key and any(self.options.get(key) for key in _ENV_KEYS):
            raise ValueError(
                f"provider {self.provider!r}: give either api_key (a Bedrock API key) or the "
                "aws_*_env credentials, not both"
            )
        static = self._env_credentials()
        self._keys = _SigningKeys(
            static, None if static is None else static.get_frozen_credentials()
        )

    # -- configuration ------------------------------------------------------------

    def _region(self) -> str:
        region = bedrock_region(self.options.get("region"), self.base_url, os.environ)
        if not region:
            raise ValueError(
                f"provider {self.provider!r}: type 'bedrock' needs a region: set region = "
                '"us-east-1" (or AWS_REGION, or a region in the AWS profile)'
            )
        if not _REGION.fullmatch(region):
            raise ValueError(
                f"provider {self.provider!r}: region {region!r} is not an AWS region name "
                "(like us-east-1 or eu-central-1)"
            )
        return region

    def _env_credentials(self) -> Any:
        """Static credentials from the variables the ``*_env`` options name; None: the default chain."""
        key_env, secret_env, token_env = (self.options.get(key) for key in _ENV_KEYS)
        if not (key_env or secret_env or token_env):
            return None
        if not (key_env and secret_env):
            raise ValueError(
                f"provider {self.provider!r}: set both aws_access_key_id_env and "
                "aws_secret_access_key_env (aws_session_token_env only with them), or none "
                "of them to use botocore's default credential chain"
            )
        values: dict[str, str | None] = {}
        for key, name in zip(_ENV_KEYS, (key_env, secret_env, token_env), strict=True):
            if not name:
                values[key] = None
                continue
            value = os.environ.get(name, "").strip()
            if not value:
                raise ValueError(
                    f"provider {self.provider!r}: {key} names the environment variable "
                    f"{name}, which is not set (or empty)"
                )
            values[key] = value
        return self._botocore.credentials.Credentials(
            values["aws_access_key_id_env"],
            values["aws_secret_access_key_env"],
            values["aws_session_token_env"],
        )

    @property
    def secrets(self) -> tuple[Secret, ...]:
        # The secret key never goes on the wire, but an error message built
        # from it must not show it either; the session token does travel.
        frozen = self._keys.current
        own = () if frozen is None else (frozen.secret_key, frozen.token)
        return (*super().secrets, *(Secret(value) for value in own if value))

    # -- credentials ----------------------------------------------------------------

    def _default_chain(self) -> Any:
        """botocore's default chain (runs in a worker thread: it may do I/O)."""
        errors = self._botocore.exceptions
        try:
            credentials = self._botocore.session.get_session().get_credentials()
        except errors.BotoCoreError as exc:
            raise _CredentialsProblem(f"AWS credentials: {exc}") from None
        if credentials is None:
            raise _CredentialsProblem(
                "no AWS credentials found: set aws_access_key_id_env and "
                "aws_secret_access_key_env, or give botocore's default chain some "
                "(AWS_ACCESS_KEY_ID, ~/.aws, SSO, an instance or container role)"
            )
        return credentials

    def _freeze(self, credentials: Any) -> Any:
        """The current key triple; a refreshable one may call STS/SSO first (in a thread)."""
        errors = self._botocore.exceptions
        try:
            return credentials.get_frozen_credentials()
        except (errors.BotoCoreError, errors.ClientError) as exc:
            raise _CredentialsProblem(f"refreshing AWS credentials failed: {exc}") from None

    async def _prepare_credentials(self) -> None:
        keys = self._keys
        if keys.source is None:
            async with keys.resolving:  # one resolution, whatever the overlapping probes
                if keys.source is None:
                    keys.source = await trio.to_thread.run_sync(
                        self._default_chain, abandon_on_cancel=True
                    )
        if isinstance(keys.source, self._botocore.credentials.RefreshableCredentials):
            keys.current = await trio.to_thread.run_sync(
                self._freeze, keys.source, abandon_on_cancel=True
            )
        else:
            keys.current = keys.source.get_frozen_credentials()

    async def check_health(self) -> ProbeOutcome:
        if self._client is not None and not self.api_key:  # not open: the base answers not_open
            try:
                await self._prepare_credentials()
            except _CredentialsProblem as exc:  # nothing went out
                return ProbeOutcome.fail(FailureKind.AUTH, self._scrub(str(exc)), sent=False)
        return await super().check_health()

    # -- requests -------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        # A Bedrock API key is a Bearer token; else the SigV4 signature is
        # added last, in build_request.
        return self.bearer_headers()

    def free_request(self) -> ProbeRequest:
        if self.wildcard or self._lookup == "other":
            path = "/foundation-models"
        elif self._lookup == "profile":
            path = f"/inference-profiles/{_label(self._lookup_id)}"
        else:
            path = f"/foundation-models/{_label(self._lookup_id)}"
        return ProbeRequest("GET", self.control_url + path, headers=self.auth_headers())

    def paid_request(self) -> ProbeRequest:
        model = _label(bedrock_model_id(self.probe_model_id))
        if self.mode == "embedding":
            action, body = "invoke", self._embedding_body()
            headers = {"Accept": "application/json", **self.auth_headers()}
        else:
            action, headers = "converse", self.auth_headers()
            body = {
                "messages": [{"role": "user", "content": [{"text": PROBE_TEXT}]}],
                "inferenceConfig": {"maxTokens": self.output_tokens},
            }
        return ProbeRequest(
            "POST",
            f"{self.base_url}/model/{model}/{action}",
            headers=headers,
            content=_json_bytes(body),
            content_type="application/json",
        )

    def _embedding_body(self) -> dict[str, Any]:
        """InvokeModel's body differs by model family; one word either way."""
        name = bedrock_model_id(self.probe_model_id)
        if "titan-embed" in name:
            return {"inputText": PROBE_TEXT}
        if "cohere.embed" in name:
            return {"texts": [PROBE_TEXT], "input_type": "search_query"}
        raise ValueError(
            f"provider {self.provider!r}: the bedrock embedding probe knows the Titan "
            f"(amazon.titan-embed-*) and Cohere (cohere.embed-*) models, not {name!r}; "
            'use probe = "models"'
        )

    def build_request(self) -> ProbeRequest:
        request = super().build_request()
        return request if self.api_key else self._signed(request)

    def _signed(self, request: ProbeRequest) -> ProbeRequest:
        """``request`` with its SigV4 headers: what is signed is byte for byte what is sent."""
        if self._keys.current is None:
            raise RuntimeError("AWS credentials are resolved by check_health() before a request")
        url = request.url
        if request.params:
            # Into the URL, encoded as SigV4 encodes them: the transport adds nothing.
            query = "&".join(f"{_label(k)}={_label(v)}" for k, v in sorted(request.params.items()))
            url = f"{url}{'&' if '?' in url else '?'}{query}"
        body = request.content
        content_type = request.content_type
        if request.json_body is not None:  # the transport's own serialisation, made explicit
            body, content_type = _json_bytes(request.json_body), "application/json"
        headers = {**request.headers, "Host": _host_header(url)}
        if body is not None:
            headers["Content-Type"] = content_type or "application/octet-stream"
        botocore = self._botocore
        aws_request = botocore.awsrequest.AWSRequest(
            method=request.method, url=url, headers=headers, data=body or b""
        )
        _sign(botocore.auth.SigV4Auth(self._keys.current, SIGNING_NAME, self.region), aws_request)
        return ProbeRequest(
            request.method,
            url,
            headers=dict(aws_request.headers.items()),
            content=body,
            content_type=content_type,
        )

    # -- verdicts -------------------------------------------------------------------

    def failure_kind(self, status: int, message: str) -> FailureKind:
        text = message.lower()
        # 404 ResourceNotFoundException: our paths name the model or profile.
        # A 400 ValidationException says so in words; so does an id that needs
        # an inference profile ("with on-demand throughput isn't supported").
        if status == 404 or (
            status == 400
            and ("model identifier is invalid" in text or "on-demand throughput" in text)
        ):
            return FailureKind.MODEL_MISSING
        return super().failure_kind(status, message)

    def judge_free(self, data: Any) -> ProbeOutcome:
        if not isinstance(data, dict):
            return self.bad_body("expected a JSON object")
        if self.wildcard or self._lookup == "other":
            summaries = data.get("modelSummaries")
            if not isinstance(summaries, list):
                return self.bad_body("expected a 'modelSummaries' list")
            ids = [s.get("modelId") for s in summaries if isinstance(s, dict)]
            if self.wildcard:
                return self.model_listed(i for i in ids if isinstance(i, str))
            return ProbeOutcome.ok()  # no free lookup for this kind of id: the call itself answered
        if self._lookup == "profile":
            status = data.get("status")
            if not isinstance(data.get("inferenceProfileId"), str) or not isinstance(status, str):
                return self.bad_body("expected an inference profile with an id and a status")
            if status != "ACTIVE":
                return ProbeOutcome.fail(
                    FailureKind.MODEL_MISSING, f"inference profile {self._lookup_id!r} is {status}"
                )
            return ProbeOutcome.ok()
        details = data.get("modelDetails")
        found = details.get("modelId") if isinstance(details, dict) else None
        if not isinstance(found, str):
            return self.bad_body("expected 'modelDetails' with a 'modelId'")
        if self.verify_model and found != self._lookup_id:
            return ProbeOutcome.fail(
                FailureKind.MODEL_MISSING,
                f"asked for model {self._lookup_id!r}, the lookup answered {found!r}",
            )
        return ProbeOutcome.ok()

    def judge_paid(self, data: Any) -> ProbeOutcome:
        if not isinstance(data, dict):
            return self.bad_body("expected a JSON object")
        if self.mode == "embedding":
            if isinstance(data.get("embedding"), list):  # Titan
                return ProbeOutcome.ok(tokens=_count(data.get("inputTextTokenCount")))
            if isinstance(data.get("embeddings"), list | dict):  # Cohere
                return ProbeOutcome.ok()  # its count is in a header, not the body
            return self.bad_body("expected an 'embedding' or 'embeddings'")
        output = data.get("output")
        message = output.get("message") if isinstance(output, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            return self.bad_body("expected a Converse answer with 'output.message.content'")
        usage = data.get("usage")
        return ProbeOutcome.ok(
            tokens=_count(usage.get("totalTokens")) if isinstance(usage, Mapping) else None
        )


def _sign(signer: Any, aws_request: Any) -> None:
    """What ``SigV4Auth.add_auth`` does, from its public steps, minus its debug log.

    ``add_auth`` logs the canonical request at DEBUG, and that holds the
    session token (a signed header): with debug logging on, the token would
    reach the log. The canonical request, the string to sign and the HMAC
    chain are botocore's own; only the date, token and Authorization headers
    are set here, in the SigV4 format.
    """
    keys = signer.credentials
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aws_request.context["timestamp"] = stamp
    aws_request.headers["X-Amz-Date"] = stamp
    if keys.token:
        aws_request.headers["X-Amz-Security-Token"] = keys.token
    canonical = signer.canonical_request(aws_request)
    signature = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
    signed = signer.signed_headers(signer.headers_to_sign(aws_request))
    aws_request.headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={signer.scope(aws_request)}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )


def _json_bytes(body: Any) -> bytes:
    # Compact, as the transport writes JSON; ASCII-only, so the bytes are the
    # same whichever transport sends them (httpx writes non-ASCII unescaped).
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

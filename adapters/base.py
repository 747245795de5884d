"""The adapter protocol and the one HTTP helper every provider adapter uses.

An *adapter* is one model -> provider pair of an AI router. The checker only
knows adapters through :class:`Adapter`: an object with a ``provider`` name, an
``adapter_name`` for log lines, and an async ``check_health()`` returning a
:class:`ProbeOutcome`.

Deadlines are *not* enforced here: the checker wraps every ``check_health()`` in
a Trio cancel scope, which cancels the whole exchange, headers and body read
included (a per-read timeout would never trip on a body trickled byte by byte).
What this module does guarantee is that upstream text is shortened and
stripped of secrets (``adapters.redaction``) before it becomes an error
message, and that the probe's wire-format check (what a healthy answer looks
like) stays apart from the transport (``adapters.transport``) and from
scheduling.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
import zlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

from .modes import (
    DEFAULT_MODE,
    REASONING_MAX_TOKENS,
    WILDCARD,
    is_reasoning_model,
)
from .redaction import (
    _MAX_ERROR_CHARS,
    MIN_FRAGMENT,
    Secret,
    _shorten,
    redact,
    scrub,
)

# Also importable from here, as before the redaction code had a module of its own.
from .redaction import _cut as _cut
from .redaction import _mask_cut_fragments as _mask_cut_fragments
from .redaction import _prefix_ending_at as _prefix_ending_at
from .redaction import _raw_secrets as _raw_secrets
from .redaction import _suffix_starting_at as _suffix_starting_at
from .redaction import _words as _words
from .transport import (
    ConnectionBudget,
    HttpConnection,
    HttpxTransport,
    ProbeRequest,
    ProbeTransport,
    RawResponse,
    TransportError,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_LISTED",
    "MIN_FRAGMENT",
    "Adapter",
    "AnswerKind",
    "ConnectionBudget",
    "FailureKind",
    "HttpAdapter",
    "HttpConnection",
    "HttpxTransport",
    "ProbeOutcome",
    "ProbeRequest",
    "ProbeTransport",
    "RawResponse",
    "Secret",
    "TransportError",
    "is_wildcard",
    "origin_of",
    "redact",
    "scrub",
    "wildcard_matches",
]

#: Health answers are small (a models list is a few KB, Ollama's tags maybe
#: 100 KB); anything past this is a misbehaving upstream, not a health answer.
DEFAULT_MAX_BODY_BYTES = 1 << 20

#: Longest piece of a 2xx body that is not JSON quoted in its error message.
_MAX_SNIPPET_CHARS = 80
#: Most model ids a wildcard entry reports (a provider may serve thousands).
MAX_LISTED = 1000


class FailureKind(enum.StrEnum):
    """Why a probe failed, coarse enough for a metric label."""

    HTTP_STATUS = "http_status"  # upstream answered with a non-2xx status
    AUTH = "auth"  # 401/403: the key is wrong, revoked or lacks access
    RATE_LIMITED = "rate_limited"  # 429
    BAD_BODY = "bad_body"  # 2xx but not the provider's healthy shape
    MODEL_MISSING = "model_missing"  # answered, but the configured model is not listed
    CONNECT = "connect"  # refused, DNS, TLS, reset: no usable answer
    BODY_TOO_LARGE = "body_too_large"
    EXCEPTION = "exception"  # the adapter itself raised
    RESOURCE = "resource"  # local exhaustion (EMFILE...): worth a sequential retry
    TIMEOUT = "timeout"  # the adapter's own deadline passed
    DEADLINE = "deadline"  # the model's or the run's budget ran out first
    NOT_STARTED = "not_started"  # budget gone before the probe could start
    NOT_OPEN = "not_open"  # the manager owning the HTTP clients is not open
    UNSUPPORTED = "unsupported"  # a deployment we cannot check (type = "unsupported"): no probe sent


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """What one ``check_health()`` call concluded. Timing is the checker's job."""

    healthy: bool
    http_status: int | None = None
    error: str | None = None
    failure: FailureKind | None = None
    retry_after: float | None = None  # seconds, from a 429/503 Retry-After header
    #: Tokens this probe was billed for (prompt + completion, from the answer's
    #: ``usage``); None for free probes and answers that do not say.
    tokens: int | None = None
    #: The model ids a list probe saw, for wildcard entries (``model = "*"``)
    #: that report what the provider serves; None otherwise.
    listed: tuple[str, ...] | None = None
    #: False when it failed before any request went out (no credentials to
    #: sign one with): nothing to time, nothing to count as a probe sent.
    sent: bool = True

    @classmethod
    def ok(
        cls,
        http_status: int | None = None,
        *,
        tokens: int | None = None,
        listed: tuple[str, ...] | None = None,
    ) -> ProbeOutcome:
        return cls(True, http_status=http_status, tokens=tokens, listed=listed)

    @classmethod
    def fail(
        cls,
        failure: FailureKind,
        error: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
        sent: bool = True,
    ) -> ProbeOutcome:
        return cls(
            False,
            http_status=http_status,
            error=_shorten(error),
            failure=failure,
            retry_after=retry_after,
            sent=sent,
        )


@runtime_checkable
class Adapter(Protocol):
    """What the checker needs of an adapter.

    ``check_health`` may take as long as it likes and may raise anything: the
    checker bounds it with a deadline and turns every exception into an
    unhealthy result for this adapter alone. It must let ``trio.Cancelled``
    propagate (never catch ``BaseException`` without re-raising it).
    """

    @property
    def provider(self) -> str:
        """The provider's name, unique within its model."""
        ...

    @property
    def adapter_name(self) -> str:
        """A name for log lines, e.g. ``OpenAIAdapter``."""
        ...

    async def check_health(self) -> ProbeOutcome: ...


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # HTTP-date form: rare from LLM providers, not worth a parser
    if not (math.isfinite(seconds) and seconds >= 0):
        return None
    # A daily quota says "come back tomorrow": keep it (capped at a week, so
    # the number stays sane); the checker caps how long it honours it.
    return min(seconds, 604_800.0)


def _upstream_message(body: bytes) -> str:
    """The provider's own error text if the body has the usual shapes, else the raw text."""
    text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("msg") or err.get("code")
            if isinstance(msg, str | int):
                return str(msg)
        elif isinstance(err, str):
            return err
    return text


def _upstream_code(body: bytes) -> str | None:
    """The provider's machine-readable error code (``error.code``, or ``code`` of a flat error)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    err = data.get("error", data) if isinstance(data, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    return code if isinstance(code, str) else None


#: What a probe's answer is judged by: its JSON body, its bytes (an audio
#: answer), or its status alone (``probe_path``: a health URL's body is its own).
AnswerKind = Literal["json", "binary", "status"]


def is_wildcard(model: str) -> bool:
    """``model = "*"`` (whatever the provider serves) or a pattern such as ``"claude-3-*"``."""
    return WILDCARD in model


def wildcard_matches(pattern: str, model_id: str) -> bool:
    """Whether ``model_id`` is one of ``pattern``'s models: ``*`` stands for any characters."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split(WILDCARD))), model_id) is not None


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: where ``probe_path`` is resolved."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class HttpAdapter:
    """Base for adapters that probe a provider's HTTP API.

    Subclasses set ``adapter_name`` and ``modes`` and implement
    :meth:`free_request` / :meth:`judge_free` (the provider's model list or
    lookup) and :meth:`paid_request` / :meth:`judge_paid` (each mode's cheapest
    real call), with :meth:`auth_headers`. Everything else — ``probe_path``,
    extra headers, ``expect_status``, the capped body read, status and error
    classification, redaction — lives here once, for every provider. (A
    subclass may still override :meth:`build_request` and :meth:`judge` whole.)

    The HTTP client is bound by the owning manager when it opens
    (:meth:`bind_client`), so the manager alone decides how connections are
    pooled and when they close.
    """

    adapter_name: ClassVar[str] = "HttpAdapter"
    #: Where the provider's public API lives; None means ``base_url`` is required.
    default_base_url: ClassVar[str | None] = None
    #: Whether config must supply a key (local servers usually need none).
    key_required: ClassVar[bool] = False
    #: The provider-specific config keys this type reads (strings, passed in
    #: ``options``); the config parser accepts them for this type only.
    option_keys: ClassVar[frozenset[str]] = frozenset()
    #: The modes (``adapters.modes.MODES``) this type can probe; config naming
    #: another is an error that lists these.
    modes: ClassVar[frozenset[str]] = frozenset({DEFAULT_MODE})
    #: Whether the free probe can list (or look up) models. A type without
    #: one needs ``probe_path`` or ``probe = "completion"``.
    lists_models: ClassVar[bool] = True
    #: The error codes (``error.code``) by which a 404 says the model does not exist,
    #: when the message need not name it (Azure's ``DeploymentNotFound``).
    model_missing_codes: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        model: str,
        api_key: Secret | None = None,
        probe: str = "models",
        verify_model: bool = True,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        timeout: float | None = None,
        options: Mapping[str, str] | None = None,
        mode: str = DEFAULT_MODE,
        reasoning: bool | None = None,
        probe_model: str | None = None,
        max_tokens: int | None = None,
        probe_path: str | None = None,
        headers: Mapping[str, Secret | str] | None = None,
        expect_status: Collection[int] | None = None,
        allow_image_probe: bool = False,
    ) -> None:
        if mode not in self.modes:
            raise ValueError(
                f"{type(self).__name__} cannot probe mode {mode!r}; "
                f"its modes: {', '.join(sorted(self.modes))}"
            )
        if probe_path is not None and not probe_path.startswith("/"):
            raise ValueError(f"probe_path must start with '/', got {probe_path!r}")
        self.provider = provider
        self.timeout = timeout  # overrides the checker's adapter_timeout when set
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.probe = probe
        self.verify_model = verify_model
        self.max_body_bytes = max_body_bytes
        self.options: dict[str, str] = dict(options or {})
        self.mode = mode
        #: True/False as configured; None: decided from the model id.
        self.reasoning = reasoning
        self.probe_model = probe_model
        self.max_tokens = max_tokens
        self.probe_path = probe_path
        #: Sent on every probe; the values are secrets (tokens, tenant ids), held as such.
        self.extra_headers: dict[str, Secret] = {
            name: value if isinstance(value, Secret) else Secret(value)
            for name, value in (headers or {}).items()
        }
        self.expect_status: frozenset[int] = frozenset(expect_status or ())
        self.allow_image_probe = allow_image_probe
        self._client: ProbeTransport | None = None

    def __repr__(self) -> str:
        # Deliberately lists no key and no header value (Secret hides them anyway).
        return (
            f"{type(self).__name__}(provider={self.provider!r}, base_url={self.base_url!r}, "
            f"model={self.model!r}, probe={self.probe!r}, mode={self.mode!r})"
        )

    def bind_client(self, client: ProbeTransport | None) -> None:
        """Give this adapter its transport (the manager does this), or take it away."""
        self._client = client

    # -- what the probe is about -------------------------------------------------

    @property
    def wildcard(self) -> bool:
        """``model = "*"`` or a pattern: check the provider, report the listed models that match."""
        return is_wildcard(self.model)

    @property
    def probe_model_id(self) -> str:
        """The model a paid probe calls: ``probe_model`` (a cheaper sibling) or ``model``."""
        return self.probe_model or self.model

    @property
    def is_reasoning(self) -> bool:
        if self.reasoning is not None:
            return self.reasoning
        return is_reasoning_model(self.probe_model_id)

    @property
    def output_tokens(self) -> int:
        """The paid probe's output budget: ``max_tokens``, else 1 (64 for a reasoning model)."""
        if self.max_tokens is not None:
            return self.max_tokens
        return REASONING_MAX_TOKENS if self.is_reasoning else 1

    @property
    def secrets(self) -> tuple[Secret, ...]:
        """Every secret this adapter sends: masked in whatever text leaves it."""
        return tuple(s for s in (self.api_key, *self.extra_headers.values()) if s)

    # -- what subclasses provide -------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """The provider's auth headers (Bearer unless a subclass says otherwise)."""
        return self.bearer_headers()

    def free_request(self) -> ProbeRequest:
        """The free probe: the provider's model list or lookup."""
        raise NotImplementedError

    def paid_request(self) -> ProbeRequest:
        """The paid probe: this mode's cheapest real call."""
        raise NotImplementedError

    def judge_free(self, data: Any) -> ProbeOutcome:
        raise NotImplementedError

    def judge_paid(self, data: Any) -> ProbeOutcome:
        raise NotImplementedError

    def answer_kind(self) -> AnswerKind:
        """How the answer to this probe is judged (see :data:`AnswerKind`)."""
        if self.probe_path is not None and self.probe != "completion":
            return "status"
        return "json"

    def judge_binary(self, headers: Mapping[str, str], body: bytes) -> ProbeOutcome:
        """Decide health from a 2xx answer that is not JSON (generated audio)."""
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if not body:
            return self.bad_body("an empty answer where audio was expected")
        if content_type in ("application/json", "text/html", "text/plain"):
            return self.bad_body(f"expected audio, got {self._scrub(content_type, 60)}")
        return ProbeOutcome.ok()

    # -- the request and the verdict ---------------------------------------------

    def build_request(self) -> ProbeRequest:
        if self.answer_kind() == "status":
            assert self.probe_path is not None
            request = ProbeRequest(
                "GET", origin_of(self.base_url) + self.probe_path, headers=self.auth_headers()
            )
        elif self.probe == "completion":
            request = self.paid_request()
        else:
            request = self.free_request()
        return self._with_extra_headers(request)

    def judge(self, data: Any) -> ProbeOutcome:
        """Decide health from a 2xx answer's parsed JSON body."""
        if self.probe == "completion":
            return self.judge_paid(data)
        return self.judge_free(data)

    def _with_extra_headers(self, request: ProbeRequest) -> ProbeRequest:
        if not self.extra_headers:
            return request
        extra = {name: value.reveal() for name, value in self.extra_headers.items()}
        # Configured headers win, whatever their case ("authorization" replaces ours).
        replaced = {name.lower() for name in extra}
        kept = {n: v for n, v in request.headers.items() if n.lower() not in replaced}
        return dataclasses.replace(request, headers={**kept, **extra})

    # -- shared helpers for subclasses ---------------------------------------

    def bearer_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key.reveal()}"} if self.api_key else {}

    def model_listed(self, ids: Iterable[str], *, listed_as: str = "model list") -> ProbeOutcome:
        if self.wildcard:
            id_set = set(ids)
            matching = sorted(i for i in id_set if wildcard_matches(self.model, i))
            if not matching and self.model != WILDCARD:
                return ProbeOutcome.fail(
                    FailureKind.MODEL_MISSING,
                    f"no model in the provider's {listed_as} ({len(id_set)} entries) "
                    f"matches {self.model!r}",
                )
            return ProbeOutcome.ok(listed=tuple(matching)[:MAX_LISTED])
        if not self.verify_model:
            return ProbeOutcome.ok()
        id_set = set(ids)
        if self.model in id_set:
            return ProbeOutcome.ok()
        return ProbeOutcome.fail(
            FailureKind.MODEL_MISSING,
            f"model {self.model!r} is not in the provider's {listed_as} "
            f"({len(id_set)} entries); set verify_model = false if it is an alias",
        )

    def failure_kind(self, status: int, message: str) -> FailureKind:
        """Classify a non-2xx answer; providers with their own conventions override this."""
        if status in (401, 403):
            return FailureKind.AUTH
        if status == 429:
            return FailureKind.RATE_LIMITED
        if status == 404 and self.names_model(message):
            # Providers' "no such model" 404s name it; any other 404 (a base_url
            # without /v1: "Invalid URL (GET /models)") is a wrong URL, not a model.
            return FailureKind.MODEL_MISSING
        return FailureKind.HTTP_STATUS

    def names_model(self, message: str, *others: str) -> bool:
        """Whether ``message`` names the probed model (or one of ``others``) as a whole id."""
        ids = {m for m in (self.model, self.probe_model_id, *others) if m and not is_wildcard(m)}
        return any(
            # Not inside a longer id: "gpt-4" is not named by "gpt-4o" or "gpt-4.1".
            re.search(rf"(?<![\w.-]){re.escape(model_id)}(?![\w-]|[.:/]\w)", message)
            for model_id in ids
        )

    @staticmethod
    def bad_body(what: str) -> ProbeOutcome:
        return ProbeOutcome.fail(FailureKind.BAD_BODY, f"unexpected response body: {what}")

    # -- the probe -----------------------------------------------------------

    async def check_health(self) -> ProbeOutcome:
        if self._client is None:
            return ProbeOutcome.fail(
                FailureKind.NOT_OPEN,
                "HTTP client not open: use the AdapterManager as `async with manager:`",
            )
        # The request is not kept in a local: the transport may let it go while the probe waits.
        fetching = self._client.fetch(self.build_request(), max_body_bytes=self.max_body_bytes)
        try:
            response = await fetching
        except TransportError as exc:
            return ProbeOutcome.fail(_transport_failure(exc), self._scrub(str(exc)))
        return self._classify(response)

    def _status_ok(self, status: int) -> bool:
        return status in self.expect_status if self.expect_status else 200 <= status < 300

    def _classify(self, response: RawResponse) -> ProbeOutcome:
        status, headers = response.status, response.headers
        kind = self.answer_kind()
        status_ok = self._status_ok(status)
        if kind == "status" and status_ok:
            return ProbeOutcome.ok(status)  # a health URL's body is not ours to judge
        # The raw read skipped content decoding; decode here once, with the same cap.
        body = (
            None
            if response.truncated
            else _decode_body(
                response.body, headers.get("content-encoding"), self.max_body_bytes
            )
        )
        if body is None and kind == "status":
            body = b""  # judged by its status alone: a long error page changes nothing
        if body is None:
            return ProbeOutcome.fail(
                FailureKind.BODY_TOO_LARGE,
                f"response body larger than {self.max_body_bytes} bytes (HTTP {status})",
                http_status=status,
            )
        if not status_ok:
            if 200 <= status < 300:  # a success expect_status does not list
                wanted = ", ".join(str(s) for s in sorted(self.expect_status))
                return ProbeOutcome.fail(
                    FailureKind.HTTP_STATUS,
                    f"HTTP {status}, expected {wanted} (expect_status)",
                    http_status=status,
                )
            message = self._scrub(_upstream_message(body)) or "(empty body)"
            retry_after = _retry_after(headers)
            missing = status == 404 and _upstream_code(body) in self.model_missing_codes
            return ProbeOutcome.fail(
                FailureKind.MODEL_MISSING if missing else self.failure_kind(status, message),
                f"HTTP {status}: {message}",
                http_status=status,
                retry_after=retry_after,
            )
        if kind == "binary":
            verdict = self.judge_binary(headers, body)
            return dataclasses.replace(verdict, http_status=status)
        try:
            data = json.loads(body)
        except ValueError:
            # The whole body is redacted before any of it is cut: a cut first
            # could leave a key's start that redaction no longer recognises.
            text = body.decode("utf-8", errors="replace")
            snippet = self._scrub(text, _MAX_SNIPPET_CHARS)
            content_type = self._scrub(headers.get("content-type", "unknown content type"), 60)
            return ProbeOutcome.fail(
                FailureKind.BAD_BODY,
                f"HTTP {status} body is not JSON ({content_type}): {snippet!r}",
                http_status=status,
            )
        verdict = self.judge(data)
        # judge() does not see the status; attach it so every result carries it.
        return ProbeOutcome(
            verdict.healthy,
            http_status=status,
            error=self._scrub(verdict.error) if verdict.error else None,
            failure=verdict.failure,
            retry_after=verdict.retry_after,
            tokens=verdict.tokens,
            listed=verdict.listed,
        )

    def _scrub(self, text: str, limit: int = _MAX_ERROR_CHARS) -> str:
        return scrub(text, self.secrets, limit)


def _decode_body(raw: bytes, encoding: str | None, limit: int) -> bytes | None:
    """Undo gzip/deflate with the same cap as the raw read (no zip bombs).

    Returns None when the decoded body would pass ``limit``. We ask for
    ``identity`` encoding, so this only runs for upstreams that ignore that.
    """
    if not encoding or encoding == "identity":
        return raw
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding.lower())
    if wbits is None:
        return raw
    try:
        inflater = zlib.decompressobj(wbits)
        body = inflater.decompress(raw, limit + 1)
    except zlib.error:
        return raw  # judged as a non-JSON body by the caller
    return None if len(body) > limit else body


_RESOURCE_ERRNOS = {23, 24, 105}  # ENFILE, EMFILE, ENOBUFS


def _transport_failure(exc: BaseException) -> FailureKind:
    """CONNECT, unless the cause is our own process running out of sockets.

    The OSError sits somewhere down the cause chain (Trio's connect reports
    each failed attempt in a group): EMFILE and friends say nothing about the
    provider and deserve a re-check one at a time.
    """
    todo: list[BaseException] = [exc]
    for _ in range(20):
        if not todo:
            break
        seen = todo.pop()
        if isinstance(seen, OSError) and seen.errno in _RESOURCE_ERRNOS:
            return FailureKind.RESOURCE
        if isinstance(seen, BaseExceptionGroup):
            todo.extend(seen.exceptions)
        cause = seen.__cause__ or seen.__context__
        if cause is not None:
            todo.append(cause)
    return FailureKind.CONNECT

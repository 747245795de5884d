"""The adapter protocol and the one HTTP helper every provider adapter uses.

An *adapter* is one model -> provider pair of an AI router. The checker only
knows adapters through :class:`Adapter`: an object with a ``provider`` name, an
``adapter_name`` for log lines, and an async ``check_health()`` returning a
:class:`ProbeOutcome`.

Deadlines are *not* enforced here: the checker wraps every ``check_health()`` in
a Trio cancel scope, which cancels the whole request, headers and body read
included (httpx's own timeouts are per read, so a body trickled byte by byte
would never trip them). What this module does guarantee is that a body is read
with a size cap, that upstream text is shortened and stripped of secrets before
it becomes an error message, and that the probe's wire-format check (what a
healthy answer looks like) stays apart from transport and scheduling.
"""

from __future__ import annotations

import enum
import json
import re
import ssl
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Protocol, runtime_checkable
from urllib.parse import quote, urlencode, urlsplit

import h11
import httpx
import trio

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "Adapter",
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
    "redact",
]

#: Health answers are small (a models list is a few KB, Ollama's tags maybe
#: 100 KB); anything past this is a misbehaving upstream, not a health answer.
DEFAULT_MAX_BODY_BYTES = 1 << 20

#: Longest upstream text kept in an error message.
_MAX_ERROR_CHARS = 200


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or f-strings.

    API keys travel through config objects, adapters and error paths; wrapping
    them means an accidental ``print(config)`` or log line cannot leak one.
    Call :meth:`reveal` at the one place the raw value is needed (a header).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:  # pickling would write the key to disk in clear
        raise TypeError("Secret values cannot be pickled")


# Shapes of provider keys, redacted even when they are not *our* key (an
# upstream echoing some other key back in an error body is still a leak).
_KEY_PATTERNS = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|sk-ant-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._\-]{8,})"
)


def redact(text: str, secrets: Iterable[Secret | str | None] = ()) -> str:
    """Return ``text`` with every known secret and key-shaped token masked."""
    for secret in secrets:
        raw = secret.reveal() if isinstance(secret, Secret) else secret
        if raw and len(raw) >= 4:
            text = text.replace(raw, "***")
    return _KEY_PATTERNS.sub("***", text)


def _shorten(text: str, limit: int = _MAX_ERROR_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """What one ``check_health()`` call concluded. Timing is the checker's job."""

    healthy: bool
    http_status: int | None = None
    error: str | None = None
    failure: FailureKind | None = None
    retry_after: float | None = None  # seconds, from a 429/503 Retry-After header

    @classmethod
    def ok(cls, http_status: int | None = None) -> ProbeOutcome:
        return cls(True, http_status=http_status)

    @classmethod
    def fail(
        cls,
        failure: FailureKind,
        error: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> ProbeOutcome:
        return cls(
            False,
            http_status=http_status,
            error=_shorten(error),
            failure=failure,
            retry_after=retry_after,
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


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    """One HTTP request that a provider adapter sends as its probe."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    json_body: Any = None


# -- transports: how a ProbeRequest reaches the provider ----------------------


class TransportError(Exception):
    """The exchange failed below HTTP: refused, reset, TLS, a malformed answer.

    The message is for the user (what failed, where); the original error is
    the ``__cause__``, which :func:`_transport_failure` inspects for local
    resource exhaustion.
    """


@dataclass(frozen=True, slots=True)
class RawResponse:
    """An answer as read off the wire: ``headers`` has lower-case names."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    truncated: bool  # the body passed the cap; ``body`` is then empty


@runtime_checkable
class ProbeTransport(Protocol):
    """Sends one adapter's probes; the manager creates, binds and closes it.

    ``fetch`` must read at most ``max_body_bytes`` of the body, and must let a
    cancellation (the checker's deadline) end the exchange at any point,
    closing whatever connection it was using.
    """

    async def fetch(self, request: ProbeRequest, *, max_body_bytes: int) -> RawResponse: ...

    async def aclose(self) -> None: ...


class ConnectionBudget:
    """Caps the sockets open at once across every :class:`HttpConnection` sharing it.

    A socket holds a slot from the moment it is opened until it is closed,
    idle keep-alive sockets included, so the process cannot run out of file
    descriptors whatever the number of adapters. When no slot is free, the
    least recently used idle socket is closed to make one; when none is idle,
    the opener waits (and that wait counts against the probe's deadline,
    like any other delay).
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a connection budget needs at least 1 slot, got {limit}")
        self.limit = limit
        self._slots = trio.Semaphore(limit)
        self._idle: dict[HttpConnection, None] = {}  # insertion order = least recently idle first
        self.evicted = 0

    def statistics(self) -> dict[str, int]:
        waiting = self._slots.statistics().tasks_waiting
        return {
            "limit": self.limit,
            "open": self.limit - self._slots.value,
            "idle": len(self._idle),
            "waiting": waiting,
            "evicted": self.evicted,
        }

    async def acquire(self) -> None:
        while self._slots.value == 0 and self._idle:
            victim = next(iter(self._idle))
            self.evicted += 1
            await victim.drop_idle()  # releases the slot
        await self._slots.acquire()

    def release(self) -> None:
        self._slots.release()

    def wants_slots(self) -> bool:
        """Someone is waiting for a slot: do not keep a socket idle now."""
        return self._slots.statistics().tasks_waiting > 0

    def mark_idle(self, connection: HttpConnection, idle: bool) -> None:
        if idle:
            self._idle[connection] = None
        else:
            self._idle.pop(connection, None)


_Origin = tuple[str, str, int]  # scheme, host, port
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# What httpx leaves unescaped in a path: RFC 3986 pchar plus "/" and "%".
_PATH_SAFE: Final = "/%:@!$&'()*+,;=-._~"
_RECEIVE_SIZE: Final = 65536
_USER_AGENT: Final = "router-health"


class _StaleConnection(Exception):
    """A reused keep-alive socket turned out to be closed before any answer."""


class HttpConnection:
    """HTTP/1.1 over a Trio socket (TLS for ``https``): one adapter's transport.

    Why not an ``httpx.AsyncClient``: measured at 1,000 concurrent probes on
    loopback, the httpx client + httpcore pool path costs about 0.65 ms of CPU
    per probe and this one about 0.15 ms (benchmarks/RESULTS.md). The
    exchange is plain: one request, the body read with a cap, no redirects,
    no cookies, ``identity`` encoding asked for.

    The socket is kept open between probes (the provider answers the next
    probe without a new TCP and TLS handshake) unless ``keep_alive`` is off.
    A probe that finds the kept socket closed by the server retries once on a
    fresh one. Overlapping probes of the same adapter each get a socket; only
    one is kept. Cancellation at any point closes the socket in use.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        budget: ConnectionBudget | None = None,
        keep_alive: bool = True,
    ) -> None:
        self._ssl_context = ssl_context
        self._budget = budget
        self._keep_alive = keep_alive
        self._idle: tuple[_Origin, trio.abc.Stream] | None = None
        self._closed = False
        self.connections_opened = 0

    async def fetch(self, request: ProbeRequest, *, max_body_bytes: int) -> RawResponse:
        if self._closed:
            raise TransportError("the connection was closed by its manager")
        origin, target, host_header = _split_url(request.url, request.params)
        head, body = _request_head(request, target, host_header)
        stream = await self._take_idle(origin)
        if stream is not None:
            try:
                return await self._exchange(origin, stream, head, body, max_body_bytes, reused=True)
            except _StaleConnection:
                pass  # the server closed it while idle: once more on a fresh socket
        stream = await self._connect(origin)
        return await self._exchange(origin, stream, head, body, max_body_bytes, reused=False)

    async def aclose(self) -> None:
        self._closed = True
        await self.drop_idle()

    async def drop_idle(self) -> None:
        """Close the kept socket, if any."""
        if self._idle is not None:
            _, stream = self._idle
            self._idle = None
            if self._budget is not None:
                self._budget.mark_idle(self, False)
            await self._close(stream)

    # -- sockets ----------------------------------------------------------------

    async def _take_idle(self, origin: _Origin) -> trio.abc.Stream | None:
        if self._idle is None:
            return None
        kept_origin, stream = self._idle
        self._idle = None
        if self._budget is not None:
            self._budget.mark_idle(self, False)
        if kept_origin != origin or _socket_of(stream).is_readable():
            # Readable while idle means EOF or junk: the server has let it go.
            await self._close(stream)
            return None
        return stream

    async def _connect(self, origin: _Origin) -> trio.abc.Stream:
        scheme, host, port = origin
        if self._budget is not None:
            await self._budget.acquire()
        try:
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
            if scheme == "https":
                tls = trio.SSLStream(
                    stream,
                    self._ssl_context or ssl.create_default_context(),
                    server_hostname=host,
                    https_compatible=True,
                )
                try:
                    await tls.do_handshake()
                except BaseException:
                    await trio.aclose_forcefully(stream)
                    raise
                stream = tls
        except BaseException as exc:
            if self._budget is not None:
                self._budget.release()
            if isinstance(exc, OSError | trio.BrokenResourceError):
                raise TransportError(
                    f"cannot connect to {host}:{port}: {_cause_text(exc)}"
                ) from exc
            raise
        self.connections_opened += 1
        return stream

    async def _close(self, stream: trio.abc.Stream) -> None:
        try:
            await trio.aclose_forcefully(stream)
        finally:
            if self._budget is not None:
                self._budget.release()

    def _keep(self, origin: _Origin, stream: trio.abc.Stream) -> bool:
        if (
            not self._keep_alive
            or self._closed
            or self._idle is not None
            or (self._budget is not None and self._budget.wants_slots())
        ):
            return False
        self._idle = (origin, stream)
        if self._budget is not None:
            self._budget.mark_idle(self, True)
        return True

    # -- one exchange ----------------------------------------------------------

    async def _exchange(
        self,
        origin: _Origin,
        stream: trio.abc.Stream,
        head: h11.Request,
        body: bytes,
        max_body_bytes: int,
        *,
        reused: bool,
    ) -> RawResponse:
        conn = h11.Connection(h11.CLIENT)
        received_any = False
        keep = False
        try:
            try:
                data = conn.send(head)
                if body:
                    data += conn.send(h11.Data(data=body))
                data += conn.send(h11.EndOfMessage())
                await stream.send_all(data)
                status = 0
                headers: dict[str, str] = {}
                chunks: list[bytes] = []
                size = 0
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        received = await stream.receive_some(_RECEIVE_SIZE)
                        received_any = received_any or bool(received)
                        conn.receive_data(bytes(received))
                    elif isinstance(event, h11.Response):
                        status = event.status_code
                        headers = {
                            name.decode("latin-1"): value.decode("latin-1")
                            for name, value in event.headers
                        }
                    elif isinstance(event, h11.Data):
                        size += len(event.data)
                        if size > max_body_bytes:
                            return RawResponse(status, headers, b"", True)
                        chunks.append(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
                        raise h11.RemoteProtocolError("connection closed before an answer")
                    # InformationalResponse (100 Continue...): wait for the real one.
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError) as exc:
                if reused and not received_any:
                    raise _StaleConnection from exc
                raise TransportError(
                    f"{origin[1]}:{origin[2]}: {_cause_text(exc)}"
                ) from exc
            keep = conn.our_state is h11.DONE and conn.their_state is h11.DONE
            return RawResponse(status, headers, b"".join(chunks), False)
        finally:
            # On every exit (cancellation included) the socket is either kept
            # whole for the next probe or closed now.
            if not (keep and self._keep(origin, stream)):
                await self._close(stream)


def _split_url(url: str, params: Mapping[str, str]) -> tuple[_Origin, bytes, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise TransportError(f"cannot probe {url!r}: only http:// and https:// URLs are supported")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise TransportError(f"bad port in {url!r}") from exc
    host = parts.hostname
    shown_host = f"[{host}]" if ":" in host else host
    host_header = shown_host if port == _DEFAULT_PORTS[scheme] else f"{shown_host}:{port}"
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    target = quote(parts.path or "/", safe=_PATH_SAFE) + (f"?{query}" if query else "")
    return (scheme, host, port), target.encode("ascii"), host_header


def _request_head(request: ProbeRequest, target: bytes, host_header: str) -> tuple[h11.Request, bytes]:
    body = b""
    headers = [
        ("Host", host_header),
        ("User-Agent", _USER_AGENT),
        ("Accept", "*/*"),
        ("Accept-Encoding", "identity"),
    ]
    if request.json_body is not None:
        body = json.dumps(request.json_body, separators=(",", ":")).encode()
        headers.append(("Content-Type", "application/json"))
    if body or request.method in ("POST", "PUT", "PATCH"):
        headers.append(("Content-Length", str(len(body))))
    given = {name.lower() for name in request.headers}
    headers = [(n, v) for n, v in headers if n.lower() not in given]
    headers.extend(request.headers.items())
    return h11.Request(method=request.method, target=target, headers=headers), body


def _socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType:
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    assert isinstance(stream, trio.SocketStream)
    return stream.socket


def _cause_text(exc: BaseException) -> str:
    """The most telling text of an error chain ("Connection refused", not "all attempts failed")."""
    todo: list[BaseException] = [exc]
    first = ""
    for _ in range(20):
        if not todo:
            break
        seen = todo.pop()
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        first = first or (f"{type(seen).__name__}: {seen}" if str(seen) else "")
        if isinstance(seen, BaseExceptionGroup):
            todo.extend(seen.exceptions)
        cause = seen.__cause__ or seen.__context__
        if cause is not None:
            todo.append(cause)
    return first or type(exc).__name__


class HttpxTransport:
    """An ``httpx.AsyncClient`` as a transport: the path for probes behind a proxy.

    :class:`HttpConnection` speaks to the provider directly; when the
    environment names a proxy for a provider's URL (``HTTPS_PROXY``,
    ``ALL_PROXY``... minus ``NO_PROXY``), the manager gives that adapter this
    transport instead, and httpx handles the proxy.
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def fetch(self, request: ProbeRequest, *, max_body_bytes: int) -> RawResponse:
        built = self.client.build_request(
            request.method,
            request.url,
            headers={"Accept-Encoding": "identity", **request.headers},
            params=dict(request.params) or None,
            json=request.json_body,
        )
        try:
            response = await self.client.send(built, stream=True)
            try:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_raw():
                    size += len(chunk)
                    if size > max_body_bytes:
                        return RawResponse(response.status_code, response.headers, b"", True)
                    chunks.append(chunk)
                return RawResponse(response.status_code, response.headers, b"".join(chunks), False)
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc or type(exc).__name__}") from exc

    async def aclose(self) -> None:
        await self.client.aclose()


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # HTTP-date form: rare from LLM providers, not worth a parser
    return seconds if 0 <= seconds < 86_400 else None


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


class HttpAdapter:
    """Base for adapters that probe a provider's HTTP API.

    Subclasses set ``adapter_name`` and implement :meth:`build_request` (the
    provider's path, auth headers and query) and :meth:`judge` (what a healthy
    body looks like). Everything else — the capped body read, status and error
    classification, redaction — lives here once, for every provider.

    The HTTP client is bound by the owning manager when it opens
    (:meth:`bind_client`), so the manager alone decides how connections are
    pooled and when they close.
    """

    adapter_name: ClassVar[str] = "HttpAdapter"
    #: Where the provider's public API lives; None means ``base_url`` is required.
    default_base_url: ClassVar[str | None] = None
    #: Whether config must supply a key (local servers usually need none).
    key_required: ClassVar[bool] = False

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
    ) -> None:
        self.provider = provider
        self.timeout = timeout  # overrides the checker's adapter_timeout when set
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.probe = probe
        self.verify_model = verify_model
        self.max_body_bytes = max_body_bytes
        self.options: dict[str, str] = dict(options or {})
        self._client: ProbeTransport | None = None

    def __repr__(self) -> str:
        # Deliberately lists no key (Secret hides it anyway; belt and braces).
        return (
            f"{type(self).__name__}(provider={self.provider!r}, base_url={self.base_url!r}, "
            f"model={self.model!r}, probe={self.probe!r})"
        )

    def bind_client(self, client: ProbeTransport | None) -> None:
        """Give this adapter its transport (the manager does this), or take it away."""
        self._client = client

    # -- what subclasses provide -------------------------------------------

    def build_request(self) -> ProbeRequest:
        raise NotImplementedError

    def judge(self, data: Any) -> ProbeOutcome:
        """Decide health from a 2xx answer's parsed JSON body."""
        raise NotImplementedError

    # -- shared helpers for subclasses ---------------------------------------

    def bearer_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key.reveal()}"} if self.api_key else {}

    def model_listed(self, ids: Iterable[str], *, listed_as: str = "model list") -> ProbeOutcome:
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
        return FailureKind.HTTP_STATUS

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
        request = self.build_request()
        try:
            response = await self._client.fetch(request, max_body_bytes=self.max_body_bytes)
        except TransportError as exc:
            return ProbeOutcome.fail(_transport_failure(exc), self._scrub(str(exc)))
        return self._classify(response)

    def _classify(self, response: RawResponse) -> ProbeOutcome:
        status, headers = response.status, response.headers
        # The raw read skipped content decoding; decode here once, with the same cap.
        body = (
            None
            if response.truncated
            else _decode_body(
                response.body, headers.get("content-encoding"), self.max_body_bytes
            )
        )
        if body is None:
            return ProbeOutcome.fail(
                FailureKind.BODY_TOO_LARGE,
                f"response body larger than {self.max_body_bytes} bytes (HTTP {status})",
                http_status=status,
            )
        if not 200 <= status < 300:
            message = self._scrub(_upstream_message(body)) or "(empty body)"
            retry_after = _retry_after(headers)
            return ProbeOutcome.fail(
                self.failure_kind(status, message),
                f"HTTP {status}: {message}",
                http_status=status,
                retry_after=retry_after,
            )
        try:
            data = json.loads(body)
        except ValueError:
            snippet = self._scrub(body[:80].decode("utf-8", errors="replace"))
            content_type = headers.get("content-type", "unknown content type")
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
        )

    def _scrub(self, text: str) -> str:
        return _shorten(redact(text, [self.api_key]))


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

"""How a probe reaches the provider: one HTTP/1.1 exchange with a capped body read.

Each HTTP adapter owns one :class:`ProbeTransport`, created and closed by the
manager. The default, :class:`HttpConnection`, speaks HTTP/1.1 with ``h11``
over one Trio socket (TLS through ``trio.SSLStream``) kept alive between runs:
measured at 1,000 concurrent probes it costs about a third of the CPU of an
httpx client per adapter, and a shared pool is far worse (see
benchmarks/RESULTS.md). Adapters behind a proxy get :class:`HttpxTransport`,
so proxy environments keep working. Every socket is bounded by one
:class:`ConnectionBudget`, so no fleet can exhaust file descriptors.

Deadlines are not enforced here: the checker's Trio cancel scope ends the
exchange at any point, and the transport closes the socket it was using.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import quote, urlencode, urlsplit

import h11
import httpx
import trio

__all__ = [
    "ConnectionBudget",
    "HttpConnection",
    "HttpxTransport",
    "ProbeRequest",
    "ProbeTransport",
    "RawResponse",
    "TransportError",
]


#: No query parameters: one shared (read-only) mapping, not an empty dict per request.
_NO_PARAMS: Final[Mapping[str, str]] = MappingProxyType({})


def _no_params() -> Mapping[str, str]:
    return _NO_PARAMS


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    """One HTTP request that a provider adapter sends as its probe.

    The body is ``json_body`` (sent as JSON) or ``content`` (raw bytes with
    its ``content_type``, e.g. a multipart upload), never both.
    """

    method: str
    url: str
    #: Carry keys in clear (Authorization, x-api-key...): never in the repr.
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    params: Mapping[str, str] = field(default_factory=_no_params, repr=False)
    json_body: Any = None
    content: bytes | None = None
    content_type: str | None = None

    def __post_init__(self) -> None:
        if self.content is not None and self.json_body is not None:
            raise ValueError("a probe request has a JSON body or raw content, not both")


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
    like any other delay), and sockets that finish meanwhile are closed
    rather than kept, so the waiters get their slots.
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


@dataclass(frozen=True, slots=True, repr=False)
class _Prepared:
    """A request as it goes on the wire, kept while its adapter sends the same one.

    Its first six fields are copies of what the request was made of (the
    body as the bytes sent), so an adapter that changes a header or a
    mapping it keeps gets a new one, never a stale one. What it keeps is
    small, since a fleet keeps one per adapter: the bytes to send, the
    origin (shared by the adapters of one host), and the head h11 is told
    it sent when an answer needs h11 to read it (:func:`_state_head`, shared
    too) rather than the request's own parsed head. Its headers and
    ``wire`` carry the key in clear: the repr shows neither.
    """

    def __repr__(self) -> str:
        return f"_Prepared({self.method} {self.origin!r})"

    method: str
    url: str
    headers: Mapping[str, str]
    params: Mapping[str, str]
    body: bytes
    content_type: str | None
    origin: _Origin
    #: What h11 must have seen sent to read the answer (see :func:`_state_head`).
    state: h11.Request
    #: The bytes h11 writes for it (None: h11 refuses to, and says why at each probe).
    wire: bytes | None
    #: Whether h11's side is DONE once it is sent (no ``Connection: close`` in it).
    keeps_alive: bool

    def matches(self, request: ProbeRequest, body: bytes) -> bool:
        return (
            self.url == request.url
            and self.body == body
            and self.headers == request.headers
            and self.params == request.params
            and self.method == request.method
            and self.content_type == request.content_type
        )


#: Shared small values, so 10,000 adapters of one host keep one origin tuple and
#: one state head, not 10,000 (bounded: past the cap each keeps its own).
_SHARED_MAX: Final = 4096
_ORIGINS: Final[dict[_Origin, _Origin]] = {}
_STATE_HEADS: Final[dict[tuple[bytes, tuple[tuple[bytes, bytes], ...]], h11.Request]] = {}
#: The request headers h11's client side acts on (h11/_connection.py: keep-alive,
#: protocol switch, 100-continue, our body's framing); the rest it only writes.
_STATE_HEADERS: Final = frozenset(
    {b"connection", b"upgrade", b"expect", b"content-length", b"transfer-encoding"}
)


def _shared_origin(origin: _Origin) -> _Origin:
    kept = _ORIGINS.get(origin)
    if kept is not None:
        return kept
    if len(_ORIGINS) < _SHARED_MAX:
        _ORIGINS[origin] = origin
    return origin


def _state_head(head: h11.Request) -> h11.Request:
    """A head that leaves an h11 client exactly where sending ``head`` does.

    h11 reads an answer knowing the request's method and the headers in
    :data:`_STATE_HEADERS`; target, host, auth and the rest change nothing
    there. Sent (with the same body) on a fresh connection it puts h11 in
    the same state as the real head, for a fraction of the memory, shared
    by every adapter sending the same method and framing.
    """
    framing = tuple((name, value) for name, value in head.headers if name in _STATE_HEADERS)
    key = (head.method, framing)
    state = _STATE_HEADS.get(key)
    if state is None:
        state = h11.Request(method=head.method, target=b"/", headers=[(b"Host", b"_"), *framing])
        if len(_STATE_HEADS) < _SHARED_MAX:
            _STATE_HEADS[key] = state
    return state


class HttpConnection:
    """HTTP/1.1 over a Trio socket (TLS for ``https``): one adapter's transport.

    Why not an ``httpx.AsyncClient``: measured at 1,000 concurrent probes on
    loopback, a probe through an httpx client per adapter costs about 1.2 ms
    of CPU in all, through this about 0.4 ms (benchmarks/RESULTS.md). The
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
        self._prepared: _Prepared | None = None
        self.connections_opened = 0

    async def fetch(self, request: ProbeRequest, *, max_body_bytes: int) -> RawResponse:
        if self._closed:
            raise TransportError("the connection was closed by its manager")
        prepared = self._prepare(request)
        # Only a request h11 refuses is needed past here (to say why): let the
        # adapter's request go while the probe waits, the prepared one says it all.
        refused = request if prepared.wire is None else None
        del request
        origin = prepared.origin
        stream = await self._take_idle(origin)
        if stream is not None:
            try:
                return await self._exchange(
                    stream, refused, prepared, max_body_bytes, reused=True
                )
            except _StaleConnection:
                # The server closed it while idle. Once more on a fresh socket,
                # but never a POST: a billed completion must not be sent twice.
                if prepared.method not in ("GET", "HEAD"):
                    raise TransportError(
                        "the kept-alive connection was closed by the server; not retried "
                        f"({prepared.method} is not idempotent)"
                    ) from None
        stream = await self._connect(origin)
        return await self._exchange(stream, refused, prepared, max_body_bytes, reused=False)

    async def aclose(self) -> None:
        self._closed = True
        await self.drop_idle()

    def _prepare(self, request: ProbeRequest) -> _Prepared:
        """``request`` parsed, validated and serialised once while it repeats.

        An adapter sends the same probe every run; splitting its URL, building
        (validating) its h11 head and writing it each time was a fifth of a
        probe's CPU.
        """
        body = _body_of(request)
        prepared = self._prepared
        if prepared is not None and prepared.matches(request, body):
            return prepared
        self._prepared = None  # the old one is garbage now, whatever follows
        origin, target, host_header = _split_url(request.url, request.params)
        head = _request_head(request, target, host_header, body)
        conn = h11.Connection(h11.CLIENT)
        try:
            wire: bytes | None = _send_request(conn, head, body)
        except h11.ProtocolError:
            wire = None
        self._prepared = prepared = _Prepared(
            request.method,
            request.url,
            dict(request.headers),
            dict(request.params) if request.params else _NO_PARAMS,
            body,
            request.content_type,
            _shared_origin(origin),
            _state_head(head),
            wire,
            conn.our_state is h11.DONE,
        )
        return prepared

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
            stream: trio.abc.Stream = await _open_tcp(host, port)
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
        stream: trio.abc.Stream,
        refused: ProbeRequest | None,
        prepared: _Prepared,
        max_body_bytes: int,
        *,
        reused: bool,
    ) -> RawResponse:
        origin, state, body = prepared.origin, prepared.state, prepared.body
        conn: h11.Connection | None = None
        received_any = False
        keep = False
        try:
            try:
                # Plain TCP: the socket itself (see _write_some and _read).
                sock = stream.socket if type(stream) is trio.SocketStream else None
                wire = prepared.wire
                if wire is None:  # h11 refuses it: let it say why, as on every probe
                    assert refused is not None
                    _, target, host_header = _split_url(refused.url, refused.params)
                    head = _request_head(refused, target, host_header, body)
                    conn = h11.Connection(h11.CLIENT)
                    await stream.send_all(_send_request(conn, head, body))
                elif sock is None:
                    await stream.send_all(wire)
                else:
                    sent = _write_some(sock, wire)
                    if sent < len(wire):
                        await stream.send_all(memoryview(wire)[sent:])
                if sock is None:
                    received = bytes(await stream.receive_some(_RECEIVE_SIZE))
                else:
                    received = await _read(sock)
                received_any = bool(received)
                whole = _whole_response(received, state.method, max_body_bytes)
                if whole is not None:
                    status, headers, answer, keep_alive = whole
                    keep = keep_alive and prepared.keeps_alive
                    return RawResponse(status, headers, answer, False)
                if conn is None:
                    # h11 reads the rest: it learns what was sent (its bytes are out
                    # already), told through the shared head that leaves it in the same state.
                    conn = h11.Connection(h11.CLIENT)
                    _send_request(conn, state, body)
                conn.receive_data(received)
                status = 0
                headers = {}
                chunks: list[bytes] = []
                size = 0
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        if sock is None:
                            received = bytes(await stream.receive_some(_RECEIVE_SIZE))
                        else:
                            received = await _read(sock)
                        received_any = received_any or bool(received)
                        conn.receive_data(received)
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


def _ip_family(host: str) -> int | None:
    """AF_INET or AF_INET6 when ``host`` is an IP address as written, else None."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None


async def _open_tcp(host: str, port: int) -> trio.SocketStream:
    """A TCP stream to ``host``:``port``; an IP address is connected to directly.

    ``trio.open_tcp_stream`` resolves the name and races the addresses
    (happy eyeballs) in a nursery of its own: for an address there is
    nothing to resolve or race, and that machinery was the largest part of
    a fleet's peak memory (the first run opens every adapter's socket at
    once, about 5 KB each at 10,000). Errors are the same OSErrors.
    """
    family = _ip_family(host)
    if family is None:
        return await trio.open_tcp_stream(host, port)
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        await sock.connect((host, port))
    except BaseException as exc:
        sock.close()
        if isinstance(exc, OSError) and exc.errno:
            # Trio's text repeats the address the caller's message already names.
            raise OSError(exc.errno, os.strerror(exc.errno)) from exc
        raise
    return trio.SocketStream(sock)


def _write_some(sock: trio.socket.SocketType, data: bytes) -> int:
    """Write what the socket's buffer takes of ``data`` now, without a scheduler pass.

    A probe is a few hundred bytes into a socket that sends nothing else:
    it nearly always goes out whole, here. ``SocketStream.send_all`` costs
    two checkpoints and a stack of frames and buffer views, alive while the
    task waits for its turn again: with 10,000 probes in flight that is
    memory held at the peak, and CPU. The caller sends any rest with it.
    """
    try:
        return os.write(sock.fileno(), data)
    except BlockingIOError:
        return 0


async def _read(sock: trio.socket.SocketType) -> bytes:
    """What the socket has (at most ``_RECEIVE_SIZE``), after waiting for it; b"" at EOF.

    ``SocketStream.receive_some`` tries first, then waits, through three
    frames; an answer to a probe just sent is never there yet, so this waits
    first, in one. Cancellation and a close while waiting end the wait, as there.
    """
    while True:
        await trio.lowlevel.wait_readable(sock)
        try:
            return os.read(sock.fileno(), _RECEIVE_SIZE)
        except BlockingIOError:  # woken without data (spurious): wait again
            continue


# h11's own grammar (h11/_abnf.py), restricted to what the quick path takes: HTTP/1.1.
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.1 ([0-9]{3})(?: (?:[ \t]|[^\x00\s])*)?")
_HEADER_FIELD: Final = re.compile(
    rb"([-!#$%&'*+.^_`|~0-9a-zA-Z]+):[ \t]*((?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?)[ \t]*"
)
_DIGITS: Final = re.compile(rb"[0-9]+")
_MAX_QUICK_HEAD: Final = 8192


def _whole_response(
    data: bytes, method: bytes, max_body_bytes: int
) -> tuple[int, dict[str, str], bytes, bool] | None:
    """``data`` read as one whole plain answer, as h11 would read it; None: let h11 read it.

    A health answer usually arrives whole in the first read: an HTTP/1.1
    head with CRLF lines, a ``Content-Length`` and exactly that many bytes
    of body. Parsing that directly costs a fraction of h11's event machinery
    (about 55 us a probe). Anything else — a partial read, chunked, 1xx, 204,
    304, HEAD, HTTP/1.0, bare LF, obs-fold, a header h11 would refuse, a body
    over the cap, bytes past the body — returns None, and h11 reads ``data``
    exactly as before. Returns status, headers (lower-case names, last one
    wins), body and whether the server keeps the connection open.
    """
    if method not in (b"GET", b"POST"):
        return None
    end = data.find(b"\r\n\r\n")
    if end == -1 or end > _MAX_QUICK_HEAD:
        return None
    lines = data[:end].split(b"\r\n")
    status_line = _STATUS_LINE.fullmatch(lines[0])
    if status_line is None:
        return None
    status = int(status_line.group(1))
    if status < 200 or status in (204, 304):
        return None
    headers: dict[str, str] = {}
    length: bytes | None = None
    keep_alive = True
    for line in lines[1:]:
        field = _HEADER_FIELD.fullmatch(line)
        if field is None:
            return None
        name, value = field.group(1).lower(), field.group(2)
        if name == b"content-length":
            if length is not None or _DIGITS.fullmatch(value) is None:
                return None  # several (h11 merges equal ones, refuses others) or not a number
            length = value
        elif name == b"transfer-encoding":
            return None
        elif name == b"connection" and any(
            token.strip().lower() == b"close" for token in value.split(b",")
        ):
            keep_alive = False
        headers[name.decode("latin-1")] = value.decode("latin-1")
    if length is None:
        return None
    size = int(length)
    body = data[end + 4 :]
    if size > max_body_bytes or len(body) != size:
        return None
    return status, headers, body, keep_alive


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


def _send_request(conn: h11.Connection, head: h11.Request, body: bytes) -> bytes:
    """What ``conn`` writes to send ``head`` and ``body`` (raises what h11 refuses)."""
    data = conn.send(head)
    if body:
        data += conn.send(h11.Data(data=body))
    return data + conn.send(h11.EndOfMessage())


def _body_of(request: ProbeRequest) -> bytes:
    if request.json_body is not None:
        return json.dumps(request.json_body, separators=(",", ":")).encode()
    if request.content is not None:
        return request.content
    return b""


def _request_head(
    request: ProbeRequest, target: bytes, host_header: str, body: bytes
) -> h11.Request:
    headers = [
        ("Host", host_header),
        ("User-Agent", _USER_AGENT),
        ("Accept", "*/*"),
        ("Accept-Encoding", "identity"),
    ]
    if request.json_body is not None:
        headers.append(("Content-Type", "application/json"))
    elif request.content is not None:
        headers.append(("Content-Type", request.content_type or "application/octet-stream"))
    if body or request.method in ("POST", "PUT", "PATCH"):
        headers.append(("Content-Length", str(len(body))))
    given = {name.lower() for name in request.headers}
    headers = [(n, v) for n, v in headers if n.lower() not in given]
    headers.extend(request.headers.items())
    try:
        return h11.Request(method=request.method, target=target, headers=headers)
    except h11.LocalProtocolError:
        # h11 quotes the offending value, which may be the API key itself.
        bad = [n for n, v in headers if any(c in str(v) for c in "\r\n\0")]
        raise TransportError(
            f"invalid request header value for {', '.join(bad) or 'a header'} "
            "(control characters; check the key for a stray newline)"
        ) from None


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
        try:
            headers = {"Accept-Encoding": "identity", **request.headers}
            if request.content is not None:
                headers.setdefault(
                    "Content-Type", request.content_type or "application/octet-stream"
                )
            built = self.client.build_request(
                request.method,
                request.url,
                headers=headers,
                params=dict(request.params) or None,
                json=request.json_body,
                content=request.content,
            )
        except (httpx.LocalProtocolError, ValueError):
            # httpx may quote the offending header value: the API key.
            raise TransportError("invalid request (a header value has control characters)") from None
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

"""A simulated AI-provider upstream, served over real HTTP on a local socket.

Health checks are only worth something if they are tested against upstreams
that misbehave the way real ones do: keys get revoked, gateways answer with a
captive-portal page, a vLLM box accepts the connection and never answers, a
proxy trickles a body one byte at a time, a load balancer resets the
connection half-way. This module plays every provider kind the router knows
(OpenAI, Azure OpenAI, Anthropic, Volcengine Ark, Gemini, Ollama and
OpenAI-compatible servers) with their real wire formats, and lets a test or a
benchmark switch each one into a failure *mode* at run time.

It is written on raw Trio sockets and ``h11`` rather than an ASGI framework on
purpose: the failure modes need byte-level control (trickled bodies, a TCP RST
after half a body, a 10 MB body streamed without being built), every wait must
notice the client hanging up (that is how tests prove a cancelled probe stops
its upstream request), and the per-request cost must stay low enough for a
benchmark to hold 10,000 concurrent probes against one process.

Use it in-process::

    sim = Simulator(demo_providers())
    root_url = await nursery.start(sim.serve)

or out of process (``python -m service.testing.simulator --fleet 1000``), inspecting
and steering it through the ``/_sim/*`` control routes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http
import json
import logging
import math
import random
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import h11
import trio

__all__ = [
    "KINDS",
    "MODES",
    "Behavior",
    "ProviderStats",
    "SimProvider",
    "Simulator",
    "UnknownProviderError",
    "demo_providers",
    "fleet_providers",
    "load_spec",
    "main",
    "providers_from_spec",
]

log = logging.getLogger(__name__)

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
)

KINDS: Final = (
    "openai",
    "azure",
    "anthropic",
    "volcengine",
    "gemini",
    "ollama",
    "openai-compatible",
)

#: Kinds that speak the OpenAI wire format, with the path prefix their
#: ``base_url`` ends in (Volcengine Ark mounts the same API under /api/v3).
_OPENAI_LIKE: Final = {"openai": "/v1", "openai-compatible": "/v1", "volcengine": "/api/v3"}

#: What each kind's ``base_url`` appends to ``{root_url}/{name}``.
_BASE_SUFFIX: Final = {
    "openai": "/v1",
    "openai-compatible": "/v1",
    "volcengine": "/api/v3",
    "azure": "",
    "anthropic": "",
    "gemini": "/v1beta",
    "ollama": "",
}

_RECV_SIZE: Final = 65536
#: A probe body is tiny; anything bigger is a broken or hostile client.
_MAX_REQUEST_BODY: Final = 1 << 20
#: Bytes a client may pipeline while its previous request is still being answered.
_MAX_PIPELINED: Final = 1 << 20
_BACKLOG: Final = 65535

_HUGE_TOTAL: Final = 10 * 1024 * 1024
_HUGE_CHUNK: Final = 64 * 1024
_HUGE_PREFIX: Final = b'{"data": "'
_HUGE_SUFFIX: Final = b'"}'
_HUGE_FILLER: Final = b"x" * _HUGE_CHUNK

_MALFORMED_JSON: Final = b'{"data": ['
_WRONG_SHAPE: Final = b'{"unexpected": true}'
_CAPTIVE_PORTAL: Final = (
    b"<!DOCTYPE html>\n<html><head><title>Guest Wi-Fi - Sign in</title></head>\n"
    b"<body><h1>Welcome to Guest Wi-Fi</h1>\n"
    b"<p>Please accept the terms of use to continue browsing.</p>\n"
    b'<form method="post" action="/login"><button>Accept</button></form>\n'
    b"</body></html>\n"
)
_SIMULATED_ERROR: Final = "simulated upstream error"
_MODEL_CREATED: Final = 1700000000


# ---------------------------------------------------------------------------
# Public data model
# ---------------------------------------------------------------------------


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
    status: int = 500  # for mode "status"
    retry_after: float = 1.0  # for mode "rate_limited" (Retry-After header, seconds)
    trickle_interval: float = 1.0  # for mode "slow_body": seconds between body bytes
    # Requests worked on at once (during their latency) before the next one gets
    # an immediate 429 with Retry-After = ``retry_after`` (0 = no limit): a
    # provider's concurrency cap. Refusals are counted in ProviderStats.rate_limited.
    concurrency_limit: int = 0

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
        status = self.status
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError(f"status must be an HTTP status in 200..599, not {status!r}")


@dataclass
class SimProvider:
    """One simulated upstream, served under ``/{name}/``."""

    name: str  # unique; URL prefix /{name}/...
    kind: str  # one of KINDS
    api_key: str | None = None  # expected key; None = no auth required
    models: list[str] = field(default_factory=lambda: ["sim-model"])
    behavior: Behavior = field(default_factory=Behavior)

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
        if (
            not isinstance(self.models, list)
            or not self.models
            or not all(isinstance(m, str) and m for m in self.models)
        ):
            raise ValueError("models must be a non-empty list of model ids")
        if isinstance(self.behavior, Mapping):  # convenience for specs / JSON
            self.behavior = Behavior(**self.behavior)
        if not isinstance(self.behavior, Behavior):
            raise ValueError("behavior must be a Behavior")


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
    list_probes: int = 0  # free list/get-model calls
    completion_probes: int = 0  # billed completion calls
    max_tokens_requested: int = 0  # sum of max_tokens (or equivalent) in completion calls
    rate_limited: int = 0  # 429s sent: mode "rate_limited" or over ``concurrency_limit``


_BEHAVIOR_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(Behavior))
_STATS_FIELDS: Final = tuple(f.name for f in dataclasses.fields(ProviderStats))


# ---------------------------------------------------------------------------
# Wire-format helpers (pure functions, one place per kind)
# ---------------------------------------------------------------------------


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass(slots=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def _json_reply(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> _Reply:
    return _Reply(status, _json(obj), headers=headers or [])


_OPENAI_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_GOOGLE_STATUSES: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _error_body(
    kind: str,
    status: int,
    message: str,
    *,
    err_type: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The error document ``kind`` answers with; adapters parse exactly these shapes."""
    if kind in _OPENAI_LIKE:
        default_type = "server_error" if status >= 500 else "invalid_request_error"
        return {
            "error": {
                "message": message,
                "type": err_type or _OPENAI_ERROR_TYPES.get(status, default_type),
                "code": code,
            }
        }
    if kind == "azure":
        return {"error": {"code": code or str(status), "message": message}}
    if kind == "anthropic":
        default_type = "api_error" if status >= 500 else "invalid_request_error"
        return {
            "type": "error",
            "error": {
                "type": err_type or _ANTHROPIC_ERROR_TYPES.get(status, default_type),
                "message": message,
            },
        }
    if kind == "gemini":
        default_status = "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"
        return {
            "error": {
                "code": status,
                "message": message,
                "status": err_type or _GOOGLE_STATUSES.get(status, default_status),
            }
        }
    return {"error": message}  # ollama


def _error_reply(
    kind: str,
    status: int,
    message: str,
    *,
    err_type: str | None = None,
    code: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> _Reply:
    body = _error_body(kind, status, message, err_type=err_type, code=code)
    return _json_reply(status, body, headers)


def _not_found_path(kind: str, method: str, path: str) -> _Reply:
    if kind in _OPENAI_LIKE:
        return _error_reply(kind, 404, f"Invalid URL ({method} {path})")
    if kind == "azure":
        return _error_reply(kind, 404, "Resource not found")
    if kind == "anthropic":
        return _error_reply(kind, 404, "Not Found")
    if kind == "gemini":
        return _error_reply(kind, 404, f"Requested entity was not found: {path}")
    return _error_reply(kind, 404, "404 page not found")


def _model_not_found(kind: str, model: str) -> _Reply:
    if kind in _OPENAI_LIKE:
        return _error_reply(
            kind,
            404,
            f"The model `{model}` does not exist",
            err_type="invalid_request_error",
            code="model_not_found",
        )
    if kind == "azure":
        return _error_reply(
            kind,
            404,
            "The API deployment for this resource does not exist.",
            code="DeploymentNotFound",
        )
    if kind == "anthropic":
        return _error_reply(kind, 404, f"model: {model}", err_type="not_found_error")
    if kind == "gemini":
        return _error_reply(kind, 404, f"models/{model} is not found", err_type="NOT_FOUND")
    return _error_reply(kind, 404, f"model '{model}' not found")


def _auth_error(kind: str, *, echo_key: str | None = None, missing: bool = False) -> _Reply:
    """The kind's answer to a bad key; with ``echo_key`` the message leaks the key.

    Leaking is deliberate (mode ``echo_key``): some real upstreams quote the
    key they were sent, and the checker must redact it before logging.
    """
    echo = echo_key is not None
    shown = echo_key or "(none)"
    if kind in _OPENAI_LIKE:
        message = "Incorrect API key provided."
        if echo:
            message = (
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
        return _error_reply(
            kind, 401, message, err_type="invalid_request_error", code="invalid_api_key"
        )
    if kind == "azure":
        message = "Access denied due to invalid subscription key or wrong API endpoint."
        if echo:
            message = (
                f"Access denied due to invalid subscription key {shown} or wrong API endpoint."
            )
        return _error_reply(kind, 401, message, code="401")
    if kind == "anthropic":
        message = f"invalid x-api-key: {shown}" if echo else "invalid x-api-key"
        return _error_reply(kind, 401, message, err_type="authentication_error")
    if kind == "gemini":
        if missing:
            return _error_reply(
                kind,
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity "
                "to call this API.",
                err_type="PERMISSION_DENIED",
            )
        message = "API key not valid. Please pass a valid API key."
        if echo:
            message = f"API key not valid: {shown}. Please pass a valid API key."
        body = _error_body(kind, 400, message, err_type="INVALID_ARGUMENT")
        body["error"]["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            }
        ]
        return _json_reply(400, body)
    message = f"unauthorized: invalid key {shown}" if echo else "unauthorized"
    return _error_reply(kind, 401, message)


def _forced_auth_error(kind: str, echo_key: str | None, echo: bool) -> _Reply:
    """Modes ``unauthorized``/``echo_key``: always HTTP 401, whatever the kind.

    Gemini answers a bad key with 400 in real life; these modes are about
    exercising the 401 path, so Gemini gets a 401 UNAUTHENTICATED document here.
    """
    if kind != "gemini":
        return _auth_error(kind, echo_key=echo_key if echo else None)
    message = "API key not valid. Please pass a valid API key."
    if echo:
        message = f"API key not valid: {echo_key or '(none)'}. Please pass a valid API key."
    return _error_reply(kind, 401, message, err_type="UNAUTHENTICATED")


def _rate_limited(kind: str, retry_after: float) -> _Reply:
    seconds = _format_seconds(retry_after)
    headers = [("retry-after", seconds)]
    if kind in _OPENAI_LIKE:
        return _error_reply(
            kind,
            429,
            f"Rate limit reached for requests (simulated). Please try again in {seconds}s.",
            err_type="rate_limit_error",
            code="rate_limit_exceeded",
            headers=headers,
        )
    if kind == "azure":
        return _error_reply(
            kind,
            429,
            "Requests to the ChatCompletions_Create Operation under Azure OpenAI API have "
            f"exceeded the rate limit of your current tier. Please retry after {seconds} seconds.",
            code="429",
            headers=headers,
        )
    if kind == "anthropic":
        return _error_reply(
            kind,
            429,
            "Number of requests has exceeded your rate limit (simulated).",
            err_type="rate_limit_error",
            headers=headers,
        )
    if kind == "gemini":
        return _error_reply(
            kind,
            429,
            "Resource has been exhausted (e.g. check quota).",
            err_type="RESOURCE_EXHAUSTED",
            headers=headers,
        )
    return _error_reply(kind, 429, "too many requests (simulated)", headers=headers)


def _format_seconds(value: float) -> str:
    """Retry-After text: whole seconds as an integer (what RFC 9110 allows), else the float."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _openai_model(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": _MODEL_CREATED, "owned_by": "system"}


def _anthropic_model(model: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model,
        "display_name": model,
        "created_at": "2024-02-29T00:00:00Z",
    }


def _gemini_model(model: str) -> dict[str, Any]:
    return {
        "name": f"models/{model}",
        "displayName": model,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }


def _chat_completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-sim",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "p"},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@dataclass(frozen=True, slots=True)
class _Match:
    """A recognised provider route: the method it takes, what it does, the model in its path."""

    method: str
    op: str  # list | get | ping | complete | chat
    path_model: str | None = None


_LIST_OPS: Final = frozenset({"list", "get", "ping"})
_COMPLETION_OPS: Final = frozenset({"complete", "chat"})


def _match_route(kind: str, rest: str) -> _Match | None:
    """Map a path below ``/{name}`` to the route that kind serves there, if any."""
    if kind in _OPENAI_LIKE:
        prefix = _OPENAI_LIKE[kind]
        if rest == f"{prefix}/models":
            return _Match("GET", "list")
        if rest.startswith(f"{prefix}/models/") and len(rest) > len(prefix) + 8:
            return _Match("GET", "get", rest[len(prefix) + 8 :])
        if rest == f"{prefix}/chat/completions":
            return _Match("POST", "complete")
        return None
    if kind == "azure":
        if rest == "/openai/models":
            return _Match("GET", "list")
        parts = rest.split("/")
        if (
            len(parts) == 6
            and parts[1:3] == ["openai", "deployments"]
            and parts[3]
            and parts[4:] == ["chat", "completions"]
        ):
            return _Match("POST", "complete", parts[3])
        return None
    if kind == "anthropic":
        if rest == "/v1/models":
            return _Match("GET", "list")
        if rest.startswith("/v1/models/") and len(rest) > 11:
            return _Match("GET", "get", rest[11:])
        if rest == "/v1/messages":
            return _Match("POST", "complete")
        return None
    if kind == "gemini":
        if rest == "/v1beta/models":
            return _Match("GET", "list")
        if rest.startswith("/v1beta/models/") and len(rest) > 15:
            tail = rest[15:]
            if ":" not in tail:
                return _Match("GET", "get", tail)
            model, _, action = tail.rpartition(":")
            if action == "generateContent" and model:
                return _Match("POST", "complete", model)
        return None
    # ollama
    if rest in ("/", "/api/version"):
        return _Match("GET", "ping")
    if rest == "/api/tags":
        return _Match("GET", "list")
    if rest == "/api/generate":
        return _Match("POST", "complete")
    if rest == "/api/chat":
        return _Match("POST", "chat")
    return None


def _max_tokens(kind: str, data: Any) -> int:
    """The output-token budget a completion call asked for (0 if none or not an int)."""
    if not isinstance(data, dict):
        return 0
    value: Any = None
    if kind == "gemini":
        config = data.get("generationConfig")
        value = config.get("maxOutputTokens") if isinstance(config, dict) else None
    elif kind == "ollama":
        options = data.get("options")
        value = options.get("num_predict") if isinstance(options, dict) else None
    else:
        value = data.get("max_tokens")
        if value is None and kind != "anthropic":
            value = data.get("max_completion_tokens")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


# ---------------------------------------------------------------------------
# Connection plumbing
# ---------------------------------------------------------------------------


class _ClientGone(Exception):
    """The client closed or reset its connection while we were answering."""


@dataclass(slots=True)
class _Request:
    method: str
    path: str  # percent-decoded
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


class _Conn:
    """One client connection: its stream, its h11 state, and disconnect-aware waits."""

    __slots__ = ("closed", "h11", "head", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER)
        self.closed = False  # the socket is already gone (mode "reset")
        self.head = False  # current request is HEAD: headers only

    async def send(self, *events: h11.Event) -> None:
        data = b"".join(self.h11.send(event) or b"" for event in events)
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _ClientGone from exc

    async def send_reply(self, reply: _Reply, *, close: bool = False) -> None:
        events: list[h11.Event] = [self.response_head(reply.status, reply, len(reply.body), close)]
        if reply.body and not self.head:
            events.append(h11.Data(data=reply.body))
        events.append(h11.EndOfMessage())
        await self.send(*events)

    @staticmethod
    def response_head(status: int, reply: _Reply, length: int, close: bool = False) -> h11.Response:
        headers = [
            ("content-type", reply.content_type),
            ("content-length", str(length)),
            ("server", "router-health-sim"),
            *reply.headers,
        ]
        if close:
            headers.append(("connection", "close"))
        try:
            reason = http.HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
        return h11.Response(status_code=status, headers=headers, reason=reason)

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` (``inf`` = forever) while watching the socket.

        Reading instead of sleeping is what makes waits disconnect-aware: an EOF
        or reset from the client ends the wait at once with :class:`_ClientGone`,
        so a probe cancelled on the checker's side stops here too. Bytes that
        arrive meanwhile (a pipelined next request) are kept for h11.
        """
        if seconds <= 0:
            await trio.lowlevel.checkpoint()
            return
        deadline = trio.current_time() + seconds
        while True:
            with trio.move_on_at(deadline):
                try:
                    data = await self.stream.receive_some(_RECV_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise _ClientGone from exc
                if not data:
                    raise _ClientGone
                self.h11.receive_data(data)
                if len(self.h11.trailing_data[0]) > _MAX_PIPELINED:
                    raise _ClientGone  # flooding us while we answer: drop it
                continue
            return


def _url_host(bound: str) -> str:
    """The host to put in URLs for a bound address: a wildcard is reached via loopback.

    Built from the address actually bound rather than the name asked for, so
    ``--host localhost`` cannot hand out a URL that resolves to the other family.
    """
    if bound in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bound == "::":
        return "[::1]"
    return f"[{bound}]" if ":" in bound else bound


def _huge_chunks() -> Iterator[bytes]:
    """A 10 MiB JSON-ish document in 64 KiB chunks, without ever holding it whole."""
    sent = 0
    while sent < _HUGE_TOTAL:
        size = min(_HUGE_CHUNK, _HUGE_TOTAL - sent)
        first, last = sent == 0, sent + size == _HUGE_TOTAL
        if first or last:
            buf = bytearray(_HUGE_FILLER[:size])
            if first:
                buf[: len(_HUGE_PREFIX)] = _HUGE_PREFIX
            if last:
                buf[size - len(_HUGE_SUFFIX) :] = _HUGE_SUFFIX
            yield bytes(buf)
        else:
            yield _HUGE_FILLER if size == _HUGE_CHUNK else _HUGE_FILLER[:size]
        sent += size


# ---------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Routed:
    """Outcome of validating a request: the reply, and whether modes apply to it."""

    reply: _Reply
    probe: bool  # True: validation passed, ``reply`` is the healthy answer


class Simulator:
    """Serves every configured :class:`SimProvider` from one HTTP/1.1 server.

    All state lives on this object and is only touched from Trio tasks of one
    run, so no locking is needed; control methods (``set_behavior``,
    ``add_provider``...) are plain synchronous calls for the same reason.
    """

    def __init__(
        self,
        providers: Iterable[SimProvider],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
    ) -> None:
        self._host = host
        self._port = port
        self._seed = seed
        self._providers: dict[str, SimProvider] = {}
        self._stats: dict[str, ProviderStats] = {}
        self._error_rng: dict[str, random.Random] = {}
        self._jitter_rng: dict[str, random.Random] = {}
        self._root_url: str | None = None
        self._busy = 0  # in_flight summed over providers, kept for a cheap wait_idle
        # Per provider: requests being answered that count against its
        # ``concurrency_limit`` (in_flight minus the ones being refused, so a
        # refusal still being written never makes the next request look over).
        self._admitted: dict[str, int] = {}
        #: TCP connections accepted so far: shows whether clients reuse connections.
        self.connections_opened = 0
        self._changed: trio.Event | None = None  # created only while someone waits
        for provider in providers:
            self.add_provider(provider)

    # -- configuration and inspection ------------------------------------------

    @property
    def root_url(self) -> str:
        """``http://host:port`` of the running server (after ``serve`` started)."""
        if self._root_url is None:
            raise RuntimeError(
                "the simulator is not serving yet: use `await nursery.start(sim.serve)`"
            )
        return self._root_url

    def provider(self, name: str) -> SimProvider:
        """The simulator's own copy of a provider; its ``behavior`` is what new requests get.

        Change behaviour through :meth:`set_behavior`, which validates.
        """
        try:
            return self._providers[name]
        except KeyError:
            raise UnknownProviderError(name) from None

    def base_url(self, name: str) -> str:
        """The ``base_url`` an adapter of this provider's kind should be configured with."""
        provider = self.provider(name)
        return f"{self.root_url}/{name}{_BASE_SUFFIX[provider.kind]}"

    def add_provider(self, p: SimProvider) -> None:
        """Serve one more provider (also while running). Names must be unique.

        The simulator keeps its own copy (models and behaviour included), so
        two providers built with one shared ``Behavior`` object cannot steer
        each other, and later edits to the caller's object change nothing:
        use :meth:`set_behavior`.
        """
        if not isinstance(p, SimProvider):
            raise TypeError(f"expected a SimProvider, got {type(p).__name__}")
        if p.name in self._providers:
            raise ValueError(f"duplicate provider name {p.name!r}")
        p = dataclasses.replace(p, models=list(p.models), behavior=dataclasses.replace(p.behavior))
        self._providers[p.name] = p
        self._stats[p.name] = ProviderStats()
        self._admitted[p.name] = 0
        # Per-provider generators: a provider's error pattern depends only on
        # the seed and its own request order, not on traffic to the others.
        self._error_rng[p.name] = random.Random(f"{self._seed}:{p.name}:errors")
        self._jitter_rng[p.name] = random.Random(f"{self._seed}:{p.name}:jitter")

    def set_behavior(self, name: str, **changes: Any) -> None:
        """Change fields of a provider's :class:`Behavior`, all or nothing.

        Raises ``ValueError`` for an unknown provider, field, mode or a bad
        value. Requests already being answered keep the behaviour they started
        with; the change applies from the next request.
        """
        provider = self.provider(name)
        unknown = set(changes) - _BEHAVIOR_FIELDS
        if unknown:
            raise ValueError(f"unknown Behavior field(s): {', '.join(sorted(unknown))}")
        candidate = dataclasses.replace(provider.behavior, **changes)  # validates
        for key in changes:
            setattr(provider.behavior, key, getattr(candidate, key))

    def stats(self, name: str) -> ProviderStats:
        """A snapshot of one provider's counters (later traffic does not change it)."""
        self.provider(name)
        return dataclasses.replace(self._stats[name])

    def total_stats(self) -> ProviderStats:
        """A snapshot of the counters summed over every provider."""
        total = ProviderStats()
        for stats in self._stats.values():
            for key in _STATS_FIELDS:
                setattr(total, key, getattr(total, key) + getattr(stats, key))
        return total

    def reset_stats(self) -> None:
        """Zero every counter except ``in_flight`` (those requests are still running)."""
        for stats in self._stats.values():
            for key in _STATS_FIELDS:
                if key != "in_flight":
                    setattr(stats, key, 0)
        self._notify()

    def provider_entries(self) -> list[dict[str, Any]]:
        """Config-ready provider dicts pointing at this simulator (needs it running)."""
        entries: list[dict[str, Any]] = []
        for name, provider in self._providers.items():
            entry: dict[str, Any] = {
                "name": name,
                "type": provider.kind,
                "base_url": self.base_url(name),
            }
            if provider.api_key is not None:
                entry["api_key"] = provider.api_key
            entry["model"] = provider.models[0]
            entries.append(entry)
        return entries

    # -- waiting ---------------------------------------------------------------

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true, re-checking it on every stats change.

        Event-driven (no polling), so tests can wait for "the request reached
        the upstream" or "the upstream saw the disconnect" without sleeping.
        """
        if predicate():
            await trio.lowlevel.checkpoint()
            return
        while not predicate():
            if self._changed is None:
                self._changed = trio.Event()
            await self._changed.wait()

    async def wait_idle(self) -> None:
        """Return once no provider has a request in flight."""
        await self.wait_until(lambda: self._busy == 0)

    # -- serving ---------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, report ``root_url`` through ``task_status``, serve until cancelled.

        Every connection runs in a task of the nursery inside this call, so
        cancelling ``serve`` closes all of them; nothing outlives it.
        """
        infos = await trio.socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        if not infos:
            raise OSError(f"cannot resolve {self._host!r}")
        family, type_, proto, _, sockaddr = infos[0]
        sock = trio.socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            await sock.bind(sockaddr)
            sock.listen(_BACKLOG)
        except BaseException:
            sock.close()
            raise
        listener = trio.SocketListener(sock)
        bound_host, port = sock.getsockname()[:2]
        self._root_url = f"http://{_url_host(bound_host)}:{port}"
        async with listener:
            task_status.started(self._root_url)
            await trio.serve_listeners(self._serve_connection, [listener])

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        """Answer requests on one keep-alive connection until either side closes it.

        Any error stays inside this connection: it is logged and the socket
        closed, and the server keeps serving everyone else.
        """
        conn = _Conn(stream)
        self.connections_opened += 1
        try:
            while True:
                request = await self._read_request(conn)
                if request is None:
                    return
                await self._dispatch(conn, request)
                if conn.closed:
                    return
                if conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
                    return  # MUST_CLOSE (Connection: close, HTTP/1.0) or an error
                conn.h11.start_next_cycle()
        except _ClientGone:
            pass
        except Exception:
            log.exception("simulator: connection handler failed")
        finally:
            await trio.aclose_forcefully(stream)

    async def _read_request(self, conn: _Conn) -> _Request | None:
        """Read one full request (head and body); None when the client is done."""
        c = conn.h11
        conn.head = False
        request: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = c.next_event()
            except h11.RemoteProtocolError as exc:
                await self._reject(conn, exc.error_status_hint, f"bad request: {exc}")
                return None
            if event is h11.NEED_DATA:
                if c.they_are_waiting_for_100_continue:
                    await conn.send(h11.InformationalResponse(status_code=100, headers=[]))
                try:
                    data = await conn.stream.receive_some(_RECV_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return None
                c.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > _MAX_REQUEST_BODY:
                    await self._reject(conn, 413, "request body too large")
                    return None
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return self._parse_request(request, bytes(body))
            else:  # ConnectionClosed (PAUSED cannot happen before EndOfMessage)
                return None

    @staticmethod
    def _parse_request(request: h11.Request, body: bytes) -> _Request:
        target = urlsplit(request.target.decode("latin-1"))
        return _Request(
            method=request.method.decode("latin-1").upper(),
            path=unquote(target.path) or "/",
            query=dict(parse_qsl(target.query, keep_blank_values=True)),
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers},
            body=body,
        )

    async def _reject(self, conn: _Conn, status: int, message: str) -> None:
        """Answer a request we cannot parse, then close: never let it reach a handler."""
        if conn.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            with contextlib.suppress(_ClientGone, h11.LocalProtocolError):
                await conn.send_reply(_json_reply(status, {"error": message}), close=True)
        conn.closed = True

    async def _dispatch(self, conn: _Conn, req: _Request) -> None:
        conn.head = req.method == "HEAD"
        if req.path == "/_sim" or req.path.startswith("/_sim/"):
            await conn.send_reply(self._control(req))
            return
        name, _, tail = req.path[1:].partition("/")
        provider = self._providers.get(name)
        if provider is None:
            reply = _json_reply(404, {"error": {"message": f"no simulated provider {name!r}"}})
            await conn.send_reply(reply)
            return
        await self._handle_provider(conn, provider, "/" + tail, req)

    # -- provider requests -----------------------------------------------------

    async def _handle_provider(
        self, conn: _Conn, provider: SimProvider, rest: str, req: _Request
    ) -> None:
        """Count the request and answer it; in_flight is restored on every exit path."""
        name = provider.name
        stats = self._stats[name]
        stats.requests += 1
        stats.in_flight += 1
        self._busy += 1
        self._notify()
        finished = False
        try:
            await self._answer(conn, provider, rest, req)
            finished = True
        finally:
            stats.in_flight -= 1
            self._busy -= 1
            if finished:
                stats.completed += 1
            else:
                stats.disconnected += 1
            self._notify()

    def _delay(self, name: str, behavior: Behavior) -> float:
        delay = behavior.latency
        if behavior.jitter > 0:
            delay += self._jitter_rng[name].uniform(-behavior.jitter, behavior.jitter)
        return max(0.0, delay)

    async def _answer(self, conn: _Conn, provider: SimProvider, rest: str, req: _Request) -> None:
        """Validate, then answer according to the provider's behaviour.

        Order, the same for every kind: path (404), method (405), required
        headers/query (Azure ``api-version``, ``anthropic-version``), key (401),
        body and model (400/404) -- then ``concurrency_limit`` (an immediate
        429), then ``error_rate``, then the mode. Every other answer, validation
        errors included, waits the latency first: a real upstream takes a round
        trip to refuse a key too. Every request not refused, validation errors
        and hanging ones included, holds one of the limit's places during its
        latency (a hanging one: until the client leaves).
        """
        behavior = dataclasses.replace(provider.behavior)  # one behaviour per request
        # Modes that answer 401 do so whatever key was sent (echo_key must echo
        # even a wrong key, or a redaction test could pass without a leak).
        check_auth = behavior.mode not in ("unauthorized", "echo_key")
        routed = self._route(provider, rest, req, check_auth=check_auth)
        self._notify()  # probe counters may have moved
        if routed.probe and self._over_limit(provider.name, behavior):
            await self._refuse(conn, provider, behavior)
            return
        name = provider.name
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self._admitted[name] -= 1

        self._admitted[name] += 1
        try:
            await self._answer_admitted(conn, provider, routed, behavior, req, release)
        finally:
            release()

    def _over_limit(self, name: str, behavior: Behavior) -> bool:
        limit = behavior.concurrency_limit
        return limit > 0 and self._admitted[name] >= limit

    async def _refuse(self, conn: _Conn, provider: SimProvider, behavior: Behavior) -> None:
        """Over ``concurrency_limit``: a 429 at once, as a provider's rate limiter answers.

        No latency first: real limiters refuse before the request reaches a
        model, and that is what makes an aggressive client burn through them.
        """
        self._stats[provider.name].rate_limited += 1
        self._notify()
        await conn.send_reply(_rate_limited(provider.kind, behavior.retry_after))

    async def _answer_admitted(
        self,
        conn: _Conn,
        provider: SimProvider,
        routed: _Routed,
        behavior: Behavior,
        req: _Request,
        release: Callable[[], None],
    ) -> None:
        kind = provider.kind
        delay = self._delay(provider.name, behavior)

        async def work() -> None:
            # The request holds its place under ``concurrency_limit`` while the
            # upstream works on it (the latency) and gives it back before the
            # answer is written: a client that sends its next request as soon
            # as it reads this answer must find the place free, as it would at
            # a real provider (else a client keeping exactly to the limit is
            # refused because this task has not resumed yet).
            await conn.pause(delay)
            release()

        if not routed.probe:
            await work()
            await conn.send_reply(routed.reply)
            return
        if (
            behavior.error_rate > 0
            and self._error_rng[provider.name].random() < behavior.error_rate
        ):
            await work()
            await conn.send_reply(_error_reply(kind, 500, _SIMULATED_ERROR))
            return
        mode = behavior.mode
        if mode == "hang":
            await conn.pause(math.inf)  # only a disconnect or cancellation ends this
            return
        await work()
        if mode == "ok":
            await conn.send_reply(routed.reply)
        elif mode == "slow_body":
            await self._send_trickled(conn, routed.reply, behavior.trickle_interval)
        elif mode == "status":
            await conn.send_reply(_error_reply(kind, behavior.status, _SIMULATED_ERROR))
        elif mode == "rate_limited":
            self._stats[provider.name].rate_limited += 1
            await conn.send_reply(_rate_limited(kind, behavior.retry_after))
        elif mode in ("unauthorized", "echo_key"):
            sent = self._sent_key(kind, req)
            await conn.send_reply(_forced_auth_error(kind, sent, echo=mode == "echo_key"))
        elif mode == "malformed_json":
            await conn.send_reply(_Reply(200, _MALFORMED_JSON))
        elif mode == "html":
            await conn.send_reply(_Reply(200, _CAPTIVE_PORTAL, "text/html; charset=utf-8"))
        elif mode == "wrong_shape":
            await conn.send_reply(_Reply(200, _WRONG_SHAPE))
        elif mode == "reset":
            await self._send_reset(conn, routed.reply)
        elif mode == "huge_body":
            await self._send_huge(conn)
        else:  # pragma: no cover - Behavior validation keeps this unreachable
            raise AssertionError(f"unhandled mode {mode!r}")

    async def _send_trickled(self, conn: _Conn, reply: _Reply, interval: float) -> None:
        """Headers now, then the body one byte per ``interval``, watching for hang-ups."""
        await conn.send(conn.response_head(reply.status, reply, len(reply.body)))
        for i in range(len(reply.body)):
            await conn.pause(interval)
            await conn.send(h11.Data(data=reply.body[i : i + 1]))
        await conn.send(h11.EndOfMessage())

    async def _send_reset(self, conn: _Conn, reply: _Reply) -> None:
        """Half the body, then an abortive close: SO_LINGER {1, 0} makes close() send RST."""
        half = reply.body[: max(1, len(reply.body) // 2)]
        await conn.send(
            conn.response_head(reply.status, reply, len(reply.body)), h11.Data(data=half)
        )
        conn.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.closed = True
        await trio.aclose_forcefully(conn.stream)

    async def _send_huge(self, conn: _Conn) -> None:
        await conn.send(conn.response_head(200, _Reply(200, b""), _HUGE_TOTAL))
        for chunk in _huge_chunks():
            await conn.send(h11.Data(data=chunk))
        await conn.send(h11.EndOfMessage())

    @staticmethod
    def _sent_key(kind: str, req: _Request) -> str | None:
        """The credential the client presented, the way this kind expects it."""
        h = req.headers
        if kind == "azure":
            return h.get("api-key")
        if kind == "anthropic":
            return h.get("x-api-key")
        if kind == "gemini":
            return h.get("x-goog-api-key") or req.query.get("key")
        auth = h.get("authorization")
        if auth is None:
            return None
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else auth

    def _route(
        self, provider: SimProvider, rest: str, req: _Request, *, check_auth: bool = True
    ) -> _Routed:
        """Validate path, method, headers, key and body the way the real API does.

        Probe counters move as soon as a route is recognised, whatever the
        outcome: they record what the client *called*, which is what billing
        tests care about.
        """
        kind = provider.kind
        if kind == "azure" and not req.query.get("api-version"):
            return _Routed(_error_reply(kind, 404, "Resource not found"), False)
        match = _match_route(kind, rest)
        if match is None:
            return _Routed(_not_found_path(kind, req.method, rest), False)
        if req.method != match.method:
            reply = _error_reply(kind, 405, f"Method Not Allowed: {req.method} {rest}")
            reply.headers.append(("allow", match.method))
            return _Routed(reply, False)

        stats = self._stats[provider.name]
        data: Any = None
        body_ok = True
        if match.op in _COMPLETION_OPS:
            try:
                data = json.loads(req.body) if req.body else None
            except ValueError:
                body_ok = False
            stats.completion_probes += 1
            stats.max_tokens_requested += _max_tokens(kind, data)
        else:
            stats.list_probes += 1

        if kind == "anthropic" and not req.headers.get("anthropic-version"):
            return _Routed(_error_reply(kind, 400, "anthropic-version: header is required"), False)
        if check_auth and provider.api_key is not None:
            sent = self._sent_key(kind, req)
            if sent != provider.api_key:
                return _Routed(_auth_error(kind, missing=sent is None), False)

        model: str | None = match.path_model
        if match.op in _COMPLETION_OPS:
            if not body_ok or not isinstance(data, dict):
                return _Routed(
                    _error_reply(kind, 400, "could not parse the JSON body of your request"),
                    False,
                )
            if model is None:
                body_model = data.get("model")
                if not isinstance(body_model, str) or not body_model:
                    return _Routed(_error_reply(kind, 400, "model: Field required"), False)
                model = body_model
            if kind == "anthropic" and not isinstance(data.get("max_tokens"), int):
                return _Routed(_error_reply(kind, 400, "max_tokens: Field required"), False)
        if model is not None and not self._serves(provider, model):
            return _Routed(_model_not_found(kind, model), False)
        return _Routed(self._ok_reply(provider, match.op, model, req), True)

    @staticmethod
    def _serves(provider: SimProvider, model: str) -> bool:
        if model in provider.models:
            return True
        # Ollama resolves an untagged name to ":latest", as the real server does.
        return (
            provider.kind == "ollama" and ":" not in model and f"{model}:latest" in provider.models
        )

    def _ok_reply(self, provider: SimProvider, op: str, model: str | None, req: _Request) -> _Reply:
        """The healthy answer for a validated request."""
        kind, models = provider.kind, provider.models
        if op == "complete" or op == "chat":
            assert model is not None
            if kind == "anthropic":
                return _json_reply(
                    200,
                    {
                        "id": "msg_sim",
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [{"type": "text", "text": "p"}],
                        "stop_reason": "max_tokens",
                        "usage": {"input_tokens": 1, "output_tokens": 1},
                    },
                )
            if kind == "gemini":
                return _json_reply(
                    200,
                    {
                        "candidates": [
                            {
                                "content": {"parts": [{"text": "p"}], "role": "model"},
                                "finishReason": "MAX_TOKENS",
                                "index": 0,
                            }
                        ],
                        "usageMetadata": {
                            "promptTokenCount": 1,
                            "candidatesTokenCount": 1,
                            "totalTokenCount": 2,
                        },
                    },
                )
            if kind == "ollama":
                answer: dict[str, Any] = {"model": model, "created_at": _now_iso()}
                if op == "chat":
                    answer["message"] = {"role": "assistant", "content": "p"}
                else:
                    answer["response"] = "p"
                answer.update(done=True, done_reason="length")
                return _json_reply(200, answer)
            return _json_reply(200, _chat_completion(model))
        if op == "get":
            assert model is not None
            if kind == "anthropic":
                return _json_reply(200, _anthropic_model(model))
            if kind == "gemini":
                return _json_reply(200, _gemini_model(model))
            return _json_reply(200, _openai_model(model))
        if op == "ping":
            if req.path.endswith("/api/version"):
                return _json_reply(200, {"version": "0.5.7"})
            return _Reply(200, b"Ollama is running", "text/plain; charset=utf-8")
        # op == "list"
        if kind in _OPENAI_LIKE:
            return _json_reply(200, {"object": "list", "data": [_openai_model(m) for m in models]})
        if kind == "azure":
            return _json_reply(
                200,
                {
                    "data": [{"id": m, "object": "model", "status": "succeeded"} for m in models],
                    "object": "list",
                },
            )
        if kind == "anthropic":
            return self._anthropic_list(models, req)
        if kind == "gemini":
            return _json_reply(200, {"models": [_gemini_model(m) for m in models]})
        return _json_reply(
            200,
            {
                "models": [
                    {
                        "name": m,
                        "model": m,
                        "modified_at": "2024-05-01T00:00:00Z",
                        "size": 1,
                        "digest": "sha256:0",
                    }
                    for m in models
                ]
            },
        )

    @staticmethod
    def _anthropic_list(models: list[str], req: _Request) -> _Reply:
        raw = req.query.get("limit", "20")
        try:
            limit = int(raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return _error_reply("anthropic", 400, "limit: Input should be between 1 and 1000")
        page = models[:limit]
        return _json_reply(
            200,
            {
                "data": [_anthropic_model(m) for m in page],
                "has_more": len(models) > limit,
                "first_id": page[0],
                "last_id": page[-1],
            },
        )

    # -- control routes ----------------------------------------------------------

    def _stats_document(self) -> dict[str, Any]:
        return {
            "providers": {name: dataclasses.asdict(s) for name, s in self._stats.items()},
            "total": dataclasses.asdict(self.total_stats()),
        }

    def _control(self, req: _Request) -> _Reply:
        """``/_sim/*``: inspect and steer an out-of-process simulator. Never counted."""
        path = req.path.rstrip("/")

        def wrong_method(allowed: str) -> _Reply:
            return _json_reply(405, {"error": "method not allowed"}, [("allow", allowed)])

        if path == "/_sim/stats":
            if req.method != "GET":
                return wrong_method("GET")
            return _json_reply(200, self._stats_document())
        if path == "/_sim/reset_stats":
            if req.method != "POST":
                return wrong_method("POST")
            self.reset_stats()
            return _json_reply(200, self._stats_document())
        if path == "/_sim/providers":
            if req.method != "GET":
                return wrong_method("GET")
            return _json_reply(200, {"providers": self.provider_entries()})
        if path.startswith("/_sim/providers/"):
            name = path[len("/_sim/providers/") :]
            provider = self._providers.get(name)
            if provider is None:
                return _json_reply(404, {"error": f"no simulated provider named {name!r}"})
            if req.method == "GET":
                return _json_reply(200, dataclasses.asdict(provider))
            if req.method != "POST":
                return wrong_method("GET, POST")
            try:
                changes = json.loads(req.body or b"{}")
            except ValueError:
                return _json_reply(400, {"error": "body must be a JSON object"})
            if not isinstance(changes, dict):
                return _json_reply(400, {"error": "body must be a JSON object"})
            try:
                self.set_behavior(name, **changes)
            except (TypeError, ValueError) as exc:
                return _json_reply(400, {"error": str(exc)})
            return _json_reply(200, dataclasses.asdict(provider.behavior))
        return _json_reply(404, {"error": f"no control route {req.path}"})


# ---------------------------------------------------------------------------
# Fleets
# ---------------------------------------------------------------------------


def demo_providers() -> list[SimProvider]:
    """A realistic mixed fleet: six healthy kinds, one failing and one hanging."""

    def keyed(name: str, kind: str, models: list[str], **behavior: Any) -> SimProvider:
        return SimProvider(name, kind, f"sk-sim-{name}", models, Behavior(**behavior))

    return [
        keyed("openai", "openai", ["gpt-4", "gpt-4o-mini"], latency=0.25, jitter=0.05),
        keyed("azure", "azure", ["gpt-4"], latency=0.3, jitter=0.05),
        keyed(
            "anthropic", "anthropic", ["claude-3-opus", "claude-3-haiku"], latency=0.35, jitter=0.05
        ),
        keyed("volcengine", "volcengine", ["doubao-pro"], latency=0.2),
        keyed("gemini", "gemini", ["gemini-1.5-pro"], latency=0.3),
        SimProvider("ollama", "ollama", None, ["llama3:latest"], Behavior(latency=0.05)),
        keyed("deepseek", "openai-compatible", ["deepseek-chat"], mode="status", status=503),
        SimProvider("slow-vllm", "openai-compatible", None, ["qwen2-72b"], Behavior(mode="hang")),
    ]


def fleet_providers(n: int, *, latency: float = 0.5, kind: str = "openai") -> list[SimProvider]:
    """``n`` identical providers ``bench-0..bench-{n-1}`` for benchmarks."""
    return [
        SimProvider(f"bench-{i}", kind, "sk-sim-bench", ["sim-model"], Behavior(latency=latency))
        for i in range(n)
    ]


def providers_from_spec(data: Any) -> list[SimProvider]:
    """Build providers from a parsed ``--spec`` document (a list of SimProvider dicts)."""
    if not isinstance(data, list):
        raise ValueError("a simulator spec must be a JSON list of provider objects")
    providers: list[SimProvider] = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ValueError(f"spec entry {i} must be an object")
        try:
            behavior = Behavior(**item.get("behavior", {}))
            fields = {k: v for k, v in item.items() if k != "behavior"}
            providers.append(SimProvider(**fields, behavior=behavior))
        except TypeError as exc:  # unknown or missing keys
            raise ValueError(f"spec entry {i}: {exc}") from None
    return providers


def load_spec(path: str | Path) -> list[SimProvider]:
    """Read a ``--spec`` JSON file."""
    return providers_from_spec(json.loads(Path(path).read_text(encoding="utf-8")))


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.testing.simulator",
        description="Serve simulated AI-provider upstreams; prints 'SIMULATOR <url>' once bound.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--demo", action="store_true", help="serve demo_providers()")
    source.add_argument("--spec", metavar="FILE.json", help="JSON list of SimProvider objects")
    parser.add_argument("--fleet", type=int, default=0, metavar="N", help="add bench-0..bench-N-1")
    parser.add_argument("--fleet-latency", type=float, default=0.5)
    parser.add_argument("--fleet-kind", choices=KINDS, default="openai")
    return parser


def _raise_fd_limit() -> None:
    """Let a benchmark hold thousands of sockets: lift the soft fd limit to the hard one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


async def _run_cli(sim: Simulator) -> None:
    # The signal receiver is open before the URL is printed, so a SIGINT sent
    # as soon as the line is read is already caught (no KeyboardInterrupt).
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(sim.serve)
            print(f"SIMULATOR {url}", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        providers: list[SimProvider] = []
        if args.spec:
            providers = load_spec(args.spec)
        elif args.demo or not args.fleet:
            providers = demo_providers()
        if args.fleet:
            providers += fleet_providers(
                args.fleet, latency=args.fleet_latency, kind=args.fleet_kind
            )
        sim = Simulator(providers, host=args.host, port=args.port, seed=args.seed)
    except (OSError, ValueError) as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    _raise_fd_limit()
    try:
        trio.run(_run_cli, sim)
    except KeyboardInterrupt:  # a SIGINT before the receiver was installed
        pass
    except OSError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

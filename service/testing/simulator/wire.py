"""What every simulated wire format implements, and the helpers they share.

A *wire* is one provider API: the routes it serves, where the client puts its
key, how it validates a call, its healthy answers and its error documents.
:func:`.routes._route` runs the same validation order for every kind and asks
the kind's wire at each step, and the failure modes (:mod:`.modes`) write the
wire's own 429/401/5xx documents. Adding a kind is a module with a
:class:`Wire` subclass and one line in :mod:`.kinds` (plus its base path in
:mod:`.behavior`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .behavior import SimProvider
from .connection import _json_reply, _Reply, _Request


@dataclass(frozen=True, slots=True)
class Match:
    """A recognised route: its method, what it does, the model named in its path.

    ``op`` is a model mode (``chat``, ``embedding``...) for calls that run a
    model, else what the call does (``list``, ``get``, ``show``...).
    """

    method: str
    op: str
    path_model: str | None = None
    paid: bool = False  # runs a model: counted as a completion probe, billed
    public: bool = False  # outside the API: no key asked (vLLM's /health)

    @classmethod
    def free(cls, op: str, path_model: str | None = None, method: str = "GET") -> Match:
        return cls(method, op, path_model)

    @classmethod
    def model_call(cls, op: str, path_model: str | None = None) -> Match:
        return cls("POST", op, path_model, paid=True)


class Refused(Exception):
    """A call the provider turns down; ``reply`` is its answer (a 4xx document)."""

    def __init__(self, reply: _Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def usage_reply(obj: Any, billed_tokens: int, status: int = 200) -> _Reply:
    """A JSON answer that bills ``billed_tokens`` once it is delivered."""
    reply = _json_reply(status, obj)
    reply.billed_tokens = billed_tokens
    return reply


def bearer_token(req: _Request) -> str | None:
    """The token of an ``Authorization`` header (the whole value if it is not Bearer)."""
    auth = req.headers.get("authorization")
    if auth is None:
        return None
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else auth


class Wire:
    """One provider API. Subclasses implement :meth:`match`, :meth:`answer` and the errors.

    The defaults are the common case: a Bearer key, JSON bodies, a key
    compared with the provider's ``api_key``.
    """

    # -- routing and credentials ----------------------------------------------

    def precheck(self, req: _Request) -> _Reply | None:
        """A refusal before routing (Azure without ``api-version``), or None."""
        return None

    def match(self, rest: str) -> Match | None:
        """The route at ``rest`` (the path below ``/{name}``), or None for a 404."""
        raise NotImplementedError

    def required_headers(self, req: _Request) -> _Reply | None:
        """A refusal for a missing protocol header (``anthropic-version``), or None."""
        return None

    def sent_key(self, req: _Request) -> str | None:
        """The credential the client presented, where this API expects it."""
        return bearer_token(req)

    def check_auth(self, provider: SimProvider, req: _Request) -> _Reply | None:
        """The answer to a wrong or missing credential, or None when it is right."""
        if provider.api_key is None:
            return None
        sent = self.sent_key(req)
        if sent == provider.api_key:
            return None
        return self.auth_error(missing=sent is None)

    def read_body(self, match: Match, req: _Request) -> Any:
        """The call's parsed body (JSON here); raise :class:`Refused` if it cannot be read.

        The refusal is only sent once the key has been checked, as upstreams do.
        """
        if match.method != "POST":
            return None
        try:
            return json.loads(req.body) if req.body else None
        except ValueError:
            raise Refused(self.unparsable()) from None

    def max_tokens(self, op: str, data: Any) -> int:
        """The output-token budget a model call asked for (0 if none or not an int)."""
        return 0

    def answer(self, provider: SimProvider, match: Match, data: Any, req: _Request) -> _Reply:
        """Validate the call's body and model; the healthy answer, or raise :class:`Refused`."""
        raise NotImplementedError

    def serves(self, provider: SimProvider, model: str) -> bool:
        return model in provider.models

    def served_model(self, provider: SimProvider, model: str) -> str:
        """``model`` if the provider serves it, else refuse with the kind's 404."""
        if not self.serves(provider, model):
            raise Refused(self.model_not_found(model))
        return model

    # -- error documents --------------------------------------------------------

    def error_body(
        self,
        status: int,
        message: str,
        *,
        err_type: str | None = None,
        code: str | int | None = None,
        param: str | None = None,
    ) -> Any:
        raise NotImplementedError

    def error_reply(
        self,
        status: int,
        message: str,
        *,
        err_type: str | None = None,
        code: str | int | None = None,
        param: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> _Reply:
        body = self.error_body(status, message, err_type=err_type, code=code, param=param)
        return _json_reply(status, body, headers)

    def bad_request(self, message: str, **kwargs: Any) -> Refused:
        """A 400 to raise: ``raise wire.bad_request("...")``."""
        return Refused(self.error_reply(400, message, **kwargs))

    def unparsable(self) -> _Reply:
        return self.error_reply(400, "could not parse the JSON body of your request")

    def method_not_allowed(self, method: str, rest: str, allowed: str) -> _Reply:
        reply = self.error_reply(405, f"Method Not Allowed: {method} {rest}")
        reply.headers.append(("allow", allowed))
        return reply

    def not_found_path(self, method: str, path: str) -> _Reply:
        raise NotImplementedError

    def model_not_found(self, model: str) -> _Reply:
        raise NotImplementedError

    def wrong_mode(self, model: str, mode: str, op: str) -> _Reply:
        """A call of kind ``op`` to a model that does ``mode`` (a chat call to an embedder)."""
        return self.error_reply(400, f"model {model!r} does not support {op}")

    def auth_error(self, *, echo_key: str | None = None, missing: bool = False) -> _Reply:
        """The answer to a bad key; with ``echo_key`` the message leaks the key.

        Leaking is deliberate (mode ``echo_key``): some real upstreams quote the
        key they were sent, and the checker must redact it before logging.
        """
        raise NotImplementedError

    def forced_auth_error(self, echo_key: str | None, echo: bool) -> _Reply:
        """Modes ``unauthorized``/``echo_key``: an HTTP 401 whatever the key."""
        return self.auth_error(echo_key=echo_key if echo else None)

    def rate_limited(self, retry_after: float) -> _Reply:
        raise NotImplementedError


def format_seconds(value: float) -> str:
    """Retry-After text: whole seconds as an integer (what RFC 9110 allows), else the float."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def retry_after_header(retry_after: float) -> list[tuple[str, str]]:
    return [("retry-after", format_seconds(retry_after))]

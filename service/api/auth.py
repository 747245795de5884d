"""Optional bearer-token auth for the detailed and expensive answers.

Set ``[server] auth_token_env = "ROUTER_HEALTH_TOKEN"`` (preferred) or
``auth_token`` and send ``Authorization: Bearer <token>``. With a token
configured:

* ``GET /v1/health/performance`` (two full runs over every provider) needs
  the token: without it, 401.
* The check routes (``/v1/health/``, ``/v1/health/models``,
  ``/v1/health/models/<name>``) still answer everyone with the summary a load
  balancer needs (status, per-model and per-provider verdicts, counts), but
  the per-provider ``details`` (upstream error texts, HTTP statuses,
  latencies) and the ``fallback_reason`` only go to callers with the token.
  A caller that *sends* a wrong token gets 401 rather than a silently
  reduced answer: a wrong credential is a bug worth surfacing.
* ``/livez`` and ``/readyz`` stay open: orchestrators probe them without
  credentials, and they never call upstream.
* ``POST /v1/health/observations`` takes a token of its own
  (``[server] observe_token``), checked by a second :class:`BearerAuth`: the
  router that reports traffic gets no details, and a holder of the token
  above cannot report traffic (:mod:`service.api.routes_observe`).

Without a token configured every caller gets everything, as before.

The comparison is constant-time (:func:`hmac.compare_digest` on SHA-256
digests, so neither the content nor the length of the token leaks through
timing), and the token is held in a :class:`~adapters.base.Secret`.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Sequence

from quart import request

from adapters.base import Secret

from .params import ApiError

__all__ = ["Access", "BearerAuth", "request_access"]

_REALM = "router-health"


class Access(enum.Enum):
    """What a request's credentials allow."""

    GRANTED = "granted"  # a valid token, or auth is off
    ANONYMOUS = "anonymous"  # no Authorization header while auth is on
    DENIED = "denied"  # an Authorization header that is not the valid token


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", errors="surrogateescape")).digest()


class BearerAuth:
    """Checks ``Authorization: Bearer <token>`` against the configured token, if any."""

    def __init__(self, token: Secret | None) -> None:
        self._digest = _digest(token.reveal()) if token else None

    def __repr__(self) -> str:
        return f"BearerAuth(enabled={self.enabled})"

    @property
    def enabled(self) -> bool:
        return self._digest is not None

    def check(self, authorization: Sequence[str]) -> Access:
        """Judge the request's ``Authorization`` header values (all of them)."""
        if self._digest is None:
            return Access.GRANTED
        if not authorization:
            return Access.ANONYMOUS
        if len(authorization) != 1:
            return Access.DENIED  # which one would we believe?
        scheme, _, credentials = authorization[0].strip().partition(" ")
        if scheme.lower() != "bearer":
            return Access.DENIED
        # Always compare (even an empty credential) so every failure costs the same.
        granted = hmac.compare_digest(_digest(credentials.strip()), self._digest)
        return Access.GRANTED if granted else Access.DENIED

    def anonymous(self, access: Access) -> bool:
        """Whether a caller with ``access`` is anonymous: no valid token, or auth is off.

        Anonymous callers may be answered by a recent run instead of a new
        one (``[server] anonymous_min_interval``): with auth off, anyone can
        reach the service, so everyone is.
        """
        return self._digest is None or access is not Access.GRANTED

    @staticmethod
    def challenge(access: Access) -> str:
        """The ``WWW-Authenticate`` value for a 401 (RFC 6750)."""
        if access is Access.DENIED:
            return f'Bearer realm="{_REALM}", error="invalid_token"'
        return f'Bearer realm="{_REALM}"'


def request_access(auth: BearerAuth, *, token_required: bool = False, which: str = "") -> Access:
    """The current request's access; 401 for a wrong token, and for none if ``token_required``.

    The one place a request's credentials are judged, so every route that
    cares answers a 401 the same way. ``which`` ends the 401's message: the
    token a route takes when it is not ``auth_token``.
    """
    access = auth.check(request.headers.getlist("Authorization"))
    if access is Access.DENIED or (token_required and access is not Access.GRANTED):
        message = (
            "the bearer token is not valid"
            if access is Access.DENIED
            else "this endpoint needs a bearer token: send 'Authorization: Bearer <token>'"
        ) + which
        raise ApiError(
            401,
            {"error": "unauthorized", "message": message},
            {"WWW-Authenticate": BearerAuth.challenge(access)},
        )
    return access

"""``[server]``: where ``router-health serve`` listens, request limits and auth."""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.base import Secret

__all__ = ["ServerConfig"]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """``[server]``: where ``router-health serve`` listens, request limits and auth.

    ``auth_token`` (read from the environment variable named by
    ``auth_token_env``, or given literally) turns on bearer-token auth for
    the detailed and expensive answers: see :mod:`service.api.auth`.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    max_timeout: float = 120.0  # the largest ?timeout= a request may ask for
    shutdown_grace: float = 10.0  # seconds in-flight requests get on SIGTERM
    # Seconds an idle client connection is kept open. It also bounds how long
    # the server holds the socket of a client that hung up mid-request.
    keep_alive_timeout: float = 5.0
    # Seconds a finished check run keeps answering anonymous callers of the
    # same selection (no token while auth is on; everyone while it is off)
    # instead of a new run: what one anonymous caller can cost (0 = off).
    anonymous_min_interval: float = 5.0
    auth_token: Secret | None = field(default=None, repr=False)
    auth_token_env: str | None = None

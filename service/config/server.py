"""``[server]``: where ``router-health serve`` listens, request limits and auth."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from adapters.base import Secret

__all__ = [
    "DEFAULT_MAX_OBSERVATIONS_PER_REQUEST",
    "DEFAULT_MAX_OBSERVATION_REQUESTS_PER_SECOND",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_MAX_STREAMS_PER_CLIENT",
    "MAX_OBSERVATIONS_PER_REQUEST",
    "MIN_CONNECTIONS",
    "MIN_NON_STREAM_CONNECTIONS",
    "ServerConfig",
    "stream_room",
]

#: ``max_streams`` unless set (and unless ``max_connections`` leaves less room).
DEFAULT_MAX_STREAMS: Final = 256
#: ``max_streams_per_client`` unless set: a few dashboards open on one machine.
DEFAULT_MAX_STREAMS_PER_CLIENT: Final = 16
#: Observations one ``POST /v1/health/observations`` may carry unless set, and at most.
DEFAULT_MAX_OBSERVATIONS_PER_REQUEST: Final = 1000
MAX_OBSERVATIONS_PER_REQUEST: Final = 10_000
#: Observation requests per second (a token bucket over the process), unless set.
DEFAULT_MAX_OBSERVATION_REQUESTS_PER_SECOND: Final = 50.0
#: The fewest connections a server may be given: its probes' checks and /livez need room.
MIN_CONNECTIONS: Final = 16
#: Connections never given to event streams: a quarter, and at least this many.
MIN_NON_STREAM_CONNECTIONS: Final = 8


def stream_room(max_connections: int) -> int:
    """How many of ``max_connections`` event streams may take.

    The rest (a quarter, at least :data:`MIN_NON_STREAM_CONNECTIONS`) is kept
    for everything else, so the check routes and ``/livez`` always find a
    connection however many streams are open.
    """
    return max_connections - max(MIN_NON_STREAM_CONNECTIONS, max_connections // 4)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """``[server]``: where ``router-health serve`` listens, request limits and auth.

    ``auth_token`` (read from the environment variable named by
    ``auth_token_env``, or given literally) turns on bearer-token auth for
    the detailed and expensive answers: see :mod:`service.api.auth`.
    ``observe_token`` (likewise) turns on ``POST /v1/health/observations``.
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
    # GET /v1/route/{model}: below this percent of a model's deployments
    # healthy, every one is returned ("panic"), so the checker alone can never
    # empty a router's pool (0 = never).
    route_panic_threshold: float = 50.0
    # Caps (None: the default). ``max_connections``: client connections held
    # at once, derived from the open-file limit when serving starts (at most
    # 4,096); past it, the longest-idle connection is closed, or, all busy, a
    # 503. ``max_streams``: event streams open at once (256, within
    # stream_room(max_connections)); ``max_streams_per_client``: from one
    # client address, an IPv6 /64 counting as one (16). Past those: 503/429.
    max_connections: int | None = None
    max_streams: int | None = None
    max_streams_per_client: int | None = None
    auth_token: Secret | None = field(default=None, repr=False)
    auth_token_env: str | None = None
    # Traffic reports (POST /v1/health/observations): off without a token of
    # their own, which grants nothing else (nor does auth_token grant this).
    observe_token: Secret | None = field(default=None, repr=False)
    observe_token_env: str | None = None
    max_observations_per_request: int = DEFAULT_MAX_OBSERVATIONS_PER_REQUEST
    max_observation_requests_per_second: float = DEFAULT_MAX_OBSERVATION_REQUESTS_PER_SECOND

"""How many connections and event streams a server takes: ``[server]`` caps, or defaults.

Every client connection and every probe socket is a file descriptor, and past
the process's open-file limit (``ulimit -n``, often 1,024) nothing new can be
opened: ``accept`` fails (a traceback each time) and probes fail with "Too
many open files". So when ``serve()`` starts, the caps left unset are derived
from the soft ``RLIMIT_NOFILE`` as it is then:

``max_connections``
    the limit, minus the descriptors already open, minus what the probes are
    expected to hold (:data:`PROBE_SOCKETS_PER_ADAPTER` per adapter, within
    the manager's :func:`~service.engine.manager.socket_budget`), minus
    :data:`HEADROOM` for everything else (log files, Redis, the webhook, DNS,
    connections being accepted or refused); at most
    :data:`MAX_DEFAULT_CONNECTIONS` (memory), at least
    :data:`~service.config.server.MIN_CONNECTIONS`.
``max_streams``
    :data:`~service.config.server.DEFAULT_MAX_STREAMS`, within
    :func:`~service.config.server.stream_room` of the connections: a quarter
    of them (at least 8) is always left to the check routes and ``/livez``.
``max_streams_per_client``
    :data:`~service.config.server.DEFAULT_MAX_STREAMS_PER_CLIENT`, within
    ``max_streams``.

A configured value that does not fit (more connections than the limit
leaves room for, more streams than the connections leave room for) is
lowered to what fits, with one WARNING that says why.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Final

from ..config.server import (
    DEFAULT_MAX_STREAMS,
    DEFAULT_MAX_STREAMS_PER_CLIENT,
    MIN_CONNECTIONS,
    ServerConfig,
    stream_room,
)
from ..engine.manager import socket_budget

__all__ = ["HEADROOM", "MAX_DEFAULT_CONNECTIONS", "Caps", "serving_caps", "stream_caps"]

logger = logging.getLogger("router_health.app")

#: The most connections a server takes unless configured: each costs memory too.
MAX_DEFAULT_CONNECTIONS: Final = 4096
#: Descriptors left to everything but connections and probes.
HEADROOM: Final = 128
#: Probe sockets an adapter may hold at once: its kept-alive one and an overlapping probe's.
PROBE_SOCKETS_PER_ADAPTER: Final = 2


@dataclass(frozen=True, slots=True)
class Caps:
    connections: int
    streams: int
    streams_per_client: int


def stream_caps(server: ServerConfig, connections: int | None = None) -> tuple[int, int]:
    """(streams, per client): configured or the defaults, within what ``connections`` leave."""
    streams = server.max_streams or DEFAULT_MAX_STREAMS
    connections = server.max_connections if connections is None else connections
    if connections is not None and streams > stream_room(connections):
        if server.max_streams is not None:
            logger.warning(
                "[server] max_streams = %d leaves too few of the %d connections to check "
                "requests and /livez: serving at most %d event streams",
                streams, connections, stream_room(connections),
            )
        streams = stream_room(connections)
    per_client = server.max_streams_per_client or DEFAULT_MAX_STREAMS_PER_CLIENT
    return streams, min(per_client, streams)


def serving_caps(server: ServerConfig, *, adapters: int) -> Caps:
    """The caps of a server starting now, for a fleet of ``adapters`` (see the module doc)."""
    room = _connection_room(adapters)
    connections = server.max_connections
    if connections is None:
        connections = MAX_DEFAULT_CONNECTIONS if room is None else min(room, MAX_DEFAULT_CONNECTIONS)
        if connections < MIN_CONNECTIONS:
            logger.warning(
                "the open-file limit leaves room for %d client connections only; serving %d "
                "anyway: raise the limit (ulimit -n)", max(connections, 0), MIN_CONNECTIONS,
            )
            connections = MIN_CONNECTIONS
    elif room is not None and connections > max(room, MIN_CONNECTIONS):
        fits = max(room, MIN_CONNECTIONS)
        logger.warning(
            "[server] max_connections = %d does not fit the open-file limit (%s): serving at "
            "most %d connections; raise the limit (ulimit -n) for more",
            connections, _limit_text(adapters), fits,
        )
        connections = fits
    streams, per_client = stream_caps(server, connections)
    logger.info(
        "serving at most %d client connections and %d event streams (%d per client address)",
        connections, streams, per_client,
    )
    return Caps(connections, streams, per_client)


def _soft_limit() -> int | None:
    """The soft ``RLIMIT_NOFILE``, or None if unlimited or unknown."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64  # a guess where /proc is missing (macOS): a fresh process's


def _probe_sockets(adapters: int) -> int:
    return min(socket_budget(adapters), PROBE_SOCKETS_PER_ADAPTER * adapters)


def _connection_room(adapters: int) -> int | None:
    """Client connections the open-file limit leaves room for (None: no limit)."""
    soft = _soft_limit()
    if soft is None:
        return None
    return soft - _open_fds() - _probe_sockets(adapters) - HEADROOM


def _limit_text(adapters: int) -> str:
    return (
        f"{_soft_limit()} descriptors: {_open_fds()} open, {_probe_sockets(adapters)} kept for "
        f"probes, {HEADROOM} for the rest"
    )

"""``[cluster]``: the Redis that several instances share their checks through."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Final

from adapters.base import Secret

from .values import check_seconds, display_url

__all__ = [
    "CLUSTER_MODES",
    "COREDIS_MISSING",
    "MODE_SCHEMES",
    "ClusterConfig",
    "coredis_available",
    "display_redis_url",
    "sentinel_url",
]

CLUSTER_MODES: Final = ("standalone", "cluster", "sentinel")
#: The URL schemes each mode takes.
MODE_SCHEMES: Final = {
    "standalone": ("redis", "rediss", "unix"),
    "cluster": ("redis", "rediss"),
    "sentinel": ("redis+sentinel",),
}

COREDIS_MISSING: Final = (
    "[cluster] talks to Redis through the coredis library, which is not installed: "
    "pip install 'router-health[cluster]' (or remove [cluster])"
)


def coredis_available() -> bool:
    """Whether the ``cluster`` extra (coredis) is installed; found, not imported."""
    return importlib.util.find_spec("coredis") is not None


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """``[cluster]``: where the shared state lives."""

    redis_url: Secret = field(repr=False)  # may carry a password
    mode: str = "standalone"
    key_prefix: str = "router-health"
    #: Deadline of one Redis call (seconds): past it, the instance checks locally.
    timeout: float = 1.0
    #: This instance's name in leases and shared results (default: host-pid-random).
    instance_id: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in CLUSTER_MODES:
            raise ValueError(f"mode must be one of {', '.join(CLUSTER_MODES)}, got {self.mode!r}")
        check_seconds("timeout", self.timeout)

    @property
    def display_url(self) -> str:
        return display_redis_url(self.redis_url.reveal())

    def secrets(self) -> list[Secret | str]:
        """Everything to mask in text about this Redis: the URL and its userinfo."""
        url = self.redis_url.reveal()
        netloc = url.partition("://")[2].split("/", 1)[0]
        userinfo, at, _ = netloc.rpartition("@")
        found: list[Secret | str] = [self.redis_url]
        if at:
            # The password, and user:password together; a bare user name
            # ("default") is no secret, and masking it would garble text.
            found += [part for part in (userinfo, userinfo.partition(":")[2]) if part]
        return found


def display_redis_url(url: str) -> str:
    """``url`` without its credentials or query (for logs and status).

    Works for sentinel URLs too, whose host part lists several host:port, and
    for mistyped ones (a password with ``/`` or ``?`` in it): see
    :func:`~service.config.values.display_url`.
    """
    if "://" not in url:
        return "<not a URL>"
    return display_url(url)


def sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, str | None, int]:
    """``redis+sentinel://[:password@]host:port[,host:port...]/service[/db]``.

    Returns (sentinels, service name, password, db); ValueError with what is wrong.
    """
    scheme, _, rest = url.partition("://")
    if scheme != "redis+sentinel":
        raise ValueError("a sentinel URL starts with redis+sentinel://")
    rest = rest.split("?", 1)[0]
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    password = userinfo.partition(":")[2] or None if at else None
    sentinels: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, colon, port = item.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("list the sentinels as host:port[,host:port...]")
        sentinels.append((host.strip("[]"), int(port)))
    service, _, db = path.partition("/")
    if not service:
        raise ValueError("name the monitored primary after the hosts: .../mymaster")
    if db and not db.isdigit():
        raise ValueError("the database after the service name must be a number")
    return sentinels, service, password, int(db or 0)

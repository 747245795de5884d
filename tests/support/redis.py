"""A throwaway ``redis-server`` for the cluster tests, and replicas and raw publishes against it.

The ``redis`` fixture (``tests/conftest.py``) starts one per test; where
``redis-server`` is missing, ``needs_redis`` skips the test, except in CI,
where a missing server fails it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import coredis
import pytest

from adapters.base import Secret
from service.config import CheckSchedule
from service.config.cluster import ClusterConfig
from service.live.cluster import ClusterCoordinator
from service.live.state import HealthState
from tests.support.served import free_port

REDIS = shutil.which("redis-server")
#: The channel replicas share results on.
CHANNEL = "router-health:results"
#: The adapters a :func:`replica` knows.
KNOWN = {("m1", "p1"), ("m1", "p2")}

needs_redis = pytest.mark.skipif(
    REDIS is None and os.environ.get("CI") != "true",
    reason="redis-server is not installed (apt-get install redis-server; CI installs it)",
)


class RedisServer:
    """A redis-server on a free loopback port: tests can stop and start it again, or make it hang."""

    def __init__(self) -> None:
        if REDIS is None:
            raise AssertionError("redis-server is required here (CI=true): apt-get install redis-server")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS is not None
        self.process = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--loglevel", "notice"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:  # wait for its own "ready" line, not a sleep
            if b"Ready to accept connections" in line:
                return
        raise AssertionError(f"redis-server exited with {self.process.wait()}")

    def pause(self) -> None:
        """Hang (SIGSTOP): the kernel still accepts connections, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process only sees SIGTERM once continued
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def replica(url: str, name: str) -> ClusterCoordinator:
    """A coordinator named ``name`` over a fresh state, knowing :data:`KNOWN`."""
    return ClusterCoordinator(
        ClusterConfig(redis_url=Secret(url), instance_id=name),
        HealthState(lambda model, provider: CheckSchedule(interval=10)),
        known=KNOWN,
    )


async def publish(url: str, *payloads: bytes) -> None:
    """Each payload, in order, on the results channel (a raw client: nobody's coordinator)."""
    raw = coredis.Redis.from_url(url, decode_responses=False)
    async with raw:
        for payload in payloads:
            await raw.publish(CHANNEL, payload)

"""Fixtures every test folder can use; plain helpers are in ``tests/support/``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
import trio

from service.testing.simulator import SimProvider, Simulator
from tests.support.redis import RedisServer


@pytest.fixture
async def sim(nursery: trio.Nursery, sim_providers: Sequence[SimProvider]) -> Simulator:
    """The simulator serving ``sim_providers`` on loopback for the test's duration.

    Each module that uses ``sim`` defines its fleet as a ``sim_providers`` fixture.
    """
    simulator = Simulator(sim_providers)
    await nursery.start(simulator.serve)
    return simulator


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A throwaway ``redis-server``, started; mark the test ``needs_redis`` (tests/support/redis.py)."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()

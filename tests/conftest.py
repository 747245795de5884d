"""Fixtures every test folder can use; plain helpers are in ``tests/support/``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import trio

from service.testing.simulator import SimProvider, Simulator
from tests.support.redis import RedisServer


@pytest.fixture(autouse=True)
def state_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``XDG_STATE_HOME`` per test (served subprocesses inherit it).

    ``[storage]`` is on wherever background checks run and defaults to a
    database under it: no test writes to the home directory, and none
    starts with the verdicts another test left behind.
    """
    home = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


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

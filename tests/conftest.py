"""Fixtures every test folder can use; plain helpers are in ``tests/support/``."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from service.testing.simulator import SimProvider, Simulator


@pytest.fixture
async def sim(nursery: trio.Nursery, sim_providers: Sequence[SimProvider]) -> Simulator:
    """The simulator serving ``sim_providers`` on loopback for the test's duration.

    Each module that uses ``sim`` defines its fleet as a ``sim_providers`` fixture.
    """
    simulator = Simulator(sim_providers)
    await nursery.start(simulator.serve)
    return simulator

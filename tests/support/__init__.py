"""Helpers the test suites share; fixtures live in ``tests/conftest.py``.

* :mod:`tests.support.fakes`: in-memory adapters and probes, checker settings,
  probe results built by hand.
* :mod:`tests.support.app`: the app through Quart's test client, over
  in-memory fleets.
* :mod:`tests.support.served`: the app served by hypercorn on loopback, the
  simulator as its upstream, httpx (or raw bytes) as the client.
* :mod:`tests.support.configs`: config documents and files.
* :mod:`tests.support.cli`: the ``router-health`` command as a process.
* :mod:`tests.support.browser`: the headless Chromium check.
* :mod:`tests.support.redis`: a throwaway ``redis-server`` and cluster replicas on it.

Test modules import from here and never from each other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import trio

#: The repository's root (benchmarks/, service/, tests/ ...).
ROOT = Path(__file__).resolve().parents[2]


async def eventually(condition: Callable[[], object], *, within: float = 30.0) -> None:
    """Wait until ``condition()`` holds, polling state no event announces; fail past ``within``.

    For conditions only time brings about (a window ageing out) or counters
    without an event: the wait ends as soon as the condition holds, however
    busy the machine, and ``within`` only bounds a regression.
    """
    with trio.fail_after(within):
        for _ in range(int(within / 0.02) + 1):
            if condition():
                return
            await trio.sleep(0.02)

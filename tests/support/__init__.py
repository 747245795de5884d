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

Test modules import from here and never from each other.
"""

from __future__ import annotations

from pathlib import Path

#: The repository's root (benchmarks/, service/, tests/ ...).
ROOT = Path(__file__).resolve().parents[2]

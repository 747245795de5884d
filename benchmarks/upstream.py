"""The simulated upstreams, each in processes of their own, so the checker's CPU is measured alone.

:func:`simulator` runs the full simulator (every wire, every failure mode);
:func:`fast_upstream` runs :mod:`benchmarks.fast_upstream`, which answers only the
healthy fleet's probe and costs a fraction of the simulator's CPU per request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from . import measure


@dataclass(frozen=True, slots=True)
class Upstream:
    """A running upstream: where it listens, its first pid and all its processes' pids."""

    url: str
    pid: int
    pids: tuple[int, ...] = ()

    def all_pids(self) -> tuple[int, ...]:
        return self.pids or (self.pid,)

    def cpu_seconds(self) -> list[float]:
        """CPU seconds (user + system) each of its processes has used so far."""
        return [measure.proc_cpu_seconds(pid) for pid in self.all_pids()]


@contextmanager
def upstream_process(spec: list[dict[str, Any]]) -> Iterator[str]:
    """Start ``python -m service.testing.simulator --spec ...``; yield its root URL; stop it."""
    with simulator(spec) as upstream:
        yield upstream.url


@contextmanager
def simulator(spec: list[dict[str, Any]]) -> Iterator[Upstream]:
    """Start ``python -m service.testing.simulator --spec ...``; yield it; stop it."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
        spec_path = handle.name
    process = subprocess.Popen(
        [sys.executable, "-m", "service.testing.simulator", "--spec", spec_path, "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("SIMULATOR "):
            raise RuntimeError(f"simulator did not start: {line!r}")
        yield Upstream(line.split(" ", 1)[1], process.pid)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        os.unlink(spec_path)


@contextmanager
def fast_upstream(spec: list[dict[str, Any]], *, processes: int = 1) -> Iterator[Upstream]:
    """Start ``python -m benchmarks.fast_upstream`` (healthy providers only); yield it; stop it."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
        spec_path = handle.name
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.fast_upstream",
            "--spec",
            spec_path,
            "--port",
            "0",
            "--processes",
            str(processes),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("FAST_UPSTREAM "):
            raise RuntimeError(f"fast upstream did not start: {line!r}")
        _, url, pids = line.split(" ")
        found = tuple(int(p) for p in pids.split(","))
        yield Upstream(url, found[0], found)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        os.unlink(spec_path)


def set_behavior(root_url: str, provider: str, **changes: Any) -> None:
    httpx.post(f"{root_url}/_sim/providers/{provider}", json=changes).raise_for_status()


def entries(root_url: str, spec: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Config provider tables for each simulated provider of ``spec`` (all OpenAI kind)."""
    tables = []
    for provider in spec:
        assert provider["kind"] == "openai", "benchmarks use the OpenAI wire format"
        tables.append(
            {
                "name": provider["name"],
                "type": "openai",
                "base_url": f"{root_url}/{provider['name']}/v1",
                "api_key": provider["api_key"],
                "model": provider["models"][0],
            }
        )
    return tables

"""The ``router-health`` command, run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys

import trio

ROUTER_HEALTH = [sys.executable, "-m", "service.cli"]


def cli_env(*, keep_config: bool = False) -> dict[str, str]:
    """This process's environment, unbuffered; ``ROUTER_HEALTH_CONFIG`` dropped unless kept."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if not keep_config:
        env.pop("ROUTER_HEALTH_CONFIG", None)
    return env


async def run_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process(
            [*ROUTER_HEALTH, *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=cli_env(),
        )

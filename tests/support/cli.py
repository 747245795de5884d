"""The ``router-health`` command, run as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

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


@asynccontextmanager
async def cli_process(*args: str, keep_config: bool = False) -> AsyncIterator[trio.Process]:
    """``router-health *args`` running with stdout and stderr piped; killed if still running after."""
    process = await trio.lowlevel.open_process(
        [*ROUTER_HEALTH, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(keep_config=keep_config),
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def read_stdout_until(process: trio.Process, done: Callable[[bytes], bool]) -> bytes:
    """What the process has printed once ``done`` holds for it; fails if it exits first."""
    assert process.stdout is not None
    buffer = b""
    while not done(buffer):
        chunk = await process.stdout.receive_some()
        assert chunk, f"{process.args!r} exited early"
        buffer += chunk
    return buffer


async def served_url(process: trio.Process, *, within: float = 30.0) -> str:
    """The URL a ``serve`` process prints on its banner line (``serving on URL ...``)."""
    with trio.fail_after(within):
        banner = await read_stdout_until(
            process, lambda out: b"serving on" in out and out.endswith(b"\n")
        )
    return banner.decode().split("serving on", 1)[1].split()[0]


async def sigterm_timed(process: trio.Process, *, within: float) -> tuple[int, float]:
    """Send SIGTERM; the exit code and the seconds the process took to exit (failing past ``within``)."""
    process.send_signal(signal.SIGTERM)
    signalled = trio.current_time()
    with trio.fail_after(within):  # only stops a hang
        code = await process.wait()
    return code, trio.current_time() - signalled


async def read_stderr(process: trio.Process) -> str:
    """The rest of the process's stderr, up to its end."""
    assert process.stderr is not None
    data = b""
    while chunk := await process.stderr.receive_some():
        data += chunk
    return data.decode()

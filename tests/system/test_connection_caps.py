"""1,000 idle event streams and 1,000 idle connections under a 1,024 file-descriptor limit.

A real ``router-health serve`` process runs with ``RLIMIT_NOFILE`` set to
1,024 (soft and hard); the test opens 1,000 event streams against it, then
1,000 connections that never send a byte, from raw loopback sockets (a
bounded number being opened at a time). Before the caps, ~330 streams
already made ``GET /v1/health/`` time out under a low limit, and every
``accept`` past the limit logged a "Too many open files" traceback. Now the
streams past ``[server] max_streams`` are refused as JSON, connections past
``max_connections`` push out the longest idle one, and:

* ``GET /v1/health/`` and ``/livez`` answer (200) within their deadline in
  both phases;
* the server's descriptors stay below the limit;
* its log has no traceback and no "Too many open files";
* SIGTERM still stops it with exit code 0.

Two runs: the default caps (16 streams from one client address, the rest
429), and ``max_streams``/``max_streams_per_client`` set above what the
limit allows (the server lowers them, with one warning, and refuses the
rest 503).
"""

from __future__ import annotations

import collections
import os
import resource
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support.cli import cli_env
from tests.support.configs import write_config
from tests.support.served import GUARD, deadline_bound

FD_LIMIT = 1024
FLOOD = 1000
AT_ONCE = 50  # connections being opened at a time
#: The server's own process, its open-file limit lowered before anything else runs.
SERVER = (
    "import resource, sys\n"
    f"resource.setrlimit(resource.RLIMIT_NOFILE, ({FD_LIMIT}, {FD_LIMIT}))\n"
    "from service.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
STREAM = b"GET /v1/health/stream HTTP/1.1\r\nHost: test\r\n\r\n"
CHECK_TIMEOUT = 5.0


class Server:
    """The ``router-health serve`` process, its stderr read as it comes (a full pipe would block it)."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.stderr = bytearray()
        self.base = ""

    def fds(self) -> int:
        return open_fds(self.process.pid)

    async def drain_stderr(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.receive_some():
            self.stderr += chunk


@asynccontextmanager
async def serve_with_fd_limit(config: Path) -> AsyncIterator[Server]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", SERVER, "serve", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    server = Server(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.drain_stderr)
            assert process.stdout is not None
            printed = b""
            with trio.fail_after(30):
                while not (b"serving on" in printed and printed.endswith(b"\n")):
                    chunk = await process.stdout.receive_some()
                    assert chunk, f"the server exited early: {bytes(server.stderr)!r}"
                    printed += chunk
            server.base = printed.decode().split("serving on", 1)[1].split()[0]
            yield server
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def open_fds(pid: int | str = "self") -> int:
    """Descriptors a process holds now (Linux /proc), or -1."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


@asynccontextmanager
async def client_fds(wanted: int) -> AsyncIterator[None]:
    """This (the test's) process may hold ``wanted`` more descriptors; the old limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = open_fds() + wanted
    raised = soft != resource.RLIM_INFINITY and soft < needed
    if raised:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY
                                                    else min(needed, hard), hard))
    try:
        yield
    finally:
        if raised:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def read_status(stream: trio.SocketStream) -> int:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return 0  # closed without an answer
        head += chunk
    return int(head.split(b" ", 2)[1])


async def timed_get(base: str, path: str) -> tuple[int, float]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        start = trio.current_time()
        response = await client.get(path)
        return response.status_code, trio.current_time() - start


#: The [server] caps each run sets: none (the defaults), and stream caps past what fits.
CAPS = {
    "defaults": {},
    "streams_past_the_limit": {"max_streams": FLOOD, "max_streams_per_client": FLOOD},
}


@pytest.mark.parametrize("caps", list(CAPS))
async def test_1000_idle_streams_and_connections_under_a_1024_fd_limit(
    tmp_path: Path, caps: str
) -> None:
    statuses: collections.Counter[int] = collections.Counter()
    async with trio.open_nursery() as nursery, client_fds(2 * FLOOD + 200):
        sim = Simulator([
            SimProvider("openai", "openai", "rhtestkey-caps-0123456789", ["gpt-4"],
                        Behavior(latency=0.01)),
            SimProvider("ollama", "ollama", None, ["llama3"], Behavior(latency=0.01)),
        ])
        await nursery.start(sim.serve)
        config = write_config(
            tmp_path / "caps.toml", sim, {"timeout": CHECK_TIMEOUT},
            server=CAPS[caps],
        )
        try:
            async with serve_with_fd_limit(config) as server, AsyncExitStack() as held:
                # Phase 1: streams that read nothing, never end.
                async def open_stream(stream: trio.SocketStream) -> None:
                    await stream.send_all(STREAM)
                    status = await read_status(stream)
                    statuses[status] += 1
                    if status == 200:
                        await held.enter_async_context(stream)
                    else:
                        await stream.aclose()

                await flood_async(server.base, FLOOD, open_stream)
                fds_streams = server.fds()
                health_status, health_time = await timed_get(
                    server.base, f"/v1/health/?timeout={CHECK_TIMEOUT:g}")
                livez_status, _ = await timed_get(server.base, "/livez")

                # Phase 2: connections that never send a byte, the streams still open.
                async def open_idle(stream: trio.SocketStream) -> None:
                    await held.enter_async_context(stream)

                await flood_async(server.base, FLOOD, open_idle)
                fds_idle = server.fds()
                idle_status, idle_time = await timed_get(
                    server.base, f"/v1/health/?timeout={CHECK_TIMEOUT:g}")
            code = server.process.returncode
            log = bytes(server.stderr).decode(errors="replace")
        finally:
            nursery.cancel_scope.cancel()
    print(
        f"\n{caps}: streams: {dict(statuses)}; server fds {fds_streams}; GET /v1/health/ "
        f"{health_status} in {health_time:.3f} s; with {FLOOD} idle connections too: "
        f"fds {fds_idle}, GET /v1/health/ {idle_status} in {idle_time:.3f} s; "
        + " ".join(line for line in log.splitlines() if "serving at most" in line)
    )
    assert code == 0, log
    assert "Traceback" not in log and "Too many open files" not in log, log
    assert "EMFILE" not in log, log
    if caps == "defaults":  # 16 from one client address; the rest refused to that client
        assert statuses == {200: 16, 429: FLOOD - 16}, statuses
        assert "max_streams" not in log, log
    else:  # up to what the limit allows (max_streams lowered, said once); the rest refused
        assert log.count("max_streams") == 1, log
        assert statuses[200] >= 256 and statuses[200] + statuses[503] == FLOOD, statuses
    assert (health_status, livez_status, idle_status) == (200, 200, 200)
    assert health_time < deadline_bound(CHECK_TIMEOUT) and idle_time < deadline_bound(CHECK_TIMEOUT)
    assert -1 < fds_streams < FD_LIMIT and fds_idle < FD_LIMIT


async def flood_async(
    base: str, count: int, opened: Callable[[trio.SocketStream], Awaitable[None]]
) -> None:
    """Open ``count`` connections, at most :data:`AT_ONCE` at a time, each given to ``opened``."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    limiter = trio.CapacityLimiter(AT_ONCE)

    async def one() -> None:
        async with limiter:
            await opened(await trio.open_tcp_stream(host, int(port)))

    with trio.fail_after(GUARD * 12):
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(one)

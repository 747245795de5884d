"""Sharded worker processes seen from outside: a killed parent, a client hanging up, stderr.

The parent runs as a real process where its death is the point (SIGKILL:
no cleanup code of ours runs, the workers must notice their stdin ending),
and the app is served for real where an HTTP client's disconnect must reach
every probe in every worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support import ROOT, eventually
from tests.support.cli import cli_process, read_stderr, served_url, sigterm_timed
from tests.support.configs import write_config as write_toml
from tests.support.served import GUARD, running_service

#: Keys no provider-key pattern matches: only redaction by value hides them.
KEYS = {f"fleet{i}": f"rhproc-key-fleet{i}-e5d4c3" for i in range(6)}
#: Seconds a process has to be gone once it should be (polled, not slept).
EXIT_BOUND = 20.0

PARENT = """
import json, logging, sys, trio
from service import AdapterManager, load_config

async def main() -> None:
    async with AdapterManager(load_config(sys.argv[1])) as manager:
        await manager.health_checker.run(manager.select())
        print(json.dumps({"parent": __import__("os").getpid(), "workers": manager.shard_pids()}),
              flush=True)
        await trio.sleep_forever()

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
trio.run(main)
"""


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def children(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == parent and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def fleet() -> list[SimProvider]:
    providers = [
        SimProvider(name, "openai", key, ["gpt-4o-mini"], Behavior(latency=0.0))
        for name, key in KEYS.items()
    ]
    # Upstreams that quote keys: their own, and every other one (held by other workers).
    providers[0].behavior = Behavior(latency=0.0, mode="echo_key")
    providers[1].behavior = Behavior(
        latency=0.0, mode="body", status=500, body=" ".join(KEYS.values())
    )
    providers[2].behavior = Behavior(latency=0.0, mode="unauthorized")
    return providers


def write_config(path: Path, sim: Simulator) -> dict[str, str]:
    """The fleet's config, keys read from the environment; returns that environment."""
    lines = ["[checks]", "workers = 2", "shard_threshold = 4", "timeout = 20", ""]
    env = dict(os.environ)
    for entry in sim.provider_entries():
        variable = f"RHPROC_KEY_{entry['name'].upper()}"
        env[variable] = entry["api_key"]
        lines += [
            "[[models]]",
            f'name = "model-{entry["name"]}"',
            "[[models.providers]]",
            f'name = "{entry["name"]}"',
            'type = "openai"',
            f'base_url = "{entry["base_url"]}"',
            'model = "gpt-4o-mini"',
            f'api_key_env = "{variable}"',
            "",
        ]
    path.write_text("\n".join(lines))
    env["PYTHONPATH"] = str(ROOT)
    return env


async def test_workers_exit_when_the_parent_is_killed_and_no_key_reaches_stderr(
    tmp_path: Path,
) -> None:
    async with trio.open_nursery() as nursery:
        sim = Simulator(fleet())
        await nursery.start(sim.serve)
        config = tmp_path / "fleet.toml"
        env = write_config(config, sim)
        stderr = tmp_path / "stderr.log"
        with stderr.open("wb") as sink:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-c", PARENT, str(config)],
                stdout=subprocess.PIPE,
                stderr=sink,
                env=env,
            )
        try:
            assert process.stdout is not None
            line = b""
            with trio.fail_after(GUARD + 60):
                while not line.endswith(b"\n"):
                    chunk = await process.stdout.receive_some(4096)
                    assert chunk, "the parent exited: " + stderr.read_text()[-2000:]
                    line += chunk
            pids = json.loads(line)["workers"]
            assert len(pids) == 2
            process.send_signal(signal.SIGKILL)
            await process.wait()
            await eventually(lambda: all(gone(pid) for pid in pids), within=EXIT_BOUND)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        nursery.cancel_scope.cancel()
    log = stderr.read_text()
    assert "health check failed" in log  # the verdicts were logged (by the parent)
    assert not [name for name, key in KEYS.items() if key in log]


async def test_a_client_hanging_up_cancels_every_probe_in_every_worker() -> None:
    providers = [
        SimProvider(name, "openai", key, [f"model-{name}"], Behavior(latency=0.0, mode="hang"))
        for name, key in KEYS.items()
    ]
    async with running_service(
        checks={
            "adapter_timeout": 60,
            "model_timeout": 60,
            "timeout": 60,
            "workers": 2,
            "shard_threshold": 4,
        },
        server={"anonymous_min_interval": 0},
        providers=providers,
        models={f"model-{name}": (name,) for name in KEYS},
        guard=GUARD + 60,
    ) as service:
        sim = service.sim
        pids = service.manager.shard_pids()
        assert len(pids) == 2
        with trio.fail_after(GUARD + 10):
            async with trio.open_nursery() as nursery:

                async def impatient_client() -> None:
                    await service.client.get("/v1/health/?timeout=60")
                    raise AssertionError("hanging providers cannot have answered")

                nursery.start_soon(impatient_client)
                await sim.wait_until(lambda: sim.total_stats().in_flight == len(KEYS))
                nursery.cancel_scope.cancel()  # closes the client's connection
            # Only the workers cancelling their probes can end these requests.
            await sim.wait_idle()
        assert sim.total_stats().disconnected == len(KEYS)
        assert service.manager.shard_pids() == pids
        # And the next request is served, by the same workers.
        for name in KEYS:
            sim.set_behavior(name, mode="ok")
        response = await service.client.get("/v1/health/")
        assert response.status_code == 200 and response.json()["status"] == "healthy"
    await eventually(lambda: all(gone(pid) for pid in pids), within=EXIT_BOUND)


async def test_router_health_serve_with_workers_exits_0_on_sigterm_and_leaves_no_worker(
    tmp_path: Path,
) -> None:
    grace = 1.0
    providers = [
        SimProvider(name, "openai", key, ["m"], Behavior(latency=0.0, mode="hang" if i < 3 else "ok"))
        for i, (name, key) in enumerate(KEYS.items())
    ]
    async with trio.open_nursery() as nursery:
        sim = Simulator(providers)
        await nursery.start(sim.serve)
        checks = {"workers": 2, "shard_threshold": 4, "timeout": 60, "model_timeout": 60,
                  "adapter_timeout": 60}
        config = write_toml(tmp_path / "serve.toml", sim, checks, server={"shutdown_grace": grace})
        outcomes: list[str] = []
        try:
            async with cli_process("serve", "--config", str(config), "--port", "0") as process:
                base = await served_url(process, within=GUARD + 60)
                await eventually(lambda: len(children(process.pid)) == 2, within=GUARD)
                workers = children(process.pid)
                async with httpx.AsyncClient(base_url=base, timeout=30) as client:

                    async def call() -> None:
                        try:
                            response = await client.get("/v1/health/?timeout=60")
                        except httpx.TransportError as exc:
                            outcomes.append(type(exc).__name__)
                        else:
                            outcomes.append(str(response.status_code))

                    async with trio.open_nursery() as clients:
                        clients.start_soon(call)
                        with trio.fail_after(GUARD * 2):
                            await sim.wait_until(lambda: sim.total_stats().in_flight >= 3)
                        code, _ = await sigterm_timed(process, within=grace + 20)
                text = await read_stderr(process)
                assert code == 0, text
                assert "Traceback" not in text
                assert not [name for name, key in KEYS.items() if key in text]
                with trio.fail_after(GUARD):
                    await sim.wait_idle()  # the workers' probes went with them
        finally:
            nursery.cancel_scope.cancel()
    assert len(outcomes) == 1
    await eventually(lambda: all(gone(pid) for pid in workers), within=EXIT_BOUND)

"""``router-health demo --background``: the demo fleet checked in the background, with history.

The demo's own file (``router-health/demo.db`` under the state home, never
a real service's ``health.db``) keeps history; the banner says where to
look; ``/status``, uptime and incidents answer from what the background
checks recorded, the failing demo providers showing as open incidents.
Waits are for conditions.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import trio

from tests.support import eventually
from tests.support.cli import cli_process, read_stderr, read_stdout_until


async def test_the_demo_with_background_checks_keeps_history_and_shows_the_status_page(
    state_home: Path,
) -> None:
    async with cli_process("demo", "--port", "0", "--background", "0.5") as process:
        with trio.fail_after(30):
            banner = (await read_stdout_until(process, lambda out: b"Ctrl-C" in out)).decode()
        assert "/status" in banner and "window=1h" in banner
        base = next(w for w in banner.split() if w.startswith("http://") and w.endswith("/status"))
        base = base.removesuffix("/status")
        async with httpx.AsyncClient(timeout=30, trust_env=False) as client:

            with trio.fail_after(30):
                while True:  # polling a subprocess's HTTP answer
                    incidents = (await client.get(f"{base}/v1/health/incidents")).json()
                    if {"deepseek-chat", "qwen2-72b"} <= {i["model"] for i in incidents["incidents"]}:
                        break
                    await trio.sleep(0.1)
            uptime = (await client.get(f"{base}/v1/health/uptime?window=1h")).json()
            assert uptime["models"]["gpt-4"]["covered_seconds"] > 0
            assert uptime["models"]["deepseek-chat"]["uptime"] == 0.0
            page = await client.get(f"{base}/status")
            assert page.status_code == 200
            assert "<title>router-health demo</title>" in page.text
        process.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            code = await process.wait()
        assert code == 0, await read_stderr(process)
    await eventually(lambda: (state_home / "router-health" / "demo.db").is_file())
    assert not (state_home / "router-health" / "health.db").exists()

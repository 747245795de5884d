"""Requests still waiting on a provider at the end of the grace period get a JSON 503.

Shutdown gives in-flight requests ``[server] shutdown_grace`` seconds; hypercorn
then cancels whatever is left, and a request cancelled there would get no
answer at all (an empty reply). Shortly before the grace period ends the
service cancels its shared runs instead, so each waiting request answers 503
``not_ready`` ("the service is shutting down") while there is still time to
write it. Proven over a real hypercorn (in process) and on a real
``router-health serve`` process stopped with SIGTERM (exit 0).

The providers hang for ever, so nothing but the shutdown can answer these
requests; the tests wait on the simulator's counters and on the answers,
never on the clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import trio

from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support.cli import cli_process, read_stderr, served_url, sigterm_timed
from tests.support.configs import write_config
from tests.support.served import (
    DEADLINE_SLACK,
    GUARD,
    deadline_bound,
    running_service,
    shut_down_while_waiting,
)

#: Every check route that waits on a shared run (the performance route too).
WAITING_PATHS = (
    "/v1/health/?timeout=60",
    "/v1/health/models/gpt-4?timeout=60",
    "/v1/health/models?timeout=60",
    "/v1/health/performance?timeout=60",
)


def assert_shutting_down(answer: httpx.Response) -> None:
    assert answer.status_code == 503, (answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    assert body == {"error": "not_ready", "message": "the service is shutting down"}


async def test_requests_waiting_at_the_end_of_the_grace_get_a_503_in_process() -> None:
    grace = 1.0
    answers: list[httpx.Response] = []
    async with running_service(
        checks={"adapter_timeout": 60, "model_timeout": 60, "timeout": 60},
        server={"shutdown_grace": grace},
    ) as service:
        sim = service.sim
        sim.set_behavior("openai", mode="hang")

        async def call(path: str) -> None:
            answers.append(await service.client.get(path))

        # Three runs probe openai: /v1/health/ and /models share one.
        elapsed = await shut_down_while_waiting(
            service, WAITING_PATHS, call, provider="openai", in_flight=3, grace=grace
        )
    assert len(answers) == len(WAITING_PATHS)
    for answer in answers:
        assert_shutting_down(answer)
    # Answered within the grace period (a busy machine's slack on top), not after it.
    assert elapsed < deadline_bound(grace), elapsed


async def test_router_health_serve_answers_waiting_requests_503_on_sigterm_and_exits_0(
    tmp_path: Path,
) -> None:
    grace = 1.0
    answers: list[httpx.Response] = []
    async with trio.open_nursery() as nursery:
        sim = Simulator(
            [SimProvider("stuck", "openai", "rhtestkey-stuck-5678", ["m"], Behavior(mode="hang"))]
        )
        await nursery.start(sim.serve)
        config = write_config(
            tmp_path / "serve.toml",
            sim,
            {"timeout": 60, "model_timeout": 60, "adapter_timeout": 60},
            server={"shutdown_grace": grace},
        )
        try:
            async with cli_process("serve", "--config", str(config), "--port", "0") as process:
                base = await served_url(process)
                async with httpx.AsyncClient(base_url=base, timeout=30) as client:

                    async def call(path: str) -> None:
                        answers.append(await client.get(path))

                    paths = ["/v1/health/?timeout=60", "/v1/health/models/stuck-model?timeout=60"]
                    async with trio.open_nursery() as clients:
                        for path in paths:
                            clients.start_soon(call, path)
                        with trio.fail_after(GUARD * 2):
                            await sim.wait_until(lambda: sim.stats("stuck").in_flight >= 2)
                        code, elapsed = await sigterm_timed(process, within=grace + 20)
                text = await read_stderr(process)
            assert code == 0, text
            assert "Traceback" not in text
            assert "rhtestkey" not in text
            assert len(answers) == len(paths)
            for answer in answers:
                assert_shutting_down(answer)
            assert elapsed < deadline_bound(grace) + DEADLINE_SLACK, elapsed
            with trio.fail_after(GUARD):
                await sim.wait_idle()
        finally:
            nursery.cancel_scope.cancel()

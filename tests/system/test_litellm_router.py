"""A real LiteLLM Router following router-health, which serves in its own process.

Three deployments of one model group on the simulator; ``router-health serve``
checks the same deployments in the background; the plugin is installed on the
Router. The Router's own cooldowns are off, so only the plugin can take a
broken deployment out of its traffic, and its retries (``num_retries``) are
what keeps users' calls from failing while a breakage is being noticed.
Every wait is for a condition (the plugin's set, router-health's answer, the
simulator's counters), each bounded by :data:`NOTICED_WITHIN`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import trio

from service.config import dump_toml
from service.config.litellm import litellm_document
from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support.cli import cli_process, served_url
from tests.support.litellm import require_litellm

T = TypeVar("T")

MODEL = "gpt-4"
#: The simulated providers, each one deployment of MODEL; gamma gets an id, the others
#: the names router-health makes up (``openai-compatible@127.0.0.1:<port>``, then ``-2``).
SIMULATED = ("alpha", "beta", "gamma")
TOKEN = "observe-token-e2e-0123456789"
#: Bound on a change going around: a check, an observation batch, a route poll.
#: Normally a second or two; the bound is for a machine whose cores are busy
#: with something else (waits end on the condition, never on the clock).
NOTICED_WITHIN = 90.0
#: Calls sent between two looks at a condition.
CALLS_PER_LOOK = 5
TESTS = "the LiteLLM end-to-end tests"


class AsyncioThread:
    """An asyncio loop on a thread of its own: where LiteLLM runs, beside the test's Trio."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return await trio.to_thread.run_sync(future.result, abandon_on_cancel=True)

    def close(self) -> None:
        """Cancel what LiteLLM left running (its logging worker), then stop the loop."""

        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        asyncio.run_coroutine_threadsafe(cancel_the_rest(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextmanager
def asyncio_thread() -> Iterator[AsyncioThread]:
    thread = AsyncioThread()
    try:
        yield thread
    finally:
        thread.close()


def model_list(sim: Simulator) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for name in SIMULATED:
        params = {"model": f"openai/{MODEL}", "api_base": sim.base_url(name), "api_key": f"sk-sim-{name}"}
        entry: dict[str, Any] = {"model_name": MODEL, "litellm_params": params}
        if name == "gamma":
            entry["model_info"] = {"id": "gamma"}
        entries.append(entry)
    return entries


def write_router_health_config(path: Path, deployments: list[dict[str, Any]]) -> list[str]:
    """router-health's config for the same deployments (gamma judged by traffic); their names."""
    document = litellm_document({"model_list": deployments}, env={}).document
    providers = document["models"][0]["providers"]
    providers[SIMULATED.index("gamma")]["probe"] = "passive"
    # A long passive window keeps a verdict from traffic in place once the traffic stops
    # (else gamma, left out, would be probed again); max_age keeps a busy machine's
    # route answers coming from the background results rather than a live run.
    document["checks"] = {
        "interval": 0.25, "jitter": 0, "max_age": 10, "timeout": 5, "model_timeout": 5,
        "adapter_timeout": 2, "passive_window": 30,
    }
    document["server"] = {"observe_token": TOKEN}
    path.write_text(dump_toml(document), encoding="utf-8")
    return [p["name"] for p in providers]


async def user_calls(router: Any, n: int) -> list[str]:
    """``n`` completions through the Router, one after another; the errors users saw."""
    errors = []
    for _ in range(n):
        try:
            await router.acompletion(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
    return errors


@dataclass
class Fleet:
    sim: Simulator
    names: dict[str, str]  # simulated provider -> router-health's name for its deployment
    router_health: trio.Process
    url: str  # router-health's
    http: httpx.AsyncClient
    aio: AsyncioThread
    router: Any  # litellm.Router
    callback: Any  # the plugin

    def traffic(self, simulated: str) -> int:
        return self.sim.stats(simulated).completion_probes

    def plugin_excludes(self) -> set[str] | None:
        """The simulated providers the Router now leaves out; None: it follows no set."""
        route = self.callback.router_health.client.route_set(MODEL)
        if route is None:
            return None
        return {s for s, name in self.names.items() if name in route.excluded}

    async def calls(self, n: int) -> list[str]:
        return await self.aio.run(user_calls(self.router, n))

    async def calls_until(self, condition: Callable[[], Awaitable[bool]]) -> list[str]:
        """Users' calls, a few at a time, until ``condition`` holds; the errors they saw."""
        errors: list[str] = []
        with trio.fail_after(NOTICED_WITHIN):
            while not await condition():
                errors += await self.calls(CALLS_PER_LOOK)
        return errors

    async def route(self) -> dict[str, Any]:
        answer = await self.http.get(f"{self.url}/v1/route/{MODEL}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def verdict(self, simulated: str) -> dict[str, Any]:
        answer = await self.http.get(f"{self.url}/v1/health/models/{MODEL}", params={"details": "true"})
        result: dict[str, Any] = answer.json()["details"][self.names[simulated]]
        return result


async def drain(process: trio.Process) -> None:
    assert process.stderr is not None
    while await process.stderr.receive_some():
        pass


@asynccontextmanager
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    litellm = require_litellm(TESTS)
    fast = Behavior(latency=0.0)
    sim = Simulator([SimProvider(n, "openai", f"sk-sim-{n}", [MODEL], fast) for n in SIMULATED])
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        deployments = model_list(sim)
        names = write_router_health_config(tmp_path / "router-health.toml", deployments)
        async with cli_process(
            "serve", "--config", str(tmp_path / "router-health.toml"), "--port", "0"
        ) as process:
            url = await served_url(process, within=NOTICED_WITHIN)
            nursery.start_soon(drain, process)  # its log lines must never fill the pipe

            from service.integrations.litellm import RouterHealthCallback

            callback = RouterHealthCallback(
                model_list=deployments, env={}, url=url, observe_token=TOKEN,
                poll_interval=0.1, route_timeout=2.0, stale_after=8.0, flush_interval=0.1,
            )
            litellm.callbacks.append(callback)
            try:
                with asyncio_thread() as aio:

                    async def make_router() -> Any:
                        return litellm.Router(
                            model_list=deployments, num_retries=10, retry_after=0,
                            disable_cooldowns=True, timeout=10,
                        )

                    router = await aio.run(make_router())
                    async with httpx.AsyncClient(timeout=10) as http:
                        yield Fleet(sim, dict(zip(SIMULATED, names, strict=True)), process, url,
                                    http, aio, router, callback)
            finally:
                # LiteLLM's lists are process-wide, and it copies a callback into several.
                litellm.logging_callback_manager.remove_callback_from_all_lists(callback)
                callback.close()
        nursery.cancel_scope.cancel()


async def following_all_three(f: Fleet) -> None:
    """Until the plugin holds router-health's set with every deployment in it, and each has served."""

    async def ready() -> bool:
        return f.plugin_excludes() == set() and all(f.traffic(s) > 0 for s in SIMULATED)

    assert await f.calls_until(ready) == []


async def test_a_broken_deployment_stops_getting_traffic_until_it_is_repaired(tmp_path: Path) -> None:
    async with fleet(tmp_path) as f:
        await following_all_three(f)
        f.sim.set_behavior("alpha", mode="status", status=503)

        async def alpha_left_out() -> bool:
            return f.plugin_excludes() == {"alpha"}

        assert await f.calls_until(alpha_left_out) == []  # retries hide the breakage from users
        route = await f.route()
        assert [e["provider"] for e in route["excluded"]] == [f.names["alpha"]]
        assert route["panic"] is False

        before = {s: f.traffic(s) for s in SIMULATED}
        assert await f.calls(30) == []
        assert f.traffic("alpha") == before["alpha"]  # not one call went to it
        assert sum(f.traffic(s) - before[s] for s in ("beta", "gamma")) == 30

        f.sim.set_behavior("alpha", mode="ok")

        async def alpha_serves_again() -> bool:
            return f.traffic("alpha") > before["alpha"]

        assert await f.calls_until(alpha_serves_again) == []
        assert f.plugin_excludes() == set()


async def test_observations_reach_router_health_and_move_the_passive_verdict(tmp_path: Path) -> None:
    async with fleet(tmp_path) as f:
        await following_all_three(f)

        async def judged_by_traffic(status: str) -> bool:
            verdict = await f.verdict("gamma")
            return verdict["status"] == status and verdict.get("source") == "passive"

        assert await f.calls_until(lambda: judged_by_traffic("healthy")) == []
        assert (await f.verdict("gamma"))["samples"] > 0
        sent = f.callback.router_health.client.stats().sent
        assert sent > 0

        # gamma is not probed while it has traffic: only what the Router reports can tell.
        f.sim.set_behavior("gamma", mode="status", status=503)
        assert await f.calls_until(lambda: judged_by_traffic("unhealthy")) == []

        async def gamma_left_out() -> bool:
            return f.plugin_excludes() == {"gamma"}

        assert await f.calls_until(gamma_left_out) == []
        stats = f.callback.router_health.client.stats()
        assert (stats.dropped, stats.rejected) == (0, 0)


async def test_the_router_keeps_serving_when_router_health_stops(tmp_path: Path) -> None:
    async with fleet(tmp_path) as f:
        await following_all_three(f)
        f.sim.set_behavior("alpha", mode="status", status=503)

        async def alpha_left_out() -> bool:
            return f.plugin_excludes() == {"alpha"}

        assert await f.calls_until(alpha_left_out) == []
        f.router_health.kill()
        with trio.fail_after(NOTICED_WITHIN):
            await f.router_health.wait()
        # Repaired while router-health cannot see it: only the Router's own list brings it back.
        f.sim.set_behavior("alpha", mode="ok")
        before = f.traffic("alpha")

        async def back_on_its_own_list() -> bool:
            return f.plugin_excludes() is None and f.traffic("alpha") > before

        assert await f.calls_until(back_on_its_own_list) == []
        assert await f.calls(20) == []
        stats = f.callback.router_health.client.stats()
        assert stats.route_failures > 0

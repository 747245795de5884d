"""One shared run per selection, whatever the callers' timeouts; anonymous callers reuse it.

Issue 13, finding 3: the shared-run key used to include each caller's
``timeout``, so 600 requests with distinct timeouts made ~550 probes per
adapter and hundreds of false "unhealthy" answers. Now every request for a
selection waits on one run up to its own deadline and gets what that run has
found by then, and a finished run answers anonymous callers for ``[server]
anonymous_min_interval`` seconds. Over real sockets (hypercorn on loopback);
the in-memory adapters hold their answers on events, so nothing here waits
for time to pass except the short deadlines under test, whose outcome does
not depend on how long they take.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from service import ConfigError, parse_config
from service.api.app import EXTENSION_KEY
from service.testing.simulator import Behavior, SimProvider
from tests.support.app import make_app
from tests.support.fakes import Probe, adapter
from tests.support.served import GUARD, running_service, served

TOKEN = "a-test-token-of-enough-length"
LONG = {"timeout": 60, "model_timeout": 60, "adapter_timeout": 60}




class Fleet:
    """gpt-4: openai, then slow (held on ``gate``); llama3: ollama."""

    def __init__(self, **config: Mapping[str, Any]) -> None:
        self.gate = trio.Event()
        self.openai, self.slow, self.ollama = Probe(), Probe(gate=self.gate), Probe()
        self.app, _ = make_app(
            {
                "gpt-4": [adapter("openai", self.openai), adapter("slow", self.slow)],
                "llama3": [adapter("ollama", self.ollama)],
            },
            checks={**LONG, **config.get("checks", {})},
            server=config.get("server"),
        )
        self.state = self.app.extensions[EXTENSION_KEY]

    def calls(self) -> tuple[int, int, int]:
        return (self.openai.calls, self.slow.calls, self.ollama.calls)

    async def held(self) -> None:
        """Return once slow is held and every other probe of the run has answered."""
        await self.slow.entered.wait()
        await trio.testing.wait_all_tasks_blocked()


async def get(client: httpx.AsyncClient, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = await client.get(path, **kwargs)
    body = response.json()
    assert isinstance(body, dict)
    return response.status_code, body


# -- the measurement: 600 anonymous requests, distinct timeouts, the real simulator -------------

#: 21 adapters: seven models with three simulated providers each.
BURST_MODELS = {f"model-{m}": tuple(f"p{m}{k}" for k in range(3)) for m in range(7)}


def burst_fleet() -> list[SimProvider]:
    return [
        SimProvider(p, "openai-compatible", None, [model], Behavior(latency=0.02, jitter=0.01))
        for model, providers in BURST_MODELS.items()
        for p in providers
    ]


async def test_600_anonymous_requests_with_distinct_timeouts_probe_each_adapter_at_most_twice() -> None:
    # The interval is made longer than any machine needs for the burst, so the
    # count is deterministic; the default (5 s) is what the report measures.
    async with running_service(
        providers=burst_fleet(),
        models=BURST_MODELS,
        checks={"timeout": 30, "model_timeout": 10, "adapter_timeout": 8},
        server={"anonymous_min_interval": 600},
        guard=300,
    ) as service:
        todo = list(range(600))
        answers: list[tuple[int, str]] = []
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=service.url, timeout=60, limits=limits) as client:

            async def worker() -> None:
                while todo:
                    i = todo.pop()
                    # Distinct at full precision, all long enough for a healthy fleet.
                    timeout = f"{5 + i * 5 / 600 + i * 1e-7:.9f}"
                    response = await client.get(f"/v1/health/?timeout={timeout}")
                    answers.append((response.status_code, response.json()["status"]))

            async with trio.open_nursery() as nursery:
                for _ in range(64):
                    nursery.start_soon(worker)
        with trio.fail_after(GUARD):
            await service.sim.wait_idle()
        probes = {p: service.sim.stats(p).requests for ps in BURST_MODELS.values() for p in ps}
    assert len(answers) == 600
    assert max(probes.values()) <= 2, probes
    assert min(probes.values()) >= 1, probes
    false_unhealthy = [a for a in answers if a != (200, "healthy")]
    assert false_unhealthy == []


# -- one run per selection, each caller to its own deadline -----------------------------------


async def test_a_short_deadline_gets_the_shared_runs_findings_so_far_and_the_run_goes_on() -> None:
    fleet = Fleet()
    async with served(fleet.app) as client, trio.open_nursery() as nursery:
        first: list[tuple[int, dict[str, Any]]] = []

        async def patient() -> None:
            first.append(await get(client, "/v1/health/?timeout=60"))

        nursery.start_soon(patient)
        with trio.fail_after(GUARD):
            await fleet.held()
        # Another budget, the same selection: it joins the run in flight ...
        status, body = await get(client, "/v1/health/?timeout=0.5")
        # ... and at its deadline gets what that run has found so far.
        assert status == 200 and body["status"] == "degraded"
        assert body["timeout"] == 0.5
        slow = body["details"]["gpt-4"]["slow"]
        assert (slow["status"], slow["failure"]) == ("timeout", "deadline")
        assert "deadline" in slow["error"]
        assert body["details"]["gpt-4"]["openai"]["status"] == "healthy"
        assert body["models"]["llama3"]["status"] == "healthy"
        stats = fleet.state.health_runs.statistics()
        assert (stats.runs_started, stats.callers_waiting) == (1, 1)  # the patient one stays
        assert not fleet.slow.cancelled.is_set()
        fleet.gate.set()
    [(status, body)] = first
    assert (status, body["status"], body["timeout"]) == (200, "healthy", 60.0)
    assert fleet.calls() == (1, 1, 1)


async def test_every_caller_leaving_at_its_deadline_leaves_the_run_to_finish_for_the_next() -> None:
    fleet = Fleet()
    async with served(fleet.app) as client:
        # A single caller keeps the v1 answer: its timeout, the late adapter a deadline timeout.
        status, body = await get(client, "/v1/health/?timeout=0.3")
        assert (status, body["status"], body["timeout"]) == (200, "degraded", 0.3)
        assert body["details"]["gpt-4"]["slow"]["failure"] == "deadline"
        assert body["execution_time"] >= 0.3
        # The run was not cancelled with it: its probes are out, their verdicts count.
        assert fleet.state.health_runs.statistics().runs_in_flight == 1
        assert not fleet.slow.cancelled.is_set()
        async with trio.open_nursery() as nursery:
            later: list[tuple[int, dict[str, Any]]] = []

            async def patient() -> None:
                later.append(await get(client, "/v1/health/?timeout=60"))

            nursery.start_soon(patient)
            with trio.fail_after(GUARD):
                while fleet.state.health_runs.statistics().callers_waiting < 1:
                    await trio.testing.wait_all_tasks_blocked(cushion=0.01)
            # A short deadline's answer is never anyone else's: the next caller waits on the run.
            assert not later
            fleet.gate.set()
        [(status, body)] = later
        assert (status, body["status"]) == (200, "healthy")
        assert "cached" not in body["details"]["gpt-4"]["slow"]
        # Finished, the run answers the next anonymous caller, marked as served from it.
        status, body = await get(client, "/v1/health/?timeout=7")
        assert (status, body["status"], body["timeout"]) == (200, "healthy", 7.0)
        assert body["details"]["gpt-4"]["slow"]["cached"] is True
        assert body["details"]["gpt-4"]["slow"]["age_s"] >= 0
    assert fleet.calls() == (1, 1, 1)


async def test_a_sequential_runs_later_turns_are_not_started_at_a_short_deadline() -> None:
    gate = trio.Event()
    slow, after = Probe(gate=gate), Probe()
    app, _ = make_app({"gpt-4": [adapter("slow", slow), adapter("after", after)]}, checks=LONG)
    async with served(app) as client, trio.open_nursery() as nursery:
        nursery.start_soon(get, client, "/v1/health/?use_concurrent=false&timeout=60")
        with trio.fail_after(GUARD):
            await slow.entered.wait()
        status, body = await get(client, "/v1/health/?use_concurrent=false&timeout=0.3")
        assert (status, body["status"], body["concurrent"]) == (503, "unhealthy", False)
        details = body["details"]["gpt-4"]
        assert (details["slow"]["status"], details["slow"]["failure"]) == ("timeout", "deadline")
        assert (details["after"]["status"], details["after"]["failure"]) == (
            "timeout",
            "not_started",
        )
        assert details["after"]["latency_ms"] is None
        gate.set()
    assert (slow.calls, after.calls) == (1, 1)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("/v1/health/?timeout=5", "/v1/health/?timeout=5.000000001"),
        ("/v1/health/models?timeout=3", "/v1/health/?timeout=90"),
        ("/v1/health/models/gpt-4?timeout=5", "/v1/health/models/gpt-4?timeout=6"),
    ],
)
async def test_requests_that_differ_only_in_timeout_share_one_run(first: str, second: str) -> None:
    fleet = Fleet()
    async with served(fleet.app) as client, trio.open_nursery() as nursery:
        nursery.start_soon(get, client, first)
        with trio.fail_after(GUARD):
            await fleet.held()
        nursery.start_soon(get, client, second)
        with trio.fail_after(GUARD):
            while sum(
                f.statistics().callers_waiting
                for f in (fleet.state.health_runs, fleet.state.model_runs)
            ) < 2:
                await trio.testing.wait_all_tasks_blocked(cushion=0.01)
        started = (
            fleet.state.health_runs.statistics().runs_started
            + fleet.state.model_runs.statistics().runs_started
        )
        assert started == 1
        fleet.gate.set()
    assert fleet.slow.calls == 1


# -- what an anonymous caller costs -------------------------------------------------------------


async def test_anonymous_callers_reuse_a_finished_run_and_token_holders_start_their_own() -> None:
    fleet = Fleet(server={"auth_token": TOKEN})
    fleet.gate.set()
    granted = {"Authorization": f"Bearer {TOKEN}"}
    async with served(fleet.app) as client:
        for _ in range(3):
            status, body = await get(client, "/v1/health/?timeout=9")
            assert (status, body["status"]) == (200, "healthy")
            assert "details" not in body  # anonymous: the summary only
        assert fleet.calls() == (1, 1, 1)
        # A token holder gets a run of its own, with every detail ...
        status, body = await get(client, "/v1/health/", headers=granted)
        assert (status, body["status"]) == (200, "healthy")
        assert "cached" not in body["details"]["gpt-4"]["openai"]
        assert fleet.calls() == (2, 2, 2)
        # ... which anonymous callers then reuse.
        status, body = await get(client, "/v1/health/?timeout=4")
        assert (status, body["timeout"]) == (200, 4.0)
        status, body = await get(client, "/v1/health/models/gpt-4")
        assert status == 200  # the one-model route keeps its own runs
        assert fleet.calls() == (3, 3, 2)


async def test_without_auth_everyone_is_anonymous_and_zero_turns_the_interval_off() -> None:
    fleet = Fleet()
    fleet.gate.set()
    async with served(fleet.app) as client:
        for _ in range(2):
            status, body = await get(client, "/v1/health/models")
            assert status == 200
        assert fleet.calls() == (1, 1, 1)
    off = Fleet(server={"anonymous_min_interval": 0})
    off.gate.set()
    async with served(off.app) as client:
        for _ in range(2):
            status, body = await get(client, "/v1/health/")
            assert status == 200 and "cached" not in body["details"]["gpt-4"]["openai"]
        assert off.calls() == (2, 2, 2)


def test_anonymous_min_interval_defaults_to_five_seconds_and_is_validated() -> None:
    models = [{"name": "m", "providers": [{"name": "p", "type": "ollama"}]}]
    config = parse_config({"models": models}, env={})
    assert config.server.anonymous_min_interval == 5.0
    with pytest.raises(ConfigError) as info:
        parse_config({"server": {"anonymous_min_interval": -1}, "models": models}, env={})
    assert "server.anonymous_min_interval" in str(info.value)

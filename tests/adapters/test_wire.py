"""Every adapter over real loopback HTTP against the simulated upstream.

The chain under test is the one users run: config dict -> AdapterManager ->
adapter -> httpx -> simulator (each provider's real wire format) -> checker.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from adapters import FailureKind
from service import AdapterManager, ProbeResult, ProbeStatus, parse_config
from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support.served import deadline_bound, free_port

KINDS = ["openai", "azure", "anthropic", "volcengine", "gemini", "ollama", "openai-compatible"]
KEYED = ["openai", "azure", "anthropic", "volcengine", "gemini"]


def key_for(kind: str) -> str | None:
    return None if kind in ("ollama", "openai-compatible") else f"rhtestkey-sim-{kind}-0123456789abcdef"


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    return [
        SimProvider(kind, kind, key_for(kind), ["sim-model"], Behavior(latency=0.01))
        for kind in KINDS
    ]


async def probe(
    sim: Simulator, name: str, *, adapter_timeout: float = 2.0, **overrides: Any
) -> ProbeResult:
    entry = next(e for e in sim.provider_entries() if e["name"] == name)
    entry = {k: v for k, v in {**entry, **overrides}.items() if v is not None}
    config = parse_config(
        {
            "checks": {"adapter_timeout": adapter_timeout, "recheck_timeouts": False},
            "models": [{"name": "m", "providers": [entry]}],
        },
        env={},
    )
    async with AdapterManager.from_config(config) as manager:
        report = await manager.health_checker.run(manager.model_adapters)
    return report.models["m"].results[name]


@pytest.mark.parametrize("kind", KINDS)
async def test_free_probe_is_healthy_and_costs_no_tokens(sim: Simulator, kind: str) -> None:
    result = await probe(sim, kind)
    assert result.status is ProbeStatus.HEALTHY, result.error
    assert result.http_status == 200
    stats = sim.stats(kind)
    assert (stats.list_probes, stats.completion_probes) == (1, 0)


@pytest.mark.parametrize("kind", KINDS)
async def test_completion_probe_asks_for_exactly_one_token(sim: Simulator, kind: str) -> None:
    result = await probe(sim, kind, probe="completion")
    assert result.status is ProbeStatus.HEALTHY, result.error
    stats = sim.stats(kind)
    assert (stats.completion_probes, stats.max_tokens_requested) == (1, 1)


@pytest.mark.parametrize("kind", KEYED)
async def test_wrong_key_is_an_auth_failure(sim: Simulator, kind: str) -> None:
    result = await probe(sim, kind, api_key="sk-wrong-key-000000000000")
    assert result.status is ProbeStatus.UNHEALTHY
    assert result.failure is FailureKind.AUTH, result.error
    assert result.http_status in (400, 401, 403)


@pytest.mark.parametrize("kind", ["openai", "anthropic", "volcengine", "ollama", "openai-compatible", "gemini"])
async def test_a_model_the_provider_does_not_serve_is_unhealthy(sim: Simulator, kind: str) -> None:
    result = await probe(sim, kind, model="no-such-model")
    assert result.status is ProbeStatus.UNHEALTHY
    assert "no-such-model" in (result.error or "")


async def test_verify_model_false_accepts_an_alias(sim: Simulator) -> None:
    result = await probe(sim, "openai", model="gpt-latest-alias", verify_model=False)
    assert result.healthy


async def test_azure_completion_reaches_the_deployment(sim: Simulator) -> None:
    assert (await probe(sim, "azure", probe="completion", deployment="sim-model")).healthy
    missing = await probe(sim, "azure", probe="completion", deployment="nope")
    assert missing.http_status == 404
    assert "deployment" in (missing.error or "").lower()


async def test_ollama_accepts_the_model_without_its_latest_tag(nursery: trio.Nursery) -> None:
    simulator = Simulator([SimProvider("local", "ollama", None, ["llama3:latest"], Behavior(latency=0))])
    await nursery.start(simulator.serve)
    assert (await probe(simulator, "local", model="llama3")).healthy
    assert (await probe(simulator, "local", model="llama3:latest")).healthy


MODES = [
    ("status", FailureKind.HTTP_STATUS, ProbeStatus.UNHEALTHY),
    ("rate_limited", FailureKind.RATE_LIMITED, ProbeStatus.UNHEALTHY),
    ("unauthorized", FailureKind.AUTH, ProbeStatus.UNHEALTHY),
    ("malformed_json", FailureKind.BAD_BODY, ProbeStatus.UNHEALTHY),
    ("html", FailureKind.BAD_BODY, ProbeStatus.UNHEALTHY),
    ("wrong_shape", FailureKind.BAD_BODY, ProbeStatus.UNHEALTHY),
    ("reset", FailureKind.CONNECT, ProbeStatus.UNHEALTHY),
    ("huge_body", FailureKind.BODY_TOO_LARGE, ProbeStatus.UNHEALTHY),
    ("hang", FailureKind.TIMEOUT, ProbeStatus.TIMEOUT),
    ("slow_body", FailureKind.TIMEOUT, ProbeStatus.TIMEOUT),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("mode", "failure", "status"), MODES, ids=[m[0] for m in MODES])
async def test_each_upstream_failure_mode_is_classified(
    sim: Simulator, kind: str, mode: str, failure: FailureKind, status: ProbeStatus
) -> None:
    sim.set_behavior(kind, mode=mode, retry_after=7, trickle_interval=0.2)
    result = await probe(sim, kind, adapter_timeout=0.5)
    assert (result.status, result.failure) == (status, failure), result.error
    if mode == "rate_limited":
        assert result.retry_after == 7
    with trio.fail_after(5):
        await sim.wait_idle()  # the probe is over upstream too: nothing left running


async def test_a_trickled_body_cannot_stretch_the_deadline(sim: Simulator) -> None:
    # httpx's own timeouts are per read, and each byte resets them; the Trio
    # deadline bounds the whole exchange: it ends within the deadline plus a
    # busy machine's slack (a deadline applied 3x too late fails), and the
    # benchmark measures how tight it really is.
    sim.set_behavior("openai", mode="slow_body", trickle_interval=0.05)
    adapter_timeout = 1.0
    start = trio.current_time()
    result = await probe(sim, "openai", adapter_timeout=adapter_timeout)
    assert result.status is ProbeStatus.TIMEOUT
    assert trio.current_time() - start < deadline_bound(adapter_timeout)
    assert result.latency_ms is not None
    assert adapter_timeout * 1000 <= result.latency_ms < deadline_bound(adapter_timeout) * 1000


@pytest.mark.parametrize("kind", KEYED)
async def test_a_key_echoed_back_by_the_upstream_is_redacted(sim: Simulator, kind: str) -> None:
    sim.set_behavior(kind, mode="echo_key")
    result = await probe(sim, kind)
    assert result.status is ProbeStatus.UNHEALTHY
    key = key_for(kind)
    assert key and key not in str(result.to_dict())
    assert "***" in (result.error or "")


async def test_connection_refused_is_a_connect_failure() -> None:
    port = free_port()  # nothing listens on it
    config = parse_config(
        {"models": [{"name": "m", "providers": [{"name": "dead", "type": "ollama", "base_url": f"http://127.0.0.1:{port}"}]}]},
        env={},
    )
    async with AdapterManager.from_config(config) as manager:
        report = await manager.health_checker.run(manager.model_adapters)
    result = report.models["m"].results["dead"]
    assert (result.status, result.failure) == (ProbeStatus.UNHEALTHY, FailureKind.CONNECT)


async def test_unresolvable_host_is_a_connect_failure() -> None:
    config = parse_config(
        {"models": [{"name": "m", "providers": [{"name": "nx", "type": "ollama", "base_url": "http://no-such-host.invalid:1"}]}]},
        env={},
    )
    async with AdapterManager.from_config(config) as manager:
        report = await manager.health_checker.run(manager.model_adapters, timeout=5)
    result = report.models["m"].results["nx"]
    assert result.status in (ProbeStatus.UNHEALTHY, ProbeStatus.TIMEOUT)
    assert result.failure in (FailureKind.CONNECT, FailureKind.TIMEOUT)


async def test_connections_are_reused_between_runs(sim: Simulator) -> None:
    entry = next(e for e in sim.provider_entries() if e["name"] == "openai")
    config = parse_config({"models": [{"name": "m", "providers": [entry]}]}, env={})
    async with AdapterManager.from_config(config) as manager:
        for _ in range(3):
            report = await manager.health_checker.run(manager.model_adapters)
            assert report.status.value == "healthy"
    assert sim.stats("openai").requests == 3
    assert sim.connections_opened == 1

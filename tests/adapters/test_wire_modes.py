"""Every provider type in every mode over loopback against the simulator, which speaks each real API.

The chain is the one users run: config -> AdapterManager -> adapter -> socket ->
simulator -> checker. Bedrock and Vertex AI need their extras' signers and are
covered with them (tests/adapters/test_bedrock.py, test_vertex.py).
"""

from __future__ import annotations

import pytest

from adapters import ADAPTER_TYPES, FailureKind
from service import ProbeStatus
from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support.configs import probe_entry

KINDS = [kind for kind in ADAPTER_TYPES if kind not in ("unsupported", "bedrock", "vertex-ai")]
#: Every (type, mode) pair a config may write.
CASES = [(kind, mode) for kind in KINDS for mode in sorted(ADAPTER_TYPES[kind].modes)]
LISTING = [(kind, mode) for kind, mode in CASES if ADAPTER_TYPES[kind].lists_models]


def key_for(kind: str) -> str | None:
    return f"rhtestkey-sim-{kind}-0123456789abcdef" if ADAPTER_TYPES[kind].key_required else None


def name(kind: str, mode: str) -> str:
    return f"{kind}-{mode}"


#: Answers that carry no token count: Gemini's embedContent has no usage, a
#: Cohere rerank bills a search unit.
NO_USAGE = {("gemini", "embedding"), ("cohere", "rerank")}


def served_as(kind: str, mode: str) -> str:
    # An Ollama model that generates serves /api/chat and /api/generate alike.
    return "chat" if (kind, mode) == ("ollama", "completion") else mode


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    return [
        SimProvider(
            name(kind, mode), kind, key_for(kind), [f"sim-{mode}"], Behavior(latency=0.0),
            model_modes={f"sim-{mode}": served_as(kind, mode)},
        )
        for kind, mode in CASES
    ]


@pytest.mark.parametrize(("kind", "mode"), LISTING)
async def test_the_free_probe_is_healthy_and_bills_nothing(sim: Simulator, kind: str, mode: str) -> None:
    result = await probe_entry(sim, name(kind, mode))
    assert result.status is ProbeStatus.HEALTHY, result.error
    stats = sim.stats(name(kind, mode))
    assert (stats.list_probes, stats.completion_probes, stats.billed_tokens) == (1, 0, 0)
    assert result.tokens is None


@pytest.mark.parametrize(("kind", "mode"), CASES)
async def test_the_paid_probe_is_healthy_and_reports_what_was_billed(
    sim: Simulator, kind: str, mode: str
) -> None:
    allow = {"allow_image_probe": True} if mode == "image_generation" else {}
    result = await probe_entry(sim, name(kind, mode), probe="completion", mode=mode, **allow)
    assert result.status is ProbeStatus.HEALTHY, result.error
    stats = sim.stats(name(kind, mode))
    assert (stats.list_probes, stats.completion_probes) == (0, 1)
    if (kind, mode) in NO_USAGE:
        assert result.tokens is None
    else:
        assert (result.tokens or 0) == stats.billed_tokens


@pytest.mark.parametrize(
    "kind", [kind for kind in KINDS if ADAPTER_TYPES[kind].key_required]
)
async def test_a_wrong_key_is_an_auth_failure(sim: Simulator, kind: str) -> None:
    result = await probe_entry(sim, name(kind, "chat"), api_key="rhtestkey-wrong-000000000000", probe="completion")
    assert result.status is ProbeStatus.UNHEALTHY
    assert result.failure is FailureKind.AUTH, result.error


@pytest.mark.parametrize("kind", KINDS)
async def test_a_model_the_provider_does_not_serve_is_missing(sim: Simulator, kind: str) -> None:
    result = await probe_entry(sim, name(kind, "chat"), model="no-such-model", probe="completion")
    assert result.status is ProbeStatus.UNHEALTHY
    assert result.failure is FailureKind.MODEL_MISSING, result.error


@pytest.mark.parametrize("kind", KINDS)
async def test_a_429_is_rate_limited_with_its_retry_after(sim: Simulator, kind: str) -> None:
    sim.set_behavior(name(kind, "chat"), mode="rate_limited", retry_after=7)
    result = await probe_entry(sim, name(kind, "chat"), probe="completion")
    assert result.failure is FailureKind.RATE_LIMITED, result.error
    assert result.retry_after == 7


@pytest.mark.parametrize("kind", KINDS)
async def test_a_5xx_is_an_http_status_failure(sim: Simulator, kind: str) -> None:
    sim.set_behavior(name(kind, "chat"), mode="status", status=503)
    result = await probe_entry(sim, name(kind, "chat"), probe="completion")
    assert (result.status, result.failure, result.http_status) == (
        ProbeStatus.UNHEALTHY, FailureKind.HTTP_STATUS, 503,
    )


@pytest.mark.parametrize("kind", [kind for kind, _ in LISTING if _ == "chat"])
async def test_a_wildcard_lists_what_the_provider_serves(sim: Simulator, kind: str) -> None:
    result = await probe_entry(sim, name(kind, "chat"), model="*")
    assert result.status is ProbeStatus.HEALTHY, result.error
    assert result.listed_models == ("sim-chat",)

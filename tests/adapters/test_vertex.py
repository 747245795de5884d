"""Google Vertex AI: google-auth tokens from the simulator's OAuth endpoint, then the model API.

The credentials JSON is a real service-account file whose ``token_uri`` is
the simulator: google-auth signs its JWT assertion with the account's key,
the simulator checks that signature and issues the token the API then wants.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters import FailureKind, VertexAIAdapter
from adapters.transport import HttpxTransport
from adapters.vertex import vertex_model
from service import AdapterManager, ProbeResult, ProbeStatus, parse_config
from service.testing.simulator import Behavior, SimProvider, Simulator
from service.testing.simulator.vertex import service_account_info

TOKEN = "ya29.rhtestkey-vertex-access-token-0123456789"
GEMINI = "gemini-2.0-flash"
CLAUDE = "claude-3-5-haiku@20241022"
EMBEDDER = "text-embedding-005"


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    return [SimProvider("gcp", "vertex-ai", TOKEN, [GEMINI, CLAUDE, EMBEDDER], Behavior(latency=0))]


@pytest.fixture
def credentials_file(sim: Simulator, tmp_path: Path) -> Path:
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(service_account_info(f"{sim.root_url}/gcp/token")))
    return path


def entry(sim: Simulator, credentials: Path | None, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "gcp",
        "type": "vertex-ai",
        "base_url": sim.base_url("gcp"),
        "model": GEMINI,
        "project": "rh-sim",
        "location": "europe-west4",
        "credentials_file": str(credentials) if credentials else None,
    }
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


async def probe(sim: Simulator, credentials: Path | None, **overrides: Any) -> ProbeResult:
    config = parse_config(
        {
            "checks": {"adapter_timeout": 5.0, "recheck_timeouts": False},
            "models": [{"name": "m", "providers": [entry(sim, credentials, **overrides)]}],
        },
        env={},
    )
    async with AdapterManager.from_config(config) as manager:
        report = await manager.health_checker.run(manager.model_adapters)
    return report.models["m"].results["gcp"]


def adapter(**kwargs: Any) -> VertexAIAdapter:
    return VertexAIAdapter(
        provider="gcp",
        base_url=kwargs.pop("base_url", VertexAIAdapter.default_base_url),
        model=kwargs.pop("model", GEMINI),
        options=kwargs.pop("options", {"project": "rh-sim"}),
        **kwargs,
    )


# -- healthy, and what each probe costs -------------------------------------------


@pytest.mark.parametrize("model", [GEMINI, CLAUDE, f"publishers/anthropic/models/{CLAUDE}"])
async def test_free_probe_reads_the_model_metadata_and_bills_nothing(
    sim: Simulator, credentials_file: Path, model: str
) -> None:
    result = await probe(sim, credentials_file, model=model)
    assert result.status is ProbeStatus.HEALTHY, result.error
    stats = sim.stats("gcp")
    assert (stats.completion_probes, stats.billed_tokens) == (0, 0)


async def test_gemini_paid_probe_asks_for_one_token_and_counts_usage(
    sim: Simulator, credentials_file: Path
) -> None:
    result = await probe(sim, credentials_file, probe="completion")
    assert result.status is ProbeStatus.HEALTHY, result.error
    assert result.tokens == 2  # usageMetadata.totalTokenCount
    stats = sim.stats("gcp")
    assert (stats.completion_probes, stats.max_tokens_requested) == (1, 1)


async def test_anthropic_models_get_a_one_token_raw_predict(
    sim: Simulator, credentials_file: Path
) -> None:
    result = await probe(sim, credentials_file, model=CLAUDE, probe="completion")
    assert result.status is ProbeStatus.HEALTHY, result.error
    assert result.tokens == 2
    assert sim.stats("gcp").max_tokens_requested == 1


async def test_embedding_models_get_one_predict_with_one_word(
    sim: Simulator, credentials_file: Path
) -> None:
    result = await probe(
        sim, credentials_file, model=EMBEDDER, mode="embedding", probe="completion"
    )
    assert result.status is ProbeStatus.HEALTHY, result.error
    assert result.tokens == 1


async def test_the_token_is_fetched_once_and_reused(sim: Simulator, credentials_file: Path) -> None:
    config = parse_config(
        {"models": [{"name": "m", "providers": [entry(sim, credentials_file)]}]}, env={}
    )
    async with AdapterManager.from_config(config) as manager:
        for _ in range(3):
            report = await manager.health_checker.run(manager.model_adapters)
            assert report.models["m"].results["gcp"].healthy
    assert sim.stats("gcp").requests == 4  # one token, three lookups


async def test_the_free_twin_of_a_paid_adapter_reuses_its_token(
    sim: Simulator, credentials_file: Path
) -> None:
    vertex = adapter(
        base_url=sim.base_url("gcp"),
        probe="completion",
        options={"project": "rh-sim", "credentials_file": str(credentials_file)},
    )
    async with httpx.AsyncClient() as client:
        vertex.bind_client(HttpxTransport(client))
        assert (await vertex.check_health()).healthy
        twin = copy.copy(vertex)  # what the cost budget sends instead of a paid probe
        twin.probe = "models"
        assert (await twin.check_health()).healthy
    assert sim.stats("gcp").requests == 3  # one token, one generateContent, one lookup


async def test_an_express_mode_api_key_needs_no_token(sim: Simulator) -> None:
    result = await probe(sim, None, project=None, api_key=TOKEN, probe="completion")
    assert result.status is ProbeStatus.HEALTHY, result.error
    assert sim.stats("gcp").requests == 1


# -- failures ---------------------------------------------------------------------


async def test_an_assertion_signed_with_another_key_gets_no_token(
    sim: Simulator, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = impostor.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = tmp_path / "impostor.json"
    path.write_text(
        json.dumps(service_account_info(f"{sim.root_url}/gcp/token", private_key_pem=pem))
    )
    result = await probe(sim, path)
    assert result.failure is FailureKind.AUTH
    assert "Invalid JWT Signature" in (result.error or "")
    assert sim.stats("gcp").list_probes == 1  # the token call; the API was never asked


async def test_a_rejected_token_is_an_auth_failure(sim: Simulator, credentials_file: Path) -> None:
    sim.set_behavior("gcp", mode="unauthorized")
    result = await probe(sim, credentials_file)
    assert (result.failure, result.http_status) == (FailureKind.AUTH, 401)


@pytest.mark.parametrize("probe_kind", ["models", "completion"])
async def test_a_model_vertex_does_not_serve_is_model_missing(
    sim: Simulator, credentials_file: Path, probe_kind: str
) -> None:
    result = await probe(sim, credentials_file, model="gemini-nope", probe=probe_kind)
    assert (result.failure, result.http_status) == (FailureKind.MODEL_MISSING, 404), result.error


async def test_quota_exhaustion_is_rate_limited(sim: Simulator, credentials_file: Path) -> None:
    sim.set_behavior("gcp", mode="rate_limited", retry_after=7)
    result = await probe(sim, credentials_file, probe="completion")
    assert (result.failure, result.http_status) == (FailureKind.RATE_LIMITED, 429)
    assert result.retry_after == 7


async def test_a_server_error_is_an_http_status_failure(
    sim: Simulator, credentials_file: Path
) -> None:
    sim.set_behavior("gcp", mode="status", status=503)
    result = await probe(sim, credentials_file)
    assert (result.failure, result.http_status) == (FailureKind.HTTP_STATUS, 503)


async def test_an_access_token_echoed_back_is_redacted(
    sim: Simulator, credentials_file: Path
) -> None:
    sim.set_behavior("gcp", mode="echo_key")
    result = await probe(sim, credentials_file)
    assert result.failure is FailureKind.AUTH
    assert TOKEN not in str(result.to_dict())
    assert "***" in (result.error or "")


# -- requests and configuration ---------------------------------------------------


def test_the_location_picks_the_regional_or_the_global_endpoint() -> None:
    assert adapter().base_url == "https://us-central1-aiplatform.googleapis.com"
    regional = adapter(options={"project": "p", "location": "europe-west4"})
    assert regional.base_url == "https://europe-west4-aiplatform.googleapis.com"
    assert adapter(options={"location": "global"}).base_url == "https://aiplatform.googleapis.com"


def test_the_free_probe_reads_the_publisher_model_and_the_paid_one_runs_it() -> None:
    free = adapter(model=CLAUDE).build_request()
    assert free.method == "GET"
    assert free.url == (
        "https://us-central1-aiplatform.googleapis.com/v1/publishers/anthropic/models/"
        "claude-3-5-haiku"
    )
    paid = adapter(probe="completion").build_request()
    assert paid.url == (
        "https://us-central1-aiplatform.googleapis.com/v1/projects/rh-sim/locations/us-central1/"
        "publishers/google/models/gemini-2.0-flash:generateContent"
    )
    assert paid.json_body["generationConfig"] == {"maxOutputTokens": 1}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gemini-2.0-flash", ("google", "gemini-2.0-flash")),
        ("vertex_ai/gemini-2.0-flash", ("google", "gemini-2.0-flash")),
        ("claude-3-5-haiku@20241022", ("anthropic", "claude-3-5-haiku@20241022")),
        ("meta/llama-3.1-405b-instruct-maas", ("meta", "llama-3.1-405b-instruct-maas")),
        ("publishers/mistralai/models/mistral-large", ("mistralai", "mistral-large")),
    ],
)
def test_the_publisher_comes_from_the_model_id(model: str, expected: tuple[str, str]) -> None:
    assert vertex_model(model) == expected


def test_a_paid_probe_for_a_publisher_without_one_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="'meta'"):
        adapter(model="meta/llama-3.1-405b-instruct-maas", probe="completion")


def test_a_missing_credentials_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="credentials_file"):
        adapter(options={"credentials_file": str(tmp_path / "nope.json")})


def test_a_credentials_file_of_another_kind_points_to_application_default_credentials(
    tmp_path: Path,
) -> None:
    path = tmp_path / "federation.json"
    path.write_text(json.dumps({"type": "external_account", "audience": "//iam.googleapis.com/x"}))
    with pytest.raises(ValueError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        adapter(options={"credentials_file": str(path)})


def test_without_google_auth_the_module_imports_and_building_says_which_extra() -> None:
    script = (
        "import sys; sys.modules['google.auth'] = None\n"
        "import adapters\n"
        "try:\n"
        "    adapters.VertexAIAdapter(provider='p', base_url='https://x.test', model='m')\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == (
        "type 'vertex-ai' needs the vertex extra: pip install 'router-health[vertex]'"
    )

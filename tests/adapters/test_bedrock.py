"""AWS Bedrock: SigV4-signed probes against the simulator, which recomputes every signature.

The chain is the one users run: config -> AdapterManager -> BedrockAdapter
(botocore's signer) -> loopback HTTP -> the simulated Bedrock, which checks
the signature with botocore as AWS does and answers with AWS's documents.
"""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from adapters import BedrockAdapter, FailureKind
from adapters.bedrock import bedrock_model_id
from adapters.transport import HttpxTransport
from service import AdapterManager, ProbeResult, ProbeStatus, parse_config
from service.testing.simulator import Behavior, SimProvider, Simulator
from service.testing.simulator.bedrock import SIM_ACCESS_KEY_ID

SECRET = "rhtestkey-bedrock/Secret+0123456789abcdefXYZ"
SESSION_TOKEN = "rhtestkey-session-token-FwoGZXIvYXdzEJr"
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
PROFILE = "us.anthropic.claude-3-haiku-20240307-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    return [
        SimProvider("aws", "bedrock", SECRET, [CLAUDE, PROFILE, TITAN, COHERE], Behavior(latency=0))
    ]


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The variables the configs name; nothing of a real AWS setup leaks in."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in (
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SIM_AWS_KEY_ID", SIM_ACCESS_KEY_ID)
    monkeypatch.setenv("SIM_AWS_SECRET", SECRET)
    monkeypatch.setenv("SIM_AWS_TOKEN", SESSION_TOKEN)


def entry(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "aws",
        "type": "bedrock",
        "base_url": sim.base_url("aws"),
        "model": CLAUDE,
        "region": "us-east-1",
        "aws_access_key_id_env": "SIM_AWS_KEY_ID",
        "aws_secret_access_key_env": "SIM_AWS_SECRET",
    }
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


async def probe(sim: Simulator, **overrides: Any) -> ProbeResult:
    config = parse_config(
        {
            "checks": {"adapter_timeout": 5.0, "recheck_timeouts": False},
            "models": [{"name": "m", "providers": [entry(sim, **overrides)]}],
        },
        env={},
    )
    async with AdapterManager.from_config(config) as manager:
        report = await manager.health_checker.run(manager.model_adapters)
    return report.models["m"].results["aws"]


def adapter(**kwargs: Any) -> BedrockAdapter:
    options = {
        "region": "us-east-1",
        "aws_access_key_id_env": "SIM_AWS_KEY_ID",
        "aws_secret_access_key_env": "SIM_AWS_SECRET",
    }
    options.update(kwargs.pop("options", {}))
    return BedrockAdapter(
        provider="aws",
        base_url=kwargs.pop("base_url", BedrockAdapter.default_base_url),
        model=kwargs.pop("model", CLAUDE),
        options={k: v for k, v in options.items() if v is not None},
        **kwargs,
    )


# -- healthy, and what each probe costs -------------------------------------------


@pytest.mark.parametrize(
    "model", [CLAUDE, PROFILE, f"arn:aws:bedrock:us-east-1::foundation-model/{CLAUDE}"]
)
async def test_free_probe_looks_the_model_up_and_bills_nothing(sim: Simulator, model: str) -> None:
    result = await probe(sim, model=model)
    assert result.status is ProbeStatus.HEALTHY, result.error
    stats = sim.stats("aws")
    assert (stats.list_probes, stats.completion_probes, stats.billed_tokens) == (1, 0, 0)


async def test_paid_probe_is_a_one_token_converse_counting_its_usage(sim: Simulator) -> None:
    result = await probe(sim, probe="completion")
    assert result.status is ProbeStatus.HEALTHY, result.error
    assert result.tokens == 2  # usage.totalTokens
    stats = sim.stats("aws")
    assert (stats.completion_probes, stats.max_tokens_requested) == (1, 1)


async def test_litellm_route_prefixes_and_inference_profiles_reach_converse(sim: Simulator) -> None:
    result = await probe(sim, model=f"bedrock/converse/{PROFILE}", probe="completion")
    assert result.status is ProbeStatus.HEALTHY, result.error
    assert bedrock_model_id(f"bedrock/converse/{PROFILE}") == PROFILE


@pytest.mark.parametrize(("model", "tokens"), [(TITAN, 1), (COHERE, None)], ids=["titan", "cohere"])
async def test_embedding_models_get_one_invoke_with_one_word(
    sim: Simulator, model: str, tokens: int | None
) -> None:
    result = await probe(sim, model=model, mode="embedding", probe="completion")
    assert result.status is ProbeStatus.HEALTHY, result.error
    assert result.tokens == tokens  # Cohere's count is in a header only
    assert sim.stats("aws").completion_probes == 1


async def test_wildcard_lists_the_foundation_models(sim: Simulator) -> None:
    result = await probe(sim, model="*")
    assert result.status is ProbeStatus.HEALTHY, result.error
    assert result.listed_models == (TITAN, CLAUDE, COHERE)  # sorted; profiles are not listed
    assert sim.stats("aws").completion_probes == 0


async def test_temporary_credentials_send_their_session_token_signed(sim: Simulator) -> None:
    result = await probe(sim, aws_session_token_env="SIM_AWS_TOKEN", probe="completion")
    assert result.status is ProbeStatus.HEALTHY, result.error


async def test_a_bedrock_api_key_is_sent_as_a_bearer_token(sim: Simulator) -> None:
    result = await probe(
        sim, aws_access_key_id_env=None, aws_secret_access_key_env=None, api_key=SECRET
    )
    assert result.status is ProbeStatus.HEALTHY, result.error


async def test_the_default_chain_is_used_when_no_env_options_are_given(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SIM_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    result = await probe(sim, aws_access_key_id_env=None, aws_secret_access_key_env=None)
    assert result.status is ProbeStatus.HEALTHY, result.error


async def test_no_credentials_anywhere_is_an_auth_failure_saying_where_to_put_them(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in (
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    result = await probe(sim, aws_access_key_id_env=None, aws_secret_access_key_env=None)
    assert result.failure is FailureKind.AUTH
    assert "no AWS credentials found" in (result.error or "")
    assert sim.stats("aws").requests == 0  # nothing unsigned was sent


async def test_the_signed_body_is_the_one_the_proxy_transport_sends(sim: Simulator) -> None:
    # Behind a proxy the manager gives the adapter an httpx transport: the
    # simulator's signature check proves httpx sent the very bytes signed.
    bedrock = adapter(base_url=sim.base_url("aws"), probe="completion")
    async with httpx.AsyncClient() as client:
        bedrock.bind_client(HttpxTransport(client))
        outcome = await bedrock.check_health()
    assert outcome.healthy, outcome.error
    assert outcome.tokens == 2


# -- failures ---------------------------------------------------------------------


async def test_a_wrong_secret_is_a_signature_mismatch_and_an_auth_failure(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIM_AWS_SECRET", "rhtestkey-bedrock/Wrong+0123456789abcdef")
    result = await probe(sim)
    assert (result.failure, result.http_status) == (FailureKind.AUTH, 403)
    assert "signature we calculated does not match" in (result.error or "")


async def test_an_unknown_access_key_is_an_auth_failure(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIM_AWS_KEY_ID", "AKIAUNKNOWNKEY000000")
    result = await probe(sim, probe="completion")
    assert (result.failure, result.http_status) == (FailureKind.AUTH, 403)
    assert "security token included in the request is invalid" in (result.error or "")


@pytest.mark.parametrize("probe_kind", ["models", "completion"])
async def test_a_model_bedrock_does_not_know_is_model_missing(
    sim: Simulator, probe_kind: str
) -> None:
    result = await probe(sim, model="anthropic.claude-nope-v9:0", probe=probe_kind)
    assert result.failure is FailureKind.MODEL_MISSING, result.error


async def test_an_unknown_inference_profile_is_model_missing(sim: Simulator) -> None:
    result = await probe(sim, model="eu.anthropic.claude-3-haiku-20240307-v1:0")
    assert result.failure is FailureKind.MODEL_MISSING, result.error


async def test_throttling_is_rate_limited(sim: Simulator) -> None:
    sim.set_behavior("aws", mode="rate_limited", retry_after=7)
    result = await probe(sim, probe="completion")
    assert (result.failure, result.http_status) == (FailureKind.RATE_LIMITED, 429)


async def test_a_server_error_is_an_http_status_failure(sim: Simulator) -> None:
    sim.set_behavior("aws", mode="status", status=503)
    result = await probe(sim)
    assert (result.failure, result.http_status) == (FailureKind.HTTP_STATUS, 503)


async def test_a_session_token_echoed_back_is_redacted(sim: Simulator) -> None:
    sim.set_behavior("aws", mode="echo_key")
    result = await probe(sim, aws_session_token_env="SIM_AWS_TOKEN")
    assert result.failure is FailureKind.AUTH
    assert SESSION_TOKEN not in str(result.to_dict())
    assert "***" in (result.error or "")


# -- requests, signing and configuration ------------------------------------------


def test_the_free_probe_asks_the_control_plane_and_the_paid_one_the_runtime() -> None:
    free = adapter().build_request()
    assert free.method == "GET"
    assert free.url == (
        "https://bedrock.us-east-1.amazonaws.com/foundation-models/"
        "anthropic.claude-3-haiku-20240307-v1%3A0"  # encoded as botocore encodes it
    )
    profile = adapter(model=PROFILE).build_request()
    assert profile.url.startswith("https://bedrock.us-east-1.amazonaws.com/inference-profiles/us.")
    paid = adapter(probe="completion").build_request()
    assert paid.url.startswith("https://bedrock-runtime.us-east-1.amazonaws.com/model/")
    assert paid.url.endswith("/converse")
    assert paid.content == (
        b'{"messages":[{"role":"user","content":[{"text":"ping"}]}],'
        b'"inferenceConfig":{"maxTokens":1}}'
    )


def test_requests_are_signed_for_the_bedrock_service_in_the_region() -> None:
    request = adapter(options={"region": "eu-west-3"}).build_request()
    authorization = request.headers["Authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={SIM_ACCESS_KEY_ID}/")
    assert "/eu-west-3/bedrock/aws4_request" in authorization
    assert "SignedHeaders=host;x-amz-date" in authorization
    assert request.headers["Host"] == "bedrock.eu-west-3.amazonaws.com"


def test_the_region_can_come_from_the_environment_the_profile_or_the_base_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_REGION", "ap-northeast-1")
    assert adapter(options={"region": None}).region == "ap-northeast-1"
    monkeypatch.delenv("AWS_REGION")
    profile = tmp_path / "aws-config"
    profile.write_text("[default]\nregion = sa-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(profile))
    assert adapter(options={"region": None}, base_url="https://gateway.test").region == "sa-east-1"
    vpc = "https://vpce-0abc.bedrock-runtime.eu-central-1.vpce.amazonaws.com"
    from_url = adapter(options={"region": None}, base_url=vpc)
    assert from_url.region == "eu-central-1"
    assert from_url.control_url == "https://vpce-0abc.bedrock.eu-central-1.vpce.amazonaws.com"


def test_secrets_stay_out_of_repr_and_are_redaction_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bedrock = adapter(options={"aws_session_token_env": "SIM_AWS_TOKEN"})
    assert SECRET not in repr(bedrock) and SESSION_TOKEN not in repr(bedrock)
    revealed = {secret.reveal() for secret in bedrock.secrets}
    assert {SECRET, SESSION_TOKEN} <= revealed


def test_signing_with_debug_logging_on_logs_no_session_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # botocore's add_auth logs the canonical request, which holds the token.
    caplog.set_level(logging.DEBUG)
    request = adapter(options={"aws_session_token_env": "SIM_AWS_TOKEN"}).build_request()
    assert request.headers["X-Amz-Security-Token"] == SESSION_TOKEN
    assert "x-amz-security-token" in request.headers["Authorization"]  # signed
    assert SESSION_TOKEN not in caplog.text
    assert all(SESSION_TOKEN not in repr(record.args) for record in caplog.records)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"region": None}, "needs a region"),
        ({"region": "mars-1"}, "not an AWS region"),
        ({"aws_secret_access_key_env": None}, "set both aws_access_key_id_env"),
        ({"aws_secret_access_key_env": "NOT_SET_ANYWHERE"}, "NOT_SET_ANYWHERE, which is not set"),
    ],
    ids=["no-region", "bad-region", "half-a-key", "unset-variable"],
)
def test_configuration_mistakes_are_one_line_errors(options: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        adapter(options=options)


def test_an_embedding_model_of_an_unknown_family_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="Titan"):
        adapter(model="amazon.nova-embed-v1:0", mode="embedding", probe="completion")


def test_without_botocore_the_module_imports_and_building_says_which_extra() -> None:
    script = (
        "import sys; sys.modules['botocore'] = None\n"
        "import adapters\n"
        "try:\n"
        "    adapters.BedrockAdapter(provider='p', base_url='https://x.test', model='m')\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == (
        "type 'bedrock' needs the bedrock extra: pip install 'router-health[bedrock]'"
    )


async def test_credentials_are_resolved_once_for_overlapping_probes_and_copies(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SIM_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    bedrock = adapter(
        base_url=sim.base_url("aws"),
        options={"aws_access_key_id_env": None, "aws_secret_access_key_env": None},
    )
    resolutions = 0
    resolve = bedrock._default_chain

    def counted() -> Any:
        nonlocal resolutions
        resolutions += 1
        return resolve()

    monkeypatch.setattr(bedrock, "_default_chain", counted)
    async with httpx.AsyncClient() as client:
        bedrock.bind_client(HttpxTransport(client))
        outcomes = []
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(_append, outcomes, bedrock)
        # The cost budget's free twin is a shallow copy: it signs with the same keys.
        twin = copy.copy(bedrock)
        twin.probe = "models"
        outcomes.append(await twin.check_health())
    assert all(o.healthy for o in outcomes), outcomes
    assert resolutions == 1


async def _append(outcomes: list[Any], bedrock: BedrockAdapter) -> None:
    outcomes.append(await bedrock.check_health())

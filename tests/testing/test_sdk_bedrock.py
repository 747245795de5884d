"""The simulated Bedrock driven by boto3, the client AWS users run.

boto3 signs with botocore's SigV4 and parses AWS's rest-json answers and
errors; if its ``bedrock`` client lists and gets foundation models, its
``bedrock-runtime`` client runs a Converse, and a wrong secret raises its
``ClientError`` with AWS's error code, the simulated wire is AWS's as far as
a client can tell. boto3 is synchronous: each call runs in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
import trio
from botocore.config import Config
from botocore.exceptions import ClientError

from service.testing.simulator import Behavior, SimProvider, Simulator
from service.testing.simulator.bedrock import SIM_ACCESS_KEY_ID

SECRET = "rhtestkey-boto3/Secret+0123456789abcdefXYZ"
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
PROFILE = "us.anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    return [SimProvider("aws", "bedrock", SECRET, [CLAUDE, PROFILE], Behavior(latency=0))]


def client(
    sim: Simulator, service: str, *, secret: str = SECRET, key_id: str = SIM_ACCESS_KEY_ID
) -> Any:
    """A boto3 client of the simulator, as AWS's docs build one; no retries: one call, one request."""
    return boto3.client(
        service,
        endpoint_url=sim.base_url("aws"),
        region_name="us-west-2",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}),
    )


async def call(function: Callable[[], Any]) -> Any:
    return await trio.to_thread.run_sync(function)


async def error_code(function: Callable[[], Any]) -> tuple[str, int]:
    with pytest.raises(ClientError) as raised:
        await call(function)
    response = raised.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


async def test_list_foundation_models_answers_the_served_models(sim: Simulator) -> None:
    bedrock = client(sim, "bedrock")
    answer = await call(bedrock.list_foundation_models)
    assert [m["modelId"] for m in answer["modelSummaries"]] == [CLAUDE]
    assert sim.stats("aws").list_probes == 1


async def test_get_foundation_model_answers_its_details(sim: Simulator) -> None:
    bedrock = client(sim, "bedrock")
    answer = await call(lambda: bedrock.get_foundation_model(modelIdentifier=CLAUDE))
    details = answer["modelDetails"]
    assert (details["modelId"], details["modelLifecycle"]["status"]) == (CLAUDE, "ACTIVE")


async def test_get_inference_profile_answers_an_active_profile(sim: Simulator) -> None:
    bedrock = client(sim, "bedrock")
    answer = await call(lambda: bedrock.get_inference_profile(inferenceProfileIdentifier=PROFILE))
    assert (answer["inferenceProfileId"], answer["status"]) == (PROFILE, "ACTIVE")


async def test_converse_answers_with_usage_and_a_stop_reason(sim: Simulator) -> None:
    runtime = client(sim, "bedrock-runtime")
    answer = await call(
        lambda: runtime.converse(
            modelId=PROFILE,
            messages=[{"role": "user", "content": [{"text": "ping"}]}],
            inferenceConfig={"maxTokens": 1},
        )
    )
    assert answer["stopReason"] == "max_tokens"
    assert answer["usage"]["totalTokens"] == 2
    assert answer["output"]["message"]["content"][0]["text"]
    stats = sim.stats("aws")
    assert (stats.completion_probes, stats.max_tokens_requested, stats.billed_tokens) == (1, 1, 2)


async def test_a_wrong_secret_raises_an_invalid_signature_client_error(sim: Simulator) -> None:
    bedrock = client(sim, "bedrock", secret="rhtestkey-boto3/Wrong+0123456789abcdef")
    assert await error_code(bedrock.list_foundation_models) == ("InvalidSignatureException", 403)
    runtime = client(sim, "bedrock-runtime", secret="rhtestkey-boto3/Wrong+0123456789abcdef")
    converse = await error_code(
        lambda: runtime.converse(
            modelId=CLAUDE, messages=[{"role": "user", "content": [{"text": "ping"}]}]
        )
    )
    assert converse == ("InvalidSignatureException", 403)


async def test_an_unknown_access_key_raises_an_unrecognized_client_error(sim: Simulator) -> None:
    bedrock = client(sim, "bedrock", key_id="AKIAUNKNOWNKEY000000")
    assert await error_code(bedrock.list_foundation_models) == (
        "UnrecognizedClientException",
        403,
    )


async def test_an_unknown_model_raises_aws_own_error_codes(sim: Simulator) -> None:
    bedrock = client(sim, "bedrock")
    missing = await error_code(lambda: bedrock.get_foundation_model(modelIdentifier="x.nope-v1:0"))
    assert missing == ("ResourceNotFoundException", 404)
    runtime = client(sim, "bedrock-runtime")
    invalid = await error_code(
        lambda: runtime.converse(
            modelId="x.nope-v1:0", messages=[{"role": "user", "content": [{"text": "ping"}]}]
        )
    )
    assert invalid == ("ValidationException", 400)


async def test_throttling_raises_a_throttling_exception(sim: Simulator) -> None:
    sim.set_behavior("aws", mode="rate_limited")
    runtime = client(sim, "bedrock-runtime")
    throttled = await error_code(
        lambda: runtime.converse(
            modelId=CLAUDE, messages=[{"role": "user", "content": [{"text": "ping"}]}]
        )
    )
    assert throttled == ("ThrottlingException", 429)

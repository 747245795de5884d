"""``POST /v1/health/observations``: traffic reports over HTTP, into the passive strategy.

Every test serves the real app over loopback (hypercorn, ``tests/support/served.py``)
with the simulator upstream; ``gpt-4``'s ``openai`` is passive (judged by reports),
the other providers are probed as usual.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import schemathesis
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quart_trio import QuartTrio

from adapters.base import FailureKind, Secret
from service import AdapterManager, Config, ConfigError, parse_config
from service.api.app import create_app, get_manager
from service.api.openapi import openapi_spec
from service.api.routes_observe import TokenBucket
from service.testing.simulator import SimProvider, Simulator
from tests.support.served import GUARD, config_for, served, simulated_fleet

TOKEN = "rhtesttoken-observe-5c2e9a41"
AUTH_TOKEN = "rhtesttoken-auth-77d1b0f3e2"
MODELS = {"gpt-4": ("openai", "openai-backup"), "claude-3-haiku": ("anthropic",)}
PASSIVE = "openai"  # gpt-4's passive provider
KINDS = ", ".join(kind.value for kind in FailureKind)


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    return simulated_fleet()


def observing_config(
    sim: Simulator, *, token: bool = True, server: Mapping[str, Any] | None = None
) -> Config:
    document = config_for(
        sim,
        {"timeout": 10, "model_timeout": 10, "adapter_timeout": 10},
        {**({"observe_token": TOKEN} if token else {}), **(server or {})},
        MODELS,
    )
    for model in document["models"]:
        for entry in model["providers"]:
            if entry["name"] == PASSIVE:
                entry["probe"] = "passive"
    return parse_config(document, source="<observations>", env={})


@asynccontextmanager
async def observing(
    sim: Simulator,
    *,
    token: bool = True,
    server: Mapping[str, Any] | None = None,
    guard: float = GUARD * 4,
) -> AsyncIterator[tuple[httpx.AsyncClient, QuartTrio]]:
    """The app served on loopback (observe_token set unless ``token`` is False), and a client."""
    app = create_app(observing_config(sim, token=token, server=server))
    with trio.fail_after(guard):
        async with served(app) as client:
            yield client, app


async def report(
    client: httpx.AsyncClient,
    body: Any = None,
    *,
    raw: bytes | None = None,
    token: str | None = TOKEN,
    content_type: str = "application/json",
) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if raw is None else raw
    response = await client.post("/v1/health/observations", content=data, headers=headers)
    assert response.headers["content-type"] == "application/json"
    assert b"Traceback" not in response.content
    return response


def seen(**fields: Any) -> dict[str, Any]:
    """An observation of gpt-4 on its passive provider, ``fields`` added."""
    return {"model": "gpt-4", "provider": PASSIVE, **fields}


def passive_verdict(manager: AdapterManager) -> dict[str, Any] | None:
    adapter = manager.model_adapters["gpt-4"][0]
    verdict = manager.health_checker.passive.verdict("gpt-4", adapter)
    if verdict is None:
        return None
    shown = verdict.to_dict()
    del shown["checked_at"]  # the wall clock at each report
    return shown


# -- config ---------------------------------------------------------------------------------


def _server(server: dict[str, Any], env: Mapping[str, str] | None = None) -> Config:
    provider = {"name": "p", "type": "ollama"}
    document = {"server": server, "models": [{"name": "m", "providers": [provider]}]}
    return parse_config(document, source="<test>", env=env or {})


def test_the_observe_token_comes_from_the_environment_or_the_file_and_is_never_shown() -> None:
    from_env = _server({"observe_token_env": "RH_OBSERVE"}, {"RH_OBSERVE": TOKEN})
    literal = _server({"observe_token": TOKEN})
    assert from_env.server.observe_token == literal.server.observe_token == Secret(TOKEN)
    assert TOKEN not in repr(from_env) + repr(literal)
    defaults = _server({}).server
    assert defaults.observe_token is None
    assert (defaults.max_observations_per_request,
            defaults.max_observation_requests_per_second) == (1000, 50.0)


@pytest.mark.parametrize(
    ("server", "env", "expected"),
    [
        ({"observe_token": TOKEN, "observe_token_env": "RH_OBSERVE"}, {"RH_OBSERVE": TOKEN},
         "server: set observe_token_env or observe_token, not both"),
        ({"observe_token_env": "RH_OBSERVE"}, {},
         "server.observe_token_env: environment variable RH_OBSERVE is not set (or empty); "
         "export RH_OBSERVE=... before starting, or remove observe_token_env to refuse "
         "observations"),
        ({"observe_token": "short-token"}, {},
         "server.observe_token: the token must be at least 16 visible ASCII characters with "
         "no spaces (got 11 characters)"),
        ({"observe_token": 12345678901234567890}, {},
         "server.observe_token: must be a string, got a int"),
        ({"observe_token": TOKEN, "auth_token_env": "RH_AUTH"}, {"RH_AUTH": TOKEN},
         "server.observe_token: must differ from auth_token: each grants what the other "
         "does not"),
        ({"max_observations_per_request": 0}, {},
         "server.max_observations_per_request: must be 1 to 10,000 (observations one request "
         "may carry), got 0"),
        ({"max_observations_per_request": 10_001}, {},
         "server.max_observations_per_request: must be 1 to 10,000"),
        ({"max_observations_per_request": 5.5}, {},
         "server.max_observations_per_request: must be an integer"),
        ({"max_observation_requests_per_second": 0}, {},
         "server.max_observation_requests_per_second: must be a finite number > 0 (requests "
         "per second), got 0"),
        ({"max_observation_requests_per_second": math.inf}, {},
         "server.max_observation_requests_per_second: must be a finite number > 0"),
    ],
)
def test_observation_config_mistakes_get_one_clear_line_without_the_token(
    server: dict[str, Any], env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _server(server, env)
    message = str(info.value)
    assert expected in message
    assert len(message.splitlines()) == 1
    assert TOKEN not in message


# -- what reports do ------------------------------------------------------------------------


async def test_reports_feed_the_passive_strategy_exactly_like_the_python_call(
    sim: Simulator,
) -> None:
    batch: list[dict[str, Any]] = [
        {"ok": True, "status_code": 200, "latency_ms": 40},
        {"ok": True, "latency_ms": 10.5, "error_kind": None, "at": time.time() - 5},
        {"ok": False, "status_code": 503},
        {"ok": False, "error_kind": "timeout", "latency_ms": 30000},
        {"ok": False, "status_code": 429},
    ]
    async with observing(sim) as (client, app):
        response = await report(client, {"observations": [seen(**o) for o in batch]})
        over_http = passive_verdict(get_manager(app))
    by_call = AdapterManager.from_config(observing_config(sim))
    for o in batch:
        assert by_call.observe(
            "gpt-4", PASSIVE, ok=o["ok"], latency_ms=o.get("latency_ms"),
            http_status=o.get("status_code"), failure=o.get("error_kind"),
        )
    assert (response.status_code, response.json()) == (
        200, {"accepted": 5, "ignored": 0, "rejected": []})
    assert over_http is not None
    assert over_http == passive_verdict(by_call)
    assert (over_http["status"], over_http["samples"], over_http["failure"]) == (
        "unhealthy", 5, "rate_limited")  # the last failure says why


async def test_reported_traffic_decides_the_checks_and_nothing_is_sent_to_that_provider(
    sim: Simulator,
) -> None:
    async with observing(sim) as (client, _):
        failing = [seen(ok=False, status_code=503, latency_ms=80) for _ in range(3)]
        assert (await report(client, {"observations": failing})).json()["accepted"] == 3
        checked = await client.get("/v1/health/models/gpt-4")
    detail = checked.json()["details"][PASSIVE]
    assert (detail["status"], detail["source"], detail["samples"], detail["http_status"]) == (
        "unhealthy", "passive", 3, 503)
    assert sim.stats(PASSIVE).requests == 0  # judged by the reports alone
    assert sim.stats("openai-backup").requests == 1  # the other provider was probed


async def test_reports_for_adapters_that_are_not_passive_are_ignored_not_rejected(
    sim: Simulator,
) -> None:
    async with observing(sim) as (client, app):
        response = await report(client, {"observations": [
            {"model": "gpt-4", "provider": "openai-backup", "ok": False, "status_code": 500},
            {"model": "claude-3-haiku", "provider": "anthropic", "ok": True},
            seen(ok=True),
        ]})
        assert passive_verdict(get_manager(app)) is not None
    assert response.json() == {"accepted": 1, "ignored": 2, "rejected": []}


async def test_an_empty_batch_is_taken(sim: Simulator) -> None:
    async with observing(sim) as (client, _):
        response = await report(client, {"observations": []})
    assert (response.status_code, response.json()) == (
        200, {"accepted": 0, "ignored": 0, "rejected": []})


# -- each bad entry: its index and its own message ------------------------------------------

# (the observation, or the raw JSON text of it; the message it is rejected with)
BAD_ENTRIES: list[tuple[Any, str]] = [
    ("gpt-4", "an observation must be a JSON object, got a string"),
    ([seen(ok=True)], "an observation must be a JSON object, got a list"),
    (None, "an observation must be a JSON object, got null"),
    ({}, "model is required: a configured model name (string, required)"),
    ({"provider": PASSIVE, "ok": True},
     "model is required: a configured model name (string, required)"),
    (seen(model=4, ok=True), "model must be a configured model name (string, required), "
     "got a number"),
    (seen(model="", ok=True), "model must be a configured model name (string, required), "
     "got an empty string"),
    ({"model": "gpt-4", "ok": True},
     "provider is required: one of that model's provider names (string, required)"),
    (seen(), "ok is required: true or false"),
    (seen(ok="true"), "ok must be true or false, got a string"),
    (seen(ok=1), "ok must be true or false, got a number"),
    (seen(model="gpt4", ok=True),
     "unknown model 'gpt4'; did you mean 'gpt-4'? (configured: gpt-4, claude-3-haiku)"),
    (seen(model="mistral", ok=True),
     "unknown model 'mistral'; configured: gpt-4, claude-3-haiku"),
    (seen(provider="opena1", ok=True), "model 'gpt-4' has no provider 'opena1'; did you "
     "mean 'openai'? (configured: openai, openai-backup)"),
    (seen(provider="anthropic", ok=True), "model 'gpt-4' has no provider 'anthropic'; "
     "configured: openai, openai-backup"),
    (seen(ok=False, status_code=600), "status_code must be an HTTP status 100..599, got 600"),
    (seen(ok=False, status_code=99), "status_code must be an HTTP status 100..599, got 99"),
    (seen(ok=False, status_code=200.0),
     "status_code must be an HTTP status 100..599, got 200.0"),
    (seen(ok=False, status_code="503"),
     "status_code must be an integer HTTP status 100..599 or null, got a string"),
    (seen(ok=False, status_code=True),
     "status_code must be an integer HTTP status 100..599 or null, got a boolean"),
    (seen(ok=True, latency_ms=-1), "latency_ms must be a finite number >= 0, got -1"),
    (seen(ok=True, latency_ms=math.nan), "latency_ms must be a finite number >= 0, got nan"),
    ('{"model": "gpt-4", "provider": "openai", "ok": true, "latency_ms": 1e999}',
     "latency_ms must be a finite number >= 0, got inf"),
    (seen(ok=True, latency_ms=-math.inf), "latency_ms must be a finite number >= 0, got -inf"),
    (seen(ok=True, latency_ms=[1]),
     "latency_ms must be a finite number of ms >= 0 or null, got a list"),
    (seen(ok=False, error_kind="tmeout"), f"unknown error_kind 'tmeout'; expected one of {KINDS}"),
    (seen(ok=False, error_kind=5), 'error_kind must be a failure kind, e.g. "timeout" or null, '
     "got a number"),
    (seen(ok=False, error_kind="x" * 5000),
     f"unknown error_kind '{'x' * 60}...'; expected one of {KINDS}"),
    (seen(ok=True, error_kind="timeout"),
     "an observation with ok true has no error_kind, got error_kind='timeout'"),
    (seen(ok=True, at="now"), "at must be unix seconds, e.g. 1796168230.2 or null, got a string"),
    (seen(ok=True, at=math.inf), "at must be finite unix seconds, got inf"),
    (seen(ok=True, latncy_ms=5), "unknown field 'latncy_ms'; did you mean 'latency_ms'?"),
    (seen(ok=True, zzz=5), "unknown field 'zzz'; accepted: model, provider, ok, status_code, "
     "error_kind, latency_ms, at"),
]


async def test_each_bad_entry_is_rejected_with_its_index_and_message_and_the_good_are_applied(
    sim: Simulator,
) -> None:
    good = json.dumps(seen(ok=True, latency_ms=12, status_code=200))
    texts: list[str] = []
    expected: list[dict[str, Any]] = []
    for entry, message in BAD_ENTRIES:
        texts.append(good)  # a good one between every two bad ones
        expected.append({"index": len(texts), "error": message})
        texts.append(entry if isinstance(entry, str) and entry.startswith("{") else json.dumps(entry))
    raw = ('{"observations": [' + ", ".join(texts) + "]}").encode()
    async with observing(sim, server={"max_observations_per_request": 100}) as (client, app):
        response = await report(client, raw=raw)
        verdict = passive_verdict(get_manager(app))
    assert response.status_code == 200
    answer = response.json()
    assert answer["rejected"] == expected
    assert (answer["accepted"], answer["ignored"]) == (len(BAD_ENTRIES), 0)
    assert verdict is not None and verdict["samples"] == len(BAD_ENTRIES)  # only the good ones


async def test_at_further_than_the_allowed_skew_is_rejected_saying_by_how_much(
    sim: Simulator,
) -> None:
    now = time.time()
    batch = [seen(ok=True, at=now + 3600), seen(ok=True, at=now - 7200), seen(ok=True, at=now)]
    async with observing(sim) as (client, _):
        answer = (await report(client, {"observations": batch})).json()
    ahead, behind = (r["error"] for r in answer["rejected"])
    assert ahead.startswith("at is 3,6") and ahead.endswith(
        " s ahead of this server's clock; at most 60 s of skew is accepted (at is unix "
        "seconds: check the reporter's clock)")
    assert behind.startswith("at is 7,2") and behind.endswith(
        " s in the past; observations older than 60 s are refused (they would count as "
        "fresh traffic)")
    assert [r["index"] for r in answer["rejected"]] == [0, 1]
    assert answer["accepted"] == 1


async def test_a_repeated_key_counts_once_with_its_last_value(sim: Simulator) -> None:
    raw = (b'{"observations": [], "observations": [{"model": "nope", "model": "gpt-4", '
           b'"provider": "openai", "ok": "no", "ok": true}]}')
    async with observing(sim) as (client, _):
        response = await report(client, raw=raw)
    assert response.json() == {"accepted": 1, "ignored": 0, "rejected": []}


async def test_many_configured_models_give_a_few_close_names_not_the_list(sim: Simulator) -> None:
    many = {**MODELS, **{f"model-{n:03}": ("anthropic",) for n in range(30)}}
    document = config_for(sim, {}, {"observe_token": TOKEN}, many)
    app = create_app(parse_config(document, source="<many>", env={}))
    async with served(app) as client:
        answer = (await report(client, {"observations": [seen(model="model-0077", ok=True)]})).json()
    message = answer["rejected"][0]["error"]
    assert message.startswith("unknown model 'model-0077'; did you mean 'model-007'")
    assert message.endswith("? (32 configured)")
    assert "gpt-4" not in message


# -- the body as a whole --------------------------------------------------------------------

# (raw body, the 400's field, its message)
BAD_BODIES: list[tuple[bytes, str, str]] = [
    (b"", "body", "the body is not valid JSON (Expecting value: line 1 column 1 (char 0))"),
    (b'{"observations": [', "body",
     "the body is not valid JSON (Expecting value: line 1 column 19 (char 18))"),
    (b'{"observations": []}\xff', "body", "the body is not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "body", "the body is nested too deeply"),
    (b"[]", "body", "the body must be a JSON object, got a list"),
    (b"NaN", "body", "the body must be a JSON object, got a number"),
    (b"{}", "observations", "observations is required: a list"),
    (b'{"observation": []}', "observation",
     "unknown field 'observation'; did you mean 'observations'?"),
    (b'{"observations": {}}', "observations", "observations must be a list, got an object"),
    (b'{"observations": null}', "observations", "observations must be a list, got null"),
]


async def test_a_body_that_is_not_a_list_of_observations_is_a_400_naming_the_field(
    sim: Simulator,
) -> None:
    async with observing(sim) as (client, app):
        answers = [await report(client, raw=raw) for raw, _, _ in BAD_BODIES]
        assert passive_verdict(get_manager(app)) is None
    for response, (raw, field, message) in zip(answers, BAD_BODIES, strict=True):
        body = response.json()
        assert (response.status_code, body["error"], body["field"], body["message"]) == (
            400, "invalid_body", field, message), raw[:40]
        assert body["accepted"].startswith('a JSON object {"observations": [...]}')


async def test_more_observations_than_allowed_is_a_413_and_none_is_applied(
    sim: Simulator,
) -> None:
    async with observing(sim, server={"max_observations_per_request": 3}) as (client, app):
        response = await report(client, {"observations": [seen(ok=True)] * 4})
        assert passive_verdict(get_manager(app)) is None
    assert (response.status_code, response.json()) == (413, {
        "error": "request_too_large",
        "message": "at most 3 observations per request ([server] max_observations_per_request), "
        "got 4; split the batch",
    })


async def test_a_body_past_1_kb_per_observation_is_a_413_before_it_is_parsed(
    sim: Simulator,
) -> None:
    limit = (3 + 1) * 1024
    padded = b'{"observations": []' + b" " * (limit - 20) + b"}"
    assert len(padded) == limit
    async with observing(sim, server={"max_observations_per_request": 3}) as (client, _):
        at_limit = await report(client, raw=padded)
        past = await report(client, raw=padded + b" ")
    assert (at_limit.status_code, at_limit.json()["accepted"]) == (200, 0)
    assert (past.status_code, past.json()) == (413, {
        "error": "request_too_large",
        "message": "the body is larger than 4,096 bytes (1 KB per observation of [server] "
        "max_observations_per_request); split the batch",
    })


async def test_a_body_that_is_not_json_is_a_415(sim: Simulator) -> None:
    async with observing(sim) as (client, _):
        response = await report(client, raw=b"observations=1", content_type="text/plain")
    assert (response.status_code, response.json()["error"]) == (415, "unsupported_media_type")


# -- the token ------------------------------------------------------------------------------


async def test_without_an_observe_token_the_endpoint_is_not_enabled(sim: Simulator) -> None:
    async with observing(sim, token=False, server={"auth_token": AUTH_TOKEN}) as (client, _):
        answers = [await report(client, {"observations": []}, token=t)
                   for t in (None, TOKEN, AUTH_TOKEN)]
    for response in answers:
        assert (response.status_code, response.json()) == (404, {
            "error": "not_enabled",
            "message": "traffic reports are off: set [server] observe_token_env (or "
            "observe_token) to accept them",
        })


@pytest.mark.parametrize(
    ("token", "challenge", "message"),
    [
        (None, 'Bearer realm="router-health"',
         "this endpoint needs a bearer token: send 'Authorization: Bearer <token>'"),
        ("not-the-token-at-all", 'Bearer realm="router-health", error="invalid_token"',
         "the bearer token is not valid"),
        (AUTH_TOKEN, 'Bearer realm="router-health", error="invalid_token"',
         "the bearer token is not valid"),
    ],
    ids=["missing", "wrong", "the-auth-token"],
)
async def test_a_missing_or_wrong_token_is_a_401_with_a_challenge_and_nothing_is_applied(
    sim: Simulator,
    caplog: pytest.LogCaptureFixture,
    token: str | None,
    challenge: str,
    message: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with observing(sim, server={"auth_token": AUTH_TOKEN}) as (client, app):
        response = await report(client, {"observations": [seen(ok=True)]}, token=token)
        assert passive_verdict(get_manager(app)) is None
        granted = await report(client, {"observations": [seen(ok=True)]})
    assert (response.status_code, response.headers["www-authenticate"]) == (401, challenge)
    assert response.json() == {
        "error": "unauthorized",
        "message": message + "; it takes [server] observe_token, not auth_token",
    }
    assert granted.json()["accepted"] == 1
    assert TOKEN not in caplog.text and AUTH_TOKEN not in caplog.text


async def test_the_observe_token_grants_no_details_history_or_metrics(sim: Simulator) -> None:
    observer = {"Authorization": f"Bearer {TOKEN}"}
    async with observing(sim, server={"auth_token": AUTH_TOKEN}) as (client, _):
        answers = {
            path: await client.get(path, headers=observer)
            for path in ("/v1/health/models/gpt-4", "/v1/health/history", "/metrics")
        }
    for path, response in answers.items():
        assert (response.status_code, response.json()["error"]) == (401, "unauthorized"), path


# -- the rate -------------------------------------------------------------------------------


async def test_past_the_rate_a_request_is_a_429_with_retry_after_and_nothing_is_applied(
    sim: Simulator,
) -> None:
    # One request per 100 s: the second, right after the first, must wait about that long.
    server = {"max_observation_requests_per_second": 0.01}
    async with observing(sim, server=server) as (client, app):
        refused = await report(client, {"observations": []}, token="not-the-token-at-all")
        first = await report(client, {"observations": []})
        second = await report(client, {"observations": [seen(ok=True)]})
        assert passive_verdict(get_manager(app)) is None
    assert refused.status_code == 401  # a refused caller spends none of the rate
    assert first.status_code == 200
    assert second.status_code == 429
    assert 90 <= int(second.headers["retry-after"]) <= 100
    assert second.json() == {
        "error": "rate_limited",
        "message": "observation requests are limited to 0.01 per second ([server] "
        f"max_observation_requests_per_second); retry in {second.headers['retry-after']} s, "
        "or send larger batches",
    }


async def test_the_token_bucket_allows_bursts_and_refills_at_its_rate(
    mock_clock: trio.testing.MockClock,
) -> None:
    bucket = TokenBucket(rate=2.0, burst=2.0)
    assert [bucket.take(), bucket.take()] == [0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    mock_clock.jump(0.25)
    assert bucket.take() == pytest.approx(0.25)  # half a token back: not enough
    mock_clock.jump(0.25)
    assert bucket.take() == 0.0
    mock_clock.jump(60)
    assert [bucket.take(), bucket.take(), bucket.take() > 0] == [0.0, 0.0, True]  # burst cap


# -- metrics --------------------------------------------------------------------------------


async def test_metrics_count_accepted_ignored_and_rejected_observations(sim: Simulator) -> None:
    async with observing(sim) as (client, _):
        before = (await client.get("/metrics")).text
        await report(client, {"observations": [
            seen(ok=True), seen(ok=False, status_code=500),
            {"model": "gpt-4", "provider": "openai-backup", "ok": True},
            seen(ok="yes"), "nonsense", seen(ok=True, latency_ms=-5),
        ]})
        after = (await client.get("/metrics")).text
    for outcome in ("accepted", "ignored", "rejected"):
        assert f'router_health_observations_total{{outcome="{outcome}"}} 0.0' in before
    assert 'router_health_observations_total{outcome="accepted"} 2.0' in after
    assert 'router_health_observations_total{outcome="ignored"} 1.0' in after
    assert 'router_health_observations_total{outcome="rejected"} 3.0' in after


# -- any input at all -----------------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["gpt-4", "openai", "openai-backup", "timeout", "http_status", ""]),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12,
)
_FIELDS = ["model", "provider", "ok", "status_code", "error_kind", "latency_ms", "at"]
#: A valid observation (of any configured adapter, or of a name close to one)...
_VALID = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["gpt-4", "claude-3-haiku", "gpt4"]),
        "provider": st.sampled_from(["openai", "openai-backup", "anthropic"]),
        "ok": st.booleans(),
    },
    optional={
        "status_code": st.integers(100, 599),
        "error_kind": st.sampled_from([kind.value for kind in FailureKind]),
        "latency_ms": st.floats(0, 1e6),
        "at": st.builds(time.time),
    },
)
#: ... with up to two fields (or unknown ones) set to anything, and maybe one left out.
_ENTRIES = st.builds(
    lambda valid, changes, dropped: {
        key: value for key, value in {**valid, **changes}.items() if key not in dropped
    },
    _VALID,
    st.dictionaries(st.sampled_from([*_FIELDS, "extra", ""]), _JSON, max_size=2),
    st.sets(st.sampled_from(_FIELDS), max_size=1),
)
_BODIES = st.one_of(
    _JSON,
    st.fixed_dictionaries({"observations": st.lists(st.one_of(_ENTRIES, _JSON), max_size=8)}),
)


def _throw_any_json(base_url: str, operation: Any) -> list[int]:
    """Post Hypothesis's bodies and check every answer; their status codes (run in a thread)."""
    statuses: list[int] = []
    with httpx.Client(base_url=base_url, timeout=GUARD * 2) as client:

        @settings(
            max_examples=300,
            deadline=None,
            derandomize=True,  # the same examples on every run: a test, not a lottery
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(body=_BODIES)
        def post(body: Any) -> None:
            response = client.post(
                "/v1/health/observations",
                content=json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            )
            statuses.append(response.status_code)
            assert response.status_code in (200, 400, 413), response.text[:300]
            assert response.headers["content-type"] == "application/json"
            assert b"Traceback" not in response.content
            operation.validate_response(response)  # a documented status, and its schema
            answer = response.json()
            if response.status_code == 200:
                entries = body["observations"]
                assert answer["accepted"] + answer["ignored"] + len(answer["rejected"]) == len(
                    entries)
                indexes = [r["index"] for r in answer["rejected"]]
                assert indexes == sorted(set(indexes))
                assert all(len(r["error"]) <= 400 for r in answer["rejected"])

        post()
    return statuses


async def test_no_json_body_at_all_gets_a_500_a_traceback_or_a_hang(sim: Simulator) -> None:
    document = openapi_spec()
    operation = schemathesis.openapi.from_dict(json.loads(json.dumps(document)))[
        "/v1/health/observations"]["POST"]
    server = {"max_observation_requests_per_second": 1e9, "max_observations_per_request": 6}
    async with observing(sim, server=server, guard=150) as (client, _):
        with trio.fail_after(120):
            statuses = await trio.to_thread.run_sync(
                functools.partial(_throw_any_json, str(client.base_url), operation)
            )
        assert (await client.get("/livez")).status_code == 200
    assert len(statuses) >= 300
    assert set(statuses) == {200, 400, 413}  # batches, bodies that are not one, too many

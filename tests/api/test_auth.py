"""Optional bearer-token auth: who may see details and run the expensive endpoint."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from adapters import Secret
from service import ConfigError, parse_config
from service.api.auth import Access, BearerAuth
from tests.support.app import make_app, serving
from tests.support.fakes import Probe, adapter
from tests.support.served import running_service

TOKEN = "rhtesttoken-auth-5d4c3b2a1f"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
WRONG = {"Authorization": "Bearer rhtesttoken-not-the-one-at-all"}
CHECK_ROUTES = ["/v1/health/", "/v1/health/models", "/v1/health/models/gpt-4"]


# -- the checker of credentials ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], Access.ANONYMOUS),
        ([f"Bearer {TOKEN}"], Access.GRANTED),
        ([f"bearer   {TOKEN}  "], Access.GRANTED),
        ([f"BEARER {TOKEN}"], Access.GRANTED),
        ([f"Bearer {TOKEN}x"], Access.DENIED),
        ([f"Bearer {TOKEN[:-1]}"], Access.DENIED),
        (["Bearer"], Access.DENIED),
        (["Bearer "], Access.DENIED),
        ([TOKEN], Access.DENIED),
        ([f"Basic {TOKEN}"], Access.DENIED),
        ([f"Bearer {TOKEN}", f"Bearer {TOKEN}"], Access.DENIED),
        ([f"Bearer {TOKEN}\x00"], Access.DENIED),
        (["Bearer \udcff"], Access.DENIED),
    ],
)
def test_bearer_credentials_are_judged_exactly(headers: list[str], expected: Access) -> None:
    assert BearerAuth(Secret(TOKEN)).check(headers) is expected


def test_without_a_token_configured_everyone_is_granted() -> None:
    auth = BearerAuth(None)
    assert not auth.enabled
    assert auth.check([]) is Access.GRANTED
    assert auth.check(["Bearer whatever"]) is Access.GRANTED


def test_tokens_are_compared_in_constant_time_whatever_their_length(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import service.api.auth

    compared: list[tuple[int, int]] = []
    real = service.api.auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(service.api.auth.hmac, "compare_digest", spy)
    auth = BearerAuth(Secret(TOKEN))
    for candidate in ["x", TOKEN, TOKEN * 10, ""]:
        auth.check([f"Bearer {candidate}"])
    # Every candidate was compared, as fixed-size digests: length leaks nothing.
    assert compared == [(32, 32)] * 4


def test_the_auth_object_never_shows_its_token() -> None:
    auth = BearerAuth(Secret(TOKEN))
    assert TOKEN not in repr(auth) and TOKEN not in str(vars(auth))


def test_challenges_follow_rfc_6750() -> None:
    assert BearerAuth.challenge(Access.ANONYMOUS) == 'Bearer realm="router-health"'
    assert BearerAuth.challenge(Access.DENIED) == (
        'Bearer realm="router-health", error="invalid_token"'
    )


# -- config ----------------------------------------------------------------------------------


def _document(server: dict[str, Any]) -> dict[str, Any]:
    return {"server": server, "models": [{"name": "m", "providers": [{"name": "p", "type": "ollama"}]}]}


def test_the_token_comes_from_the_environment_or_the_file() -> None:
    from_env = parse_config(_document({"auth_token_env": "RH_TOKEN"}), env={"RH_TOKEN": TOKEN})
    literal = parse_config(_document({"auth_token": TOKEN}), env={})
    assert from_env.server.auth_token == literal.server.auth_token == Secret(TOKEN)
    assert from_env.server.auth_token_env == "RH_TOKEN"
    assert TOKEN not in repr(from_env) + repr(literal)
    assert parse_config(_document({}), env={}).server.auth_token is None


@pytest.mark.parametrize(
    ("server", "env", "expected"),
    [
        ({"auth_token": TOKEN, "auth_token_env": "RH_TOKEN"}, {"RH_TOKEN": TOKEN},
         "server: set auth_token_env or auth_token, not both"),
        ({"auth_token_env": "RH_TOKEN"}, {},
         "server.auth_token_env: environment variable RH_TOKEN is not set (or empty)"),
        ({"auth_token_env": "RH_TOKEN"}, {"RH_TOKEN": "short-token"},
         "server.auth_token_env: the token in RH_TOKEN must be at least 16 visible ASCII characters"),
        ({"auth_token": "has spaces in the middle of it"}, {},
         "server.auth_token: the token must be at least 16 visible ASCII characters with no spaces"),
        ({"auth_token": 12345678901234567890}, {}, "server.auth_token: must be a string, got a int"),
        ({"auth_tokn": TOKEN}, {}, "server.auth_tokn: unknown key; did you mean 'auth_token'?"),
    ],
)
def test_auth_config_mistakes_get_one_clear_line_without_the_value(
    server: dict[str, Any], env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_document(server), source="<test>", env=env)
    message = str(info.value)
    assert expected in message
    assert len(message.splitlines()) == 1
    assert "short-token" not in message and "12345678901234567890" not in message


# -- the routes ------------------------------------------------------------------------------------


def _app(probe: Probe, **checks: Any) -> Any:
    app, _ = make_app({"gpt-4": [adapter("openai", probe)]}, checks=checks, server={"auth_token": TOKEN})
    return app


@pytest.mark.parametrize("path", CHECK_ROUTES)
async def test_anonymous_callers_get_the_summary_without_details(path: str) -> None:
    probe = Probe()
    async with serving(_app(probe)) as client:
        anonymous = await client.get(f"{path}?details=true")
        granted = await client.get(f"{path}?details=true", headers=BEARER)
        anonymous_body, granted_body = await anonymous.get_json(), await granted.get_json()
    assert anonymous.status_code == granted.status_code == 200
    assert "details" in str(granted_body) and "details" not in str(anonymous_body)
    assert anonymous_body["status"] == granted_body["status"] == "healthy"


@pytest.mark.parametrize("path", [*CHECK_ROUTES, "/v1/health/performance"])
async def test_a_wrong_token_is_a_401_that_probes_nothing(path: str) -> None:
    probe = Probe()
    async with serving(_app(probe)) as client:
        response = await client.get(path, headers=WRONG)
        body = await response.get_json()
    assert response.status_code == 401
    assert body["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="router-health", error="invalid_token"'
    )
    assert probe.calls == 0


async def test_performance_needs_the_token() -> None:
    probe = Probe()
    async with serving(_app(probe)) as client:
        anonymous = await client.get("/v1/health/performance")
        granted = await client.get("/v1/health/performance", headers=BEARER)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="router-health"'
    assert (await anonymous.get_json())["error"] == "unauthorized"
    assert granted.status_code == 200
    assert probe.calls == 2  # only the granted measurement probed


@pytest.mark.parametrize("path", ["/livez", "/readyz"])
async def test_liveness_and_readiness_stay_open(path: str) -> None:
    async with serving(_app(Probe())) as client:
        for headers in [{}, WRONG, BEARER]:
            response = await client.get(path, headers=headers)
            assert response.status_code == 200


async def test_the_fallback_reason_is_a_detail_too() -> None:
    async def stuck() -> bool:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    app, _ = make_app(
        {"gpt-4": [adapter("openai", Probe()), adapter("stuck", stuck)]},
        checks={"adapter_timeout": 0.05},
        server={"auth_token": TOKEN},
    )
    async with serving(app) as client:
        granted = await (await client.get("/v1/health/", headers=BEARER)).get_json()
        anonymous = await (await client.get("/v1/health/")).get_json()
    assert "re-checked" in granted["fallback_reason"]
    assert "fallback_reason" not in anonymous
    assert anonymous["fallback"] is True  # the v1 field stays


async def test_without_auth_configured_every_caller_gets_details() -> None:
    app, _ = make_app({"gpt-4": [adapter("openai", Probe())]})
    async with serving(app) as client:
        body = await (await client.get("/v1/health/", headers=WRONG)).get_json()
    assert "details" in body


async def test_auth_over_the_wire_answers_401_json_with_a_challenge() -> None:
    async with running_service(server={"auth_token": TOKEN}) as service:
        client = service.client
        anonymous = await client.get("/v1/health/performance")
        summary = await client.get("/v1/health/")
        granted = await client.get("/v1/health/", headers=BEARER)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="router-health"'
    assert anonymous.headers["content-type"] == "application/json"
    assert "details" not in summary.json() and "details" in granted.json()
    assert TOKEN not in anonymous.text + summary.text + granted.text

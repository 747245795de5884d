"""An unknown model or provider is a small 404, however many are configured.

Issue 13, finding 9: with 10,000 models the 404 for an unknown name listed
every one of them — over a megabyte for a 50-byte request, to anonymous
callers. Now ``available`` lists every configured name only while there are
at most ten; past that, at most five close to the name asked for, and the
message says how many are configured. Over real sockets (hypercorn on
loopback); the CLI's message (``UnknownModelError``) follows the same rule.
"""

from __future__ import annotations

from quart_trio import QuartTrio

from service import AdapterManager, UnknownModelError
from tests.support.app import make_app
from tests.support.fakes import Probe, adapter
from tests.support.served import GUARD, served

MANY = 10_000


def name(i: int) -> str:
    """A realistic, longish model name (about 60 characters)."""
    return f"organisation-{i % 40:02d}/model-family-{i % 9}/checkpoint-{i:05d}-instruct"


def big_app() -> tuple[QuartTrio, AdapterManager, Probe]:
    """10,000 models, each with its own provider; nothing is ever probed."""
    probe = Probe()
    app, manager = make_app({name(i): [adapter(f"provider-{i:05d}", probe)] for i in range(MANY)})
    return app, manager, probe




async def test_an_unknown_model_among_10000_is_a_small_404_with_a_few_close_names() -> None:
    app, _, probe = big_app()
    async with served(app, client_timeout=GUARD * 4) as client:
        far = await client.get("/v1/health/models/nope")
        near = await client.get(f"/v1/health/models/{name(1234).replace('1234', '1243')}")
        batch = await client.post("/v1/health/batch", json={"models": ["gpt-5", name(77) + "x"]})
    for response in (far, near, batch):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        assert len(response.content) < 2048, len(response.content)  # was 700 KB here
        body = response.json()
        assert set(body) == {"error", "message", "available"}  # the same fields as before
        assert body["error"] == "unknown_model"
        assert "10,000 configured models" in body["message"]
        assert len(body["available"]) <= 5
    assert far.json()["available"] == []  # nothing is close to "nope"
    assert name(1234) in near.json()["available"]
    assert name(77) in batch.json()["available"]
    assert probe.calls == 0


async def test_an_unknown_provider_among_10000_is_a_small_404_too() -> None:
    app, _, probe = big_app()
    async with served(app, client_timeout=GUARD * 4) as client:
        response = await client.post("/v1/health/batch", json={"providers": ["provider-00042x"]})
    assert response.status_code == 404
    assert len(response.content) < 2048
    body = response.json()
    assert body["error"] == "unknown_provider"
    assert "10,000 configured providers" in body["message"]
    assert 1 <= len(body["available"]) <= 5
    assert body["available"][0] == "provider-00042"
    assert probe.calls == 0


async def test_a_batch_of_a_thousand_unknown_names_costs_what_one_does() -> None:
    app, _, _ = big_app()
    names = [f"{name(i)}-typo" for i in range(1000)]
    async with served(app, client_timeout=GUARD * 4) as client:
        response = await client.post("/v1/health/batch", json={"models": names})
    assert response.status_code == 404
    body = response.json()
    assert len(response.content) < 4096
    assert len(body["available"]) <= 5
    # The message names the first ten only, however many were sent.
    assert body["message"].count("'organisation-") == 10


async def test_a_few_configured_models_are_all_listed_as_before() -> None:
    app, _ = make_app({"gpt-4": [adapter("openai", Probe())], "llama3": [adapter("ollama", Probe())]})
    async with served(app, client_timeout=GUARD * 4) as client:
        response = await client.get("/v1/health/models/gpt-5")
    assert response.status_code == 404
    assert response.json()["available"] == ["gpt-4", "llama3"]
    assert response.json()["message"] == (
        "unknown model 'gpt-5'; 'available' lists the configured models"
    )


def test_the_cli_message_names_a_few_close_models_and_the_count() -> None:
    many = [name(i) for i in range(MANY)]
    message = str(UnknownModelError(name(42) + "x", many))
    assert len(message) < 600
    assert repr(name(42)) in message and "10,000 models configured" in message
    far = str(UnknownModelError("nope", many))
    assert far == "unknown model 'nope'; no configured model is close (10,000 models configured)"
    huge = str(UnknownModelError("x" * 5000, many))
    assert len(huge) < 300
    few = str(UnknownModelError("gpt-5", ["gpt-4", "claude"]))
    assert few == "unknown model 'gpt-5'; configured models: gpt-4, claude"
    assert UnknownModelError("nope", many).available == many  # the whole list stays for code


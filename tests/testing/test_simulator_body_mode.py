"""The simulator's ``body`` mode: any status, a body spelled out, the sent key echoed at ``{key}``."""

from __future__ import annotations

import httpx
import pytest
import trio

from service.testing.simulator import Behavior, SimProvider, Simulator

KEY = "rhtestkey-body-3c5e7a"


async def test_body_mode_answers_the_status_and_body_given_with_the_sent_key_in_place() -> None:
    behavior = Behavior(
        latency=0.0,
        mode="body",
        status=200,
        body="~~{key}~~ {not-a-key}",
        content_type="text/html; charset=utf-8",
    )
    sim = Simulator(
        [
            SimProvider("gw", "openai-compatible", KEY, ["m"], behavior),
            SimProvider(
                "az",
                "azure",
                KEY,
                ["m"],
                Behavior(latency=0.0, mode="body", status=502, body="{key}{key}"),
            ),
            SimProvider(
                "open",
                "ollama",
                None,
                ["m"],
                Behavior(latency=0.0, mode="body", body="sent: [{key}]"),
            ),
        ]
    )
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as client:
        await nursery.start(sim.serve)
        answer = await client.get(
            sim.base_url("gw") + "/models", headers={"Authorization": f"Bearer {KEY}"}
        )
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        assert answer.text == f"~~{KEY}~~ {{not-a-key}}"
        answer = await client.get(
            sim.base_url("az") + "/openai/models",
            headers={"api-key": KEY},
            params={"api-version": "2024-10-21"},
        )
        assert (answer.status_code, answer.text) == (502, KEY * 2)
        answer = await client.get(sim.base_url("open") + "/api/tags")
        assert (answer.status_code, answer.text) == (500, "sent: []")  # no key sent
        # A wrong key is still refused first: the mode answers validated probes only.
        answer = await client.get(
            sim.base_url("gw") + "/models", headers={"Authorization": "Bearer wrong-key-0000"}
        )
        assert answer.status_code == 401
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "changes",
    [{"body": b"bytes"}, {"content_type": ""}, {"content_type": "text/plain\r\nX-Evil: 1"}],
    ids=["body-not-a-string", "empty-content-type", "header-injection"],
)
def test_body_mode_settings_are_validated(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Behavior(mode="body", **changes)  # type: ignore[arg-type]
    sim = Simulator([SimProvider("gw", "openai-compatible", None, ["m"])])
    with pytest.raises(ValueError):
        sim.set_behavior("gw", **changes)

"""GET /v1/health/stream: Server-Sent Events over a real hypercorn, the simulator upstream.

Each test reads the stream with httpx as a browser would and waits on what
arrives (under fail_after guards), never on sleeps.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from service.api.app import EXTENSION_KEY
from service.live.stream import Event, EventHub, sse
from tests.support.served import GUARD, Service, running_service


class SSEReader:
    """Parses an event-stream response into (event, data) pairs."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self) -> tuple[str, dict[str, Any]]:
        kind, data = "message", ""
        async for line in self.lines:
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: "):
                data = line[len("data: "):]
            elif line == "" and data:
                return kind, json.loads(data)
        raise EOFError("the stream ended")

    async def until(self, kind: str) -> dict[str, Any]:
        while True:
            got, data = await self.next()
            if got == kind:
                return data


def hub_of(service: Service) -> EventHub:
    hub: EventHub = service.app.extensions[EXTENSION_KEY].events
    return hub


async def test_results_arrive_one_by_one_while_a_run_is_still_running() -> None:
    async with running_service() as service:
        service.sim.set_behavior("ollama", mode="hang")
        async with service.client.stream("GET", "/v1/health/stream") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            reader = SSEReader(response)
            hello = await reader.until("hello")
            assert hello == {"background": False}
            async with trio.open_nursery() as nursery:
                done = trio.Event()

                async def check() -> None:
                    await service.client.get("/v1/health/?timeout=30")
                    done.set()

                nursery.start_soon(check)
                seen = set()
                with trio.fail_after(GUARD):
                    while len(seen) < 3:  # the three that answer
                        data = await reader.until("result")
                        seen.add((data["model"], data["provider"]))
                        assert data["status"] == "healthy" and "latency_ms" in data
                # ...while the run still waits for the hanging one.
                assert not done.is_set()
                service.sim.set_behavior("ollama", mode="ok")
                nursery.cancel_scope.cancel()
        assert seen == {("gpt-4", "openai"), ("gpt-4", "openai-backup"),
                        ("claude-3-haiku", "anthropic")}


async def test_a_finished_run_is_announced() -> None:
    async with running_service() as service, \
            service.client.stream("GET", "/v1/health/stream") as response:
        reader = SSEReader(response)
        await reader.until("hello")
        await service.client.get("/v1/health/?use_concurrent=false")
        with trio.fail_after(GUARD):
            run = await reader.until("run")
        assert run["strategy"] == "sequential" and run["status"] == "healthy"
        assert run["adapters"] == 4 and run["run_id"]


async def test_background_transitions_are_streamed() -> None:
    async with running_service(checks={"interval": 3600, "jitter": 0}) as service:
        health = service.app.extensions[EXTENSION_KEY].health
        await health.changes.wait_value(lambda n: n >= 4)  # the startup probes are in
        async with service.client.stream("GET", "/v1/health/stream") as response:
            reader = SSEReader(response)
            assert await reader.until("hello") == {"background": True}
            service.sim.set_behavior("anthropic", mode="status", status=500)
            await service.client.get("/v1/health/?fresh=true")
            with trio.fail_after(GUARD):
                change = await reader.until("transition")
        assert change["model"] == "claude-3-haiku" and change["provider"] == "anthropic"
        assert (change["previous"], change["current"]) == ("healthy", "unhealthy")
        assert "HTTP 500" in change["error"]


async def test_closing_one_stream_cancels_only_that_subscriber() -> None:
    async with running_service() as service:
        hub = hub_of(service)
        async with service.client.stream("GET", "/v1/health/stream") as keep:
            keeper = SSEReader(keep)
            await keeper.until("hello")
            async with service.client.stream("GET", "/v1/health/stream") as leave:
                await SSEReader(leave).until("hello")
                assert hub.subscribers == 2
            with trio.fail_after(GUARD):
                await hub.open_streams.wait_value(1)  # the server noticed the hang-up
            await service.client.get("/v1/health/")
            with trio.fail_after(GUARD):
                await keeper.until("result")
        with trio.fail_after(GUARD):
            await hub.open_streams.wait_value(0)


async def test_shutdown_ends_open_streams_without_waiting_for_the_grace() -> None:
    async with running_service(server={"shutdown_grace": 30}, guard=20) as service:
        async with service.client.stream("GET", "/v1/health/stream") as response:
            reader = SSEReader(response)
            await reader.until("hello")
            service.stop.set()
            with trio.fail_after(GUARD), pytest.raises((EOFError, httpx.HTTPError)):
                await reader.until("never")
        with trio.fail_after(GUARD):
            await service.stopped.wait()


async def test_auth_guards_the_stream() -> None:
    token = "rhtesttoken-stream-0123456789"
    async with running_service(server={"auth_token": token}) as service:
        response = await service.client.get("/v1/health/stream")
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"
        headers = {"Authorization": f"Bearer {token}"}
        async with service.client.stream("GET", "/v1/health/stream", headers=headers) as ok:
            assert ok.status_code == 200
            await SSEReader(ok).until("hello")


async def test_a_subscriber_that_falls_behind_is_dropped_with_a_last_event() -> None:
    hub = EventHub(buffer=2)
    stream = hub.stream({"background": False})
    first = await stream.__anext__()
    assert b"event: hello" in first
    for i in range(3):  # one more than the buffer
        hub.publish("result", {"i": i})
    assert hub.subscribers == 0 and hub.dropped == 1
    rest = [chunk async for chunk in stream]
    assert [b"event: result" in c for c in rest] == [True, True, False]
    assert b"event: dropped" in rest[-1]
    hub.publish("result", {"i": 99})  # nobody listens: nothing to do
    assert hub.published == 3


def test_sse_framing() -> None:
    assert sse(Event(7, "run", {"a": 1})) == b'id: 7\nevent: run\ndata: {"a":1}\n\n'
    with pytest.raises(ValueError):
        EventHub(buffer=0)

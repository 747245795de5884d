"""The HTTP app through Quart's test client, over in-memory fleets.

``make_app`` builds an app whose manager holds exactly the adapters given;
``serving`` runs its startup and shutdown around a test client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote_to_bytes

import trio
from quart.typing import TestClientProtocol as QuartClient
from quart_trio import QuartTrio

from adapters import Adapter
from service import AdapterManager, Config, parse_config
from service.api.app import create_app
from tests.support.fakes import Probe, adapter, ok

#: ``GET /v1/health/``'s first fields, in the order the API sends them.
V1_TOP_FIELDS = (
    "status",
    "timestamp",
    "models",
    "healthy_models",
    "total_models",
    "execution_time",
    "concurrent",
    "timeout",
)
V1_TOP_KEYS = set(V1_TOP_FIELDS)
#: One model's summary in ``GET /v1/health/``.
V1_MODEL_KEYS = {"status", "providers", "healthy_providers", "total_providers"}


def make_config(
    checks: Mapping[str, Any] | None = None, server: Mapping[str, Any] | None = None
) -> Config:
    """A valid config with ``[checks]``/``[server]`` as given and one placeholder model."""
    placeholder = {
        "name": "placeholder",
        "type": "openai-compatible",
        "base_url": "http://127.0.0.1:9",
    }
    return parse_config(
        {
            "checks": dict(checks or {}),
            "server": dict(server or {}),
            "models": [{"name": "placeholder", "providers": [placeholder]}],
        },
        source="<test>",
        env={},
    )


def make_app(
    fleet: Mapping[str, Sequence[Adapter]],
    *,
    checks: Mapping[str, Any] | None = None,
    server: Mapping[str, Any] | None = None,
) -> tuple[QuartTrio, AdapterManager]:
    """An app whose manager holds exactly ``fleet`` (model -> adapters)."""
    config = make_config(checks, server)
    # The placeholder's HTTP adapter is dropped before the app sees the manager.
    manager = AdapterManager(config)
    manager.model_adapters.clear()
    for model, adapters in fleet.items():
        for each in adapters:
            manager.register_adapter(model, each)
    return create_app(config, manager=manager), manager


def standard_fleet() -> dict[str, list[Adapter]]:
    return {
        "gpt-4": [ok("openai"), ok("azure")],
        "llama3:latest": [ok("ollama")],
    }


def tagged_app(
    fleet: Mapping[str, Sequence[tuple[str, Probe, Sequence[str]]]],
    *,
    server: Mapping[str, Any] | None = None,
) -> QuartTrio:
    """An app over ``fleet``: model -> [(provider, probe, effective tags)]."""
    config = make_config(server=server)
    manager = AdapterManager(config)
    manager.model_adapters.clear()
    for model, entries in fleet.items():
        for provider, probe, tags in entries:
            manager.register_adapter(model, adapter(provider, probe), tags=tags)
    return create_app(config, manager=manager)


class Fleet:
    """gpt-4: openai (cloud, eu), ollama (local, eu); llama3: ollama (local); claude: down."""

    def __init__(self) -> None:
        self.openai, self.ollama, self.llama, self.claude = Probe(), Probe(), Probe(), Probe([False])
        self.app = tagged_app(
            {
                "gpt-4": [
                    ("openai", self.openai, ["cloud", "eu"]),
                    ("ollama", self.ollama, ["local", "eu"]),
                ],
                "llama3": [("ollama", self.llama, ["local"])],
                "claude": [("anthropic", self.claude, ["cloud", "us"])],
            }
        )

    def calls(self) -> list[int]:
        return [p.calls for p in (self.openai, self.ollama, self.llama, self.claude)]


@asynccontextmanager
async def serving(app: QuartTrio) -> AsyncIterator[QuartClient]:
    """Run the app's startup and shutdown around a test client."""
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def get_json(client: QuartClient, path: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(path)
    assert response.content_type == "application/json"
    body = await response.get_json()
    assert isinstance(body, dict)
    return response.status_code, body


def asgi_scope(raw_path: bytes, query: bytes = b"") -> dict[str, Any]:
    """An ASGI ``GET`` scope for ``raw_path`` (sent as is) and ``query``."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote_to_bytes(raw_path).decode("utf-8", errors="replace"),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }


async def request_then_disconnect(
    app: QuartTrio, path: str, query: str, reached: trio.Event, leave: trio.Event
) -> list[dict[str, Any]]:
    """Send a request straight to the ASGI app, then hang up once ``leave`` is set.

    Quart's test client cannot hang up mid-request (it waits for a response
    that never comes), so this plays the server's part: it sends the
    ``http.disconnect`` a closed connection turns into. Returns what the app sent.
    """
    to_app, from_client = trio.open_memory_channel[dict[str, Any]](10)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async with trio.open_nursery() as nursery:
        # Typed loosely: Quart types its ASGI entry point with hypercorn's scope TypedDicts.
        asgi_app: Any = app
        scope = asgi_scope(path.encode(), query.encode())
        nursery.start_soon(asgi_app, scope, from_client.receive, send)
        await to_app.send({"type": "http.request", "body": b"", "more_body": False})
        await reached.wait()
        await leave.wait()
        await to_app.send({"type": "http.disconnect"})
    return sent


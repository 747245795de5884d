"""The ``/_sim/*`` control routes: inspect and steer an out-of-process simulator.

``GET /_sim/stats``, ``POST /_sim/reset_stats``, ``GET /_sim/providers`` (config-ready
entries) and ``GET``/``POST /_sim/providers/{name}`` (read a provider, change its
behaviour). These requests are never counted in the providers' stats.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Protocol

from .behavior import ProviderStats, SimProvider
from .connection import _json_reply, _Reply, _Request


class _Steerable(Protocol):
    """What the control routes use of a :class:`~.server.Simulator`.

    A protocol rather than an import of the class, so ``server`` (which
    dispatches ``/_sim/*`` here) and this module do not import each other.
    """

    _providers: dict[str, SimProvider]
    _stats: dict[str, ProviderStats]

    def total_stats(self) -> ProviderStats: ...

    def reset_stats(self) -> None: ...

    def provider_entries(self) -> list[dict[str, Any]]: ...

    def set_behavior(self, name: str, **changes: Any) -> None: ...


def _stats_document(sim: _Steerable) -> dict[str, Any]:
    return {
        "providers": {name: dataclasses.asdict(s) for name, s in sim._stats.items()},
        "total": dataclasses.asdict(sim.total_stats()),
    }


def _control(sim: _Steerable, req: _Request) -> _Reply:
    """``/_sim/*``: inspect and steer an out-of-process simulator. Never counted."""
    path = req.path.rstrip("/")

    def wrong_method(allowed: str) -> _Reply:
        return _json_reply(405, {"error": "method not allowed"}, [("allow", allowed)])

    if path == "/_sim/stats":
        if req.method != "GET":
            return wrong_method("GET")
        return _json_reply(200, _stats_document(sim))
    if path == "/_sim/reset_stats":
        if req.method != "POST":
            return wrong_method("POST")
        sim.reset_stats()
        return _json_reply(200, _stats_document(sim))
    if path == "/_sim/providers":
        if req.method != "GET":
            return wrong_method("GET")
        return _json_reply(200, {"providers": sim.provider_entries()})
    if path.startswith("/_sim/providers/"):
        name = path[len("/_sim/providers/") :]
        provider = sim._providers.get(name)
        if provider is None:
            return _json_reply(404, {"error": f"no simulated provider named {name!r}"})
        if req.method == "GET":
            return _json_reply(200, dataclasses.asdict(provider))
        if req.method != "POST":
            return wrong_method("GET, POST")
        try:
            changes = json.loads(req.body or b"{}")
        except ValueError:
            return _json_reply(400, {"error": "body must be a JSON object"})
        if not isinstance(changes, dict):
            return _json_reply(400, {"error": "body must be a JSON object"})
        try:
            sim.set_behavior(name, **changes)
        except (TypeError, ValueError) as exc:
            return _json_reply(400, {"error": str(exc)})
        return _json_reply(200, dataclasses.asdict(provider.behavior))
    return _json_reply(404, {"error": f"no control route {req.path}"})

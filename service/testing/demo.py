"""The embedded default: simulated providers and the config that points at them.

``router-health demo`` and ``router-health check`` (without ``--config``) run
against this, so the project works on a fresh machine with no keys and no
network: eight providers of seven wire formats with realistic latencies, one
answering 503 and one that never answers (to show a timeout). Providers are
tagged ``local`` (self-hosted: ollama, vLLM) or ``cloud`` (the rest), so the
``?tags=``/``?exclude=`` filters have something to select.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from ..config import Config, parse_config
from ..config.storage import default_storage_path
from .simulator import Simulator, demo_providers

__all__ = ["DEMO_CHECKS", "DEMO_LOCAL", "DEMO_MODELS", "demo_config", "start_demo_upstream"]

#: Short budgets so the hanging provider costs a check ~2 s (1 s, then a 1 s
#: re-check), not the 16 s of the default budgets, while a sequential pass (~3.5 s) still fits.
DEMO_CHECKS: dict[str, Any] = {"timeout": 5.0, "model_timeout": 3.0, "adapter_timeout": 1.0}

#: model -> [(simulated provider, upstream model id)]
DEMO_MODELS: dict[str, list[tuple[str, str]]] = {
    "gpt-4": [("openai", "gpt-4"), ("azure", "gpt-4")],
    "gpt-4o-mini": [("openai", "gpt-4o-mini")],
    "claude-3-opus": [("anthropic", "claude-3-opus")],
    "claude-3-haiku": [("anthropic", "claude-3-haiku")],
    "doubao-pro": [("volcengine", "doubao-pro")],
    "gemini-1.5-pro": [("gemini", "gemini-1.5-pro")],
    "llama3": [("ollama", "llama3:latest")],
    "deepseek-chat": [("deepseek", "deepseek-chat")],
    "qwen2-72b": [("slow-vllm", "qwen2-72b")],
}


#: Simulated providers that stand for self-hosted servers; the others are tagged "cloud".
DEMO_LOCAL: frozenset[str] = frozenset({"ollama", "slow-vllm"})


def demo_storage_path() -> str:
    """The demo's own history file, next to (never inside) a real service's default one."""
    return str(Path(default_storage_path()).with_name("demo.db"))


def demo_config_dict(simulator: Simulator, *, background: float = 0.0) -> dict[str, Any]:
    """The demo fleet; ``background`` > 0: checked every that many seconds, with history."""
    entries = {entry["name"]: entry for entry in simulator.provider_entries()}
    models = []
    for model, providers in DEMO_MODELS.items():
        tables = []
        for provider, upstream_model in providers:
            table = {k: v for k, v in entries[provider].items() if v is not None}
            table["model"] = upstream_model
            table["tags"] = ["local" if provider in DEMO_LOCAL else "cloud"]
            tables.append(table)
        models.append({"name": model, "providers": tables})
    document: dict[str, Any] = {"checks": dict(DEMO_CHECKS), "models": models}
    if background > 0:
        document["checks"]["interval"] = background
        document["storage"] = {"path": demo_storage_path()}
        document["status_page"] = {"title": "router-health demo"}
    return document


def demo_config(simulator: Simulator, *, background: float = 0.0) -> Config:
    return parse_config(
        demo_config_dict(simulator, background=background), source="<demo>", env={}
    )


async def start_demo_upstream(nursery: trio.Nursery) -> Simulator:
    """Start the demo's simulated providers in ``nursery`` on a free loopback port."""
    simulator = Simulator(demo_providers())
    await nursery.start(simulator.serve)
    return simulator

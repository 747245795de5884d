"""Ready-made sets of simulated providers: the demo fleet, benchmark fleets, spec files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .behavior import Behavior, SimProvider


def demo_providers() -> list[SimProvider]:
    """A realistic mixed fleet: six healthy kinds, one failing and one hanging."""

    def keyed(name: str, kind: str, models: list[str], **behavior: Any) -> SimProvider:
        return SimProvider(name, kind, f"sk-sim-{name}", models, Behavior(**behavior))

    return [
        keyed("openai", "openai", ["gpt-4", "gpt-4o-mini"], latency=0.25, jitter=0.05),
        keyed("azure", "azure", ["gpt-4"], latency=0.3, jitter=0.05),
        keyed(
            "anthropic", "anthropic", ["claude-3-opus", "claude-3-haiku"], latency=0.35, jitter=0.05
        ),
        keyed("volcengine", "volcengine", ["doubao-pro"], latency=0.2),
        keyed("gemini", "gemini", ["gemini-1.5-pro"], latency=0.3),
        SimProvider("ollama", "ollama", None, ["llama3:latest"], Behavior(latency=0.05)),
        keyed("deepseek", "openai-compatible", ["deepseek-chat"], mode="status", status=503),
        SimProvider("slow-vllm", "openai-compatible", None, ["qwen2-72b"], Behavior(mode="hang")),
    ]


def fleet_providers(n: int, *, latency: float = 0.5, kind: str = "openai") -> list[SimProvider]:
    """``n`` identical providers ``bench-0..bench-{n-1}`` for benchmarks."""
    return [
        SimProvider(f"bench-{i}", kind, "sk-sim-bench", ["sim-model"], Behavior(latency=latency))
        for i in range(n)
    ]


def providers_from_spec(data: Any) -> list[SimProvider]:
    """Build providers from a parsed ``--spec`` document (a list of SimProvider dicts)."""
    if not isinstance(data, list):
        raise ValueError("a simulator spec must be a JSON list of provider objects")
    providers: list[SimProvider] = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ValueError(f"spec entry {i} must be an object")
        try:
            behavior = Behavior(**item.get("behavior", {}))
            fields = {k: v for k, v in item.items() if k != "behavior"}
            providers.append(SimProvider(**fields, behavior=behavior))
        except TypeError as exc:  # unknown or missing keys
            raise ValueError(f"spec entry {i}: {exc}") from None
    return providers


def load_spec(path: str | Path) -> list[SimProvider]:
    """Read a ``--spec`` JSON file."""
    return providers_from_spec(json.loads(Path(path).read_text(encoding="utf-8")))

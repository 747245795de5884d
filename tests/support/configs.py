"""Config documents and files for the tests, and a simulated provider probed through one."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from service import AdapterManager, Config, ConfigError, ProbeResult, load_config, parse_config
from service.config import dump_toml
from service.testing.simulator import Simulator

#: The environment the config-file tests load with (keys for ``api_key_env``).
#: Not shaped like provider keys (sk-...): only exact-value redaction can hide them.
ENV = {"OPENAI_API_KEY": "rhtestkey-openai-000000", "ANTHROPIC_API_KEY": "rhtestkey-anthropic-000000"}


def write_toml(tmp_path: Path, text: str, name: str = "providers.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> str:
    """The ``ConfigError`` message for the config file ``text`` (which must fail to load)."""
    with pytest.raises(ConfigError) as info:
        load_config(write_toml(tmp_path, text), env=ENV if env is None else env)
    message = str(info.value)
    assert "Traceback" not in message
    return message


def sim_config(sim: Simulator, *providers: str, **checks: Any) -> Config:
    """One model ``m`` served by the simulator's ``providers``; ``checks`` on top."""
    entries = [e for e in sim.provider_entries() if e["name"] in providers]
    return parse_config(
        {
            "checks": {"adapter_timeout": 5, "recheck_timeouts": False, **checks},
            "models": [{"name": "m", "providers": entries}],
        },
        env={},
    )


async def probe_entry(sim: Simulator, name: str, **overrides: Any) -> ProbeResult:
    """The simulator's provider ``name`` (its entry with ``overrides``; None drops a key), probed once."""
    entry = next(e for e in sim.provider_entries() if e["name"] == name)
    entry = {k: v for k, v in {**entry, **overrides}.items() if v is not None}
    config = parse_config(
        {"checks": {"adapter_timeout": 5, "recheck_timeouts": False},
         "models": [{"name": "m", "providers": [entry]}]},
        env={},
    )
    async with AdapterManager.from_config(config) as manager:
        report = await manager.health_checker.run(manager.model_adapters)
    return report.models["m"].results[name]


def write_config(
    path: Path,
    sim: Simulator,
    checks: Mapping[str, Any] | None = None,
    server: Mapping[str, Any] | None = None,
) -> Path:
    """A config file with one model ``<provider>-model`` per simulated provider."""
    models = [
        {"name": entry["name"] + "-model", "providers": [entry]} for entry in sim.provider_entries()
    ]
    document: dict[str, Any] = {"checks": dict(checks or {})}
    if server is not None:
        document["server"] = dict(server)
    document["models"] = models
    path.write_text(dump_toml(document), encoding="utf-8")
    return path

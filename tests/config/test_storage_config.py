"""``[storage]``: defaults, the default path, and precise messages for bad values."""

from __future__ import annotations

from typing import Any

import pytest

from service.config import ConfigError, StorageConfig, parse_config
from service.config.storage import default_storage_path

MODELS: list[dict[str, Any]] = [
    {"name": "gpt-4", "providers": [{"name": "openai", "type": "ollama"}]}
]


def parse(storage: object, *, interval: float = 10.0) -> StorageConfig:
    data = {"checks": {"interval": interval}, "models": MODELS, "storage": storage}
    return parse_config(data, env={}).storage


def problems(storage: object, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(storage, **kwargs)
    return str(caught.value)


def test_storage_is_on_exactly_when_background_checks_run() -> None:
    config = parse_config({"checks": {"interval": 10.0}, "models": MODELS}, env={})
    assert config.storage == StorageConfig()
    assert config.storage.enabled is None
    assert config.storage.active(background=True)
    assert not config.storage.active(background=False)
    assert not parse({"enabled": False}).active(background=True)
    assert parse({"path": ":memory:"}).active(background=True)
    assert config.storage.raw_retention == 48 * 3600
    assert config.storage.rollup_retention == 90 * 86400


def test_the_default_path_follows_xdg_state_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/var/state")
    assert default_storage_path() == "/var/state/router-health/health.db"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_storage_path().endswith("/.local/state/router-health/health.db")


def test_storage_keys_are_parsed() -> None:
    storage = parse({"enabled": True, "path": ":memory:", "raw_retention": 60,
                     "rollup_retention": 120, "flush_interval": 0.5, "max_pending": 10})
    assert storage == StorageConfig(True, ":memory:", 60.0, 120.0, 0.5, 10)


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ({"flush_interval": 0}, "storage.flush_interval: must be a finite number of seconds > 0"),
        ({"max_pending": 0}, "storage.max_pending: must be at least 1, got 0"),
        ({"path": ""}, 'storage.path: must be a file path or ":memory:"'),
        ({"raw_retention": 7200, "rollup_retention": 3600},
         "storage.rollup_retention: must be at least raw_retention (7200 s)"),
        ({"enabled": "yes"}, "storage.enabled"),
        ({"size": 1}, "storage"),
    ],
)
def test_bad_storage_values_are_reported_precisely(storage: dict[str, Any], message: str) -> None:
    assert message in problems(storage)


def test_storage_needs_background_checks() -> None:
    assert "storage keeps the results of background checks" in problems(
        {"enabled": True}, interval=0.0
    )
    assert not parse({"enabled": False}, interval=0.0).enabled


def test_a_storage_config_built_in_code_is_checked() -> None:
    with pytest.raises(ValueError, match="storage max_pending must be at least 1"):
        StorageConfig(max_pending=0)

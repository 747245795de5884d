"""``[server] route_panic_threshold``: a percentage from 0 to 100, 50 unless set."""

from __future__ import annotations

from typing import Any

import pytest

from service import parse_config
from service.config import ConfigError


def config(server: dict[str, Any]) -> dict[str, Any]:
    provider = {"name": "p", "type": "ollama", "base_url": "http://127.0.0.1:9"}
    return {"server": server, "models": [{"name": "m", "providers": [provider]}]}


def test_the_threshold_is_half_of_the_deployments_unless_set() -> None:
    assert parse_config(config({}), env={}).server.route_panic_threshold == 50.0


@pytest.mark.parametrize("value", [0, 12.5, 100])
def test_any_percentage_from_0_to_100_is_taken(value: float) -> None:
    threshold = parse_config(config({"route_panic_threshold": value}), env={}).server
    assert threshold.route_panic_threshold == value
    assert isinstance(threshold.route_panic_threshold, float)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(-1, "-1"), (100.5, "100.5"), (float("nan"), "nan"), (float("inf"), "inf")],
)
def test_a_threshold_outside_0_to_100_is_a_config_error(value: float, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config({"route_panic_threshold": value}), env={})
    assert "server.route_panic_threshold: must be a percentage from 0 to 100" in str(info.value)
    assert str(info.value).endswith(f"got {shown}")


@pytest.mark.parametrize("value", ["50", True])
def test_a_threshold_that_is_not_a_number_is_a_config_error(value: object) -> None:
    with pytest.raises(ConfigError, match=r"server\.route_panic_threshold: must be"):
        parse_config(config({"route_panic_threshold": value}), env={})

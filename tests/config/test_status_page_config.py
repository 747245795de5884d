"""``[status_page]``: defaults, the models it shows, and precise messages for bad values."""

from __future__ import annotations

from typing import Any

import pytest

from service.config import ConfigError, StatusPageConfig, parse_config

MODELS: list[dict[str, Any]] = [
    {"name": name, "providers": [{"name": "local", "type": "ollama"}]}
    for name in ("gpt-4", "claude-3-haiku", "llama3:latest")
]


def parse(status_page: object) -> StatusPageConfig:
    data = {"checks": {"interval": 10.0}, "models": MODELS, "status_page": status_page}
    return parse_config(data, env={}).status_page


def problems(status_page: object) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(status_page)
    return str(caught.value)


def test_the_page_is_on_by_default_and_shows_every_model_in_config_order() -> None:
    config = parse_config({"checks": {"interval": 10.0}, "models": MODELS}, env={})
    page = config.status_page
    assert page == StatusPageConfig()
    assert page.enabled
    assert page.title == "Service status"
    assert page.incident_days == 14
    assert page.shown([m.name for m in config.models]) == (
        "gpt-4", "claude-3-haiku", "llama3:latest",
    )


def test_the_keys_are_parsed_and_models_keep_their_order() -> None:
    page = parse({"enabled": False, "title": "Acme AI status",
                  "models": ["llama3:latest", "gpt-4"], "incident_days": 30})
    assert page == StatusPageConfig(False, "Acme AI status", ("llama3:latest", "gpt-4"), 30)
    assert page.shown(["gpt-4", "claude-3-haiku", "llama3:latest"]) == ("llama3:latest", "gpt-4")


def test_an_unknown_model_is_named_with_the_key_and_the_known_models() -> None:
    message = problems({"models": ["gpt-4", "gpt-5"]})
    assert (
        "status_page.models: 'gpt-5' is not a configured model; the models are: "
        "'gpt-4', 'claude-3-haiku', 'llama3:latest'"
    ) in message


def test_every_unknown_model_is_named_at_once() -> None:
    message = problems({"models": ["gpt-5", "o9"]})
    assert "status_page.models: 'gpt-5', 'o9' are not configured models" in message


@pytest.mark.parametrize(
    ("status_page", "message"),
    [
        ({"enabled": "yes"}, "status_page.enabled: must be true or false, got 'yes'"),
        ({"title": 7}, "status_page.title: must be a string, got 7"),
        ({"title": "  "}, "status_page.title: is empty: write the page's heading"),
        ({"title": "x" * 201}, "status_page.title: must be at most 200 characters, got 201"),
        ({"title": "Status\nforged"}, "status_page.title: 'Status\\nforged' contains U+000A (LINE FEED)"),
        ({"models": "gpt-4"}, "status_page.models: must be a list, got 'gpt-4'"),
        ({"models": []}, "status_page.models: is empty: list the models to show, remove models"),
        ({"models": ["gpt-4", 4]}, "status_page.models: must be a list of model names (strings),"
                                   " got 4"),
        ({"models": ["gpt-4", "gpt-4"]}, "status_page.models: lists 'gpt-4' more than once"),
        ({"incident_days": 0}, "status_page.incident_days: must be from 1 to 365 days, got 0"),
        ({"incident_days": 366}, "status_page.incident_days: must be from 1 to 365 days, got 366"),
        ({"incident_days": 1.5}, "status_page.incident_days: must be an integer, got 1.5"),
        ({"incident_days": True}, "status_page.incident_days: must be an integer, got True"),
        ({"colour": "red"}, "status_page.colour: unknown key; allowed: enabled, incident_days, "
                            "models, title"),
        ({"titel": "x"}, "status_page.titel: unknown key; did you mean 'title'?"),
        ("on", "status_page: must be a table, e.g. [status_page]"),
    ],
)
def test_bad_values_are_reported_precisely(status_page: object, message: str) -> None:
    assert message in problems(status_page)


def test_every_problem_is_reported_at_once() -> None:
    message = problems({"title": "", "models": ["nope"], "incident_days": -1})
    for key in ("title", "models", "incident_days"):
        assert f"status_page.{key}:" in message


def test_a_model_that_has_problems_of_its_own_is_not_called_unknown() -> None:
    models = [*MODELS, {"name": "broken", "providers": []}]
    data = {"checks": {"interval": 10.0}, "models": models, "status_page": {"models": ["broken"]}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env={})
    assert "providers" in str(caught.value)
    assert "status_page" not in str(caught.value)


def test_the_page_needs_no_background_checks() -> None:
    data = {"checks": {"interval": 0.0}, "models": MODELS, "status_page": {"title": "Ours"}}
    assert parse_config(data, env={}).status_page.title == "Ours"


def test_a_config_built_in_code_is_checked() -> None:
    with pytest.raises(ValueError, match="status_page incident_days must be from 1 to 365"):
        StatusPageConfig(incident_days=0)
    with pytest.raises(ValueError, match="status_page models is empty"):
        StatusPageConfig(models=())


def test_models_no_longer_configured_are_left_out_of_the_shown_ones() -> None:
    page = StatusPageConfig(models=("gpt-4", "gone"))
    assert page.shown(["gpt-4"]) == ("gpt-4",)

"""Tags: in the config and in ``AdapterManager.select``.

As ``?tags=``/``?exclude=`` filters on the routes: tests/api/test_tag_filters.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from adapters import Adapter
from service import AdapterManager, ConfigError, load_config, parse_config
from service.config import dump_toml
from tests.support.configs import write_toml
from tests.support.fakes import Probe, adapter

# -- config ----------------------------------------------------------------------------

TAGGED = """
[[models]]
name = "gpt-4"
tags = ["prod", "eu"]

  [[models.providers]]
  name = "openai"
  type = "openai-compatible"
  base_url = "http://127.0.0.1:9"
  tags = ["cloud", "eu"]

  [[models.providers]]
  name = "local"
  type = "ollama"
  base_url = "http://127.0.0.1:9"

[[models]]
name = "llama3"

  [[models.providers]]
  name = "local"
  type = "ollama"
  base_url = "http://127.0.0.1:9"
  tags = ["local", "gpu:a100"]
"""


def write(tmp_path: Path, text: str) -> Path:
    return write_toml(tmp_path, text, "tags.toml")


def test_tags_load_as_tuples_and_a_provider_adds_its_models_tags(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, TAGGED), env={})
    gpt4, llama = config.models
    assert gpt4.tags == ("prod", "eu")
    assert [p.tags for p in gpt4.providers] == [("cloud", "eu"), ()]
    assert gpt4.effective_tags(gpt4.providers[0]) == ("prod", "eu", "cloud")
    assert gpt4.effective_tags(gpt4.providers[1]) == ("prod", "eu")
    assert llama.tags == ()
    assert llama.effective_tags(llama.providers[0]) == ("local", "gpu:a100")


def test_tags_are_optional_and_default_to_empty(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, TAGGED.replace('tags = ["prod", "eu"]\n', "")), env={})
    assert config.models[0].tags == ()


def test_tags_survive_dump_toml(tmp_path: Path) -> None:
    document: dict[str, Any] = {
        "models": [
            {
                "name": "gpt-4",
                "tags": ["prod"],
                "providers": [
                    {
                        "name": "openai",
                        "type": "openai-compatible",
                        "base_url": "http://127.0.0.1:9",
                        "tags": ["cloud", "eu"],
                    }
                ],
            }
        ]
    }
    config = load_config(write(tmp_path, dump_toml(document)), env={})
    assert config == parse_config(document, source=str(tmp_path / "tags.toml"), env={})
    assert config.models[0].tags == ("prod",)
    assert config.models[0].providers[0].tags == ("cloud", "eu")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"prod"', "must be a list of at most 32 distinct non-empty strings"),
        ('[""]', "'' is not a valid tag"),
        ('["has space"]', "'has space' is not a valid tag"),
        ('["é"]', "'é' is not a valid tag"),
        ("[1]", "a tag must be a string, got int"),
        ('["a", "a"]', "duplicate tag(s) 'a'; list each once"),
        ("[" + ", ".join(f'"t{i}"' for i in range(33)) + "]", "at most 32 tags, got 33"),
    ],
)
@pytest.mark.parametrize("where", ["model", "provider"])
def test_bad_tags_get_one_line_with_the_file_the_key_path_and_the_rule(
    tmp_path: Path, value: str, expected: str, where: str
) -> None:
    if where == "model":
        text = TAGGED.replace('tags = ["prod", "eu"]', f"tags = {value}")
        path = "models[0] (gpt-4).tags"
    else:
        text = TAGGED.replace('tags = ["cloud", "eu"]', f"tags = {value}")
        path = "models[0] (gpt-4).providers[0].tags"
    file = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    lines = str(info.value).splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{file}: {path}: ")
    assert expected in lines[0]


# -- AdapterManager.select -------------------------------------------------------------


def manager_for(tmp_path: Path) -> AdapterManager:
    return AdapterManager(load_config(write(tmp_path, TAGGED), env={}))


def names(plan: Mapping[str, Sequence[Adapter]]) -> dict[str, list[str]]:
    return {model: [a.provider for a in adapters] for model, adapters in plan.items()}


def test_select_everything_by_default(tmp_path: Path) -> None:
    manager = manager_for(tmp_path)
    assert names(manager.select()) == {"gpt-4": ["openai", "local"], "llama3": ["local"]}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # tags: ALL of them, the model's tags counting for each of its providers
        ({"tags": ["eu"]}, {"gpt-4": ["openai", "local"]}),
        ({"tags": ["eu", "cloud"]}, {"gpt-4": ["openai"]}),
        ({"tags": ["prod", "local"]}, {}),
        ({"tags": ["gpu:a100"]}, {"llama3": ["local"]}),
        # exclude: ANY of them
        ({"exclude": ["cloud"]}, {"gpt-4": ["local"], "llama3": ["local"]}),
        ({"exclude": ["cloud", "gpu:a100"]}, {"gpt-4": ["local"]}),
        ({"exclude": ["prod"]}, {"llama3": ["local"]}),
        # both
        ({"tags": ["eu"], "exclude": ["cloud"]}, {"gpt-4": ["local"]}),
        # names
        ({"models": ["llama3"]}, {"llama3": ["local"]}),
        ({"providers": ["local"]}, {"gpt-4": ["local"], "llama3": ["local"]}),
        ({"models": ["gpt-4"], "providers": ["openai"]}, {"gpt-4": ["openai"]}),
        ({"models": ["llama3"], "providers": ["openai"]}, {}),
        ({"models": ["llama3", "gpt-4"], "tags": ["local"]}, {"llama3": ["local"]}),
        ({"providers": ["nobody"]}, {}),
    ],
)
def test_select_semantics(
    tmp_path: Path, kwargs: dict[str, Any], expected: dict[str, list[str]]
) -> None:
    assert names(manager_for(tmp_path).select(**kwargs)) == expected


def test_select_keeps_the_config_order_and_the_adapter_objects(tmp_path: Path) -> None:
    manager = manager_for(tmp_path)
    plan = manager.select(models=["llama3", "gpt-4"])
    assert list(plan) == ["gpt-4", "llama3"]
    assert plan["gpt-4"][0] is manager.model_adapters["gpt-4"][0]


def test_select_an_unknown_model_raises_listing_the_configured_ones(tmp_path: Path) -> None:
    with pytest.raises(KeyError) as info:
        manager_for(tmp_path).select(models=["gpt-5"])
    assert "configured models: gpt-4, llama3" in str(info.value)


def test_registered_adapters_carry_their_tags_and_bad_ones_are_refused(tmp_path: Path) -> None:
    manager = manager_for(tmp_path)
    manager.register_adapter("mine", adapter("custom", Probe()), tags=["local", "custom"])
    assert names(manager.select(tags=["custom"])) == {"mine": ["custom"]}
    with pytest.raises(ValueError, match="not a valid tag"):
        manager.register_adapter("mine", adapter("other", Probe()), tags=["no spaces"])
    assert [a.provider for a in manager.model_adapters["mine"]] == ["custom"]

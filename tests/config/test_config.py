"""Config loading: the documented contract, and one clear line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters import AnthropicAdapter, AzureOpenAIAdapter, Secret
from service import AdapterManager, ConfigError, load_config, parse_config
from service.config import dump_toml
from tests.support.configs import ENV, problems, write_toml

GOOD = """
[checks]
timeout = 20
adapter_timeout = 5.5

[[models]]
name = "gpt-4"

  [[models.providers]]
  name = "openai"
  type = "openai"
  api_key_env = "OPENAI_API_KEY"

  [[models.providers]]
  name = "azure"
  type = "azure"
  base_url = "https://example.openai.azure.com"
  api_key = "literal-azure-key"
  deployment = "gpt4-prod"
  api_version = "2024-06-01"
  probe = "completion"
  timeout = 3

[[models]]
name = "claude-3"

  [[models.providers]]
  name = "anthropic"
  type = "anthropic"
  api_key_env = "ANTHROPIC_API_KEY"
  model = "claude-3-opus-20240229"
"""


def test_documented_config_loads_with_defaults(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, GOOD), env=ENV)
    assert config.checks.timeout == 20.0
    assert config.checks.model_timeout == 10.0  # the documented default
    assert config.checks.adapter_timeout == 5.5
    assert config.checks.use_concurrent is True
    assert [m.name for m in config.models] == ["gpt-4", "claude-3"]
    openai, azure = config.models[0].providers
    assert openai.base_url == "https://api.openai.com/v1"
    assert openai.model == "gpt-4"  # defaults to the model's name
    assert openai.api_key == Secret("rhtestkey-openai-000000")
    assert azure.probe == "completion"
    assert azure.timeout == 3.0
    assert azure.options == {"deployment": "gpt4-prod", "api_version": "2024-06-01"}
    assert azure.verify_model is False  # Azure lists base models, not deployments
    assert config.models[1].providers[0].model == "claude-3-opus-20240229"


def test_manager_builds_the_right_adapters(tmp_path: Path) -> None:
    manager = AdapterManager.from_config(load_config(write_toml(tmp_path, GOOD), env=ENV))
    assert manager.get_available_models() == ["gpt-4", "claude-3"]
    azure = manager.get_model_adapters("gpt-4")[1]
    assert isinstance(azure, AzureOpenAIAdapter)
    assert azure.deployment == "gpt4-prod" and azure.timeout == 3.0
    assert isinstance(manager.get_model_adapters("claude-3")[0], AnthropicAdapter)
    with pytest.raises(KeyError, match="configured models: gpt-4, claude-3"):
        manager.get_model_adapters("gpt-5")


def test_keys_never_show_in_reprs(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, GOOD), env=ENV)
    manager = AdapterManager.from_config(config)
    text = repr(config) + str(config) + repr(manager) + repr(manager.model_adapters)
    for secret in [*ENV.values(), "literal-azure-key"]:
        assert secret not in text
    assert f"{Secret('abc')}" == "***"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="opena"\napi_key="k"',
         "models[0] (m).providers[0].type: unknown provider type 'opena' (did you mean 'openai'?)"),
        ('[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="ollama"\n'
         '[[models.providers]]\nname="p"\ntype="ollama"',
         "models[0] (m).providers[1].name: duplicate provider name 'p' in model 'm'"),
        ('[checks]\ntimeout=-1\n[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="ollama"',
         "checks.timeout: must be a finite number of seconds > 0, got -1"),
        ('[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="ollama"\ntimeout=0',
         "models[0] (m).providers[0].timeout: must be a finite number of seconds > 0, got 0"),
        ('[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="openai"\napi_key_env="NOPE_KEY"',
         "models[0] (m).providers[0].api_key_env: environment variable NOPE_KEY is not set"),
        ('[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="anthropic"',
         "type 'anthropic' needs a key"),
        ('[checks]\ntimeot=3\n[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="ollama"',
         "checks.timeot: unknown key; did you mean 'timeout'?"),
        ('[checks]\nuse_concurrent="yes"\n[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="ollama"',
         "checks.use_concurrent: must be true or false, got 'yes'"),
        ('[checks]\ntimeout=true\n[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="ollama"',
         "checks.timeout: must be a number, got True"),
        ('[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="azure"\napi_key="k"',
         "base_url: required for type 'azure'"),
        ('[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="ollama"\nbase_url="localhost:11434"',
         "base_url: must start with http:// or https://"),
        ('[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="ollama"\nprobe="chat"',
         "probe: must be one of models, completion, passive, got 'chat'"),
        ('[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="ollama"\ndeployment="d"',
         "deployment: only applies to type azure"),
        ('[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="openai"\napi_key="a"\napi_key_env="B"',
         "set api_key_env or api_key, not both"),
        ('[[models]]\nname="m"', "models[0] (m).providers: add at least one"),
        ('[checks]\ntimeout=3', "models: no models configured"),
        ('[[models]]\nname="m"\n[[models.providers]]\nname="a"\ntype="ollama"\n'
         '[[models]]\nname="m"\n[[models.providers]]\nname="a"\ntype="ollama"',
         "duplicate model name 'm'"),
        ("this is = = not toml", "invalid TOML"),
        ('[server]\nport=70000\n[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="ollama"',
         "server.port: must be 0..65535"),
        ('[server]\nkeep_alive_timeout=0\n[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="ollama"',
         "server.keep_alive_timeout: must be a finite number of seconds > 0, got 0"),
        ('[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="openai"\napi_key=1234567890',
         "models[0] (m).providers[0].api_key: must be a string, got a int"),
        ('colour="blue"\n[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="ollama"',
         "colour: unknown key"),
    ],
    ids=lambda v: v[:40] if isinstance(v, str) else v,
)
def test_each_mistake_gets_one_precise_line(tmp_path: Path, text: str, expected: str) -> None:
    message = problems(text, tmp_path)
    assert expected in message
    assert message.startswith(str(tmp_path / "providers.toml"))


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = '[checks]\ntimeout=-1\nadapter_timeout="x"\n[[models]]\nname="m"\n[[models.providers]]\nname="p"\ntype="nope"'
    message = problems(text, tmp_path)
    assert len(message.splitlines()) == 3


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml")


def test_parse_config_accepts_a_mapping() -> None:
    config = parse_config(
        {"models": [{"name": "llama3", "providers": [{"name": "local", "type": "ollama"}]}]},
        env={},
    )
    provider = config.models[0].providers[0]
    assert provider.base_url == "http://127.0.0.1:11434"
    assert provider.api_key is None
    assert config.source == "<config>"


def test_dump_toml_round_trips_through_load_config(tmp_path: Path) -> None:
    document = {
        "checks": {"timeout": 12.5, "use_concurrent": False, "max_concurrent_probes": 8},
        "server": {"port": 9000},
        "models": [
            {"name": 'quote"d', "providers": [{"name": "local", "type": "ollama", "model": "llama3:latest"}]},
        ],
    }
    path = tmp_path / "generated.toml"
    path.write_text(dump_toml(document), encoding="utf-8")
    assert load_config(path, env={}) == parse_config(document, source=str(path), env={})


def _one_provider(**entry: object) -> dict[str, object]:
    return {"models": [{"name": "m", "providers": [{"name": "p", "type": "ollama", **entry}]}]}


def test_an_empty_key_on_a_keyless_provider_means_no_key() -> None:
    adapter = AdapterManager(parse_config(_one_provider(api_key=""), env={})).model_adapters["m"][0]
    assert adapter.api_key is None  # type: ignore[attr-defined]


def test_an_empty_key_beside_api_key_env_leaves_the_variable_in_charge() -> None:
    config = parse_config(_one_provider(api_key="", api_key_env="K"), env={"K": "rhtestkey-env"})
    assert config.models[0].providers[0].api_key == Secret("rhtestkey-env")


@pytest.mark.parametrize(
    ("entry", "shown_instead"),
    [
        # A generated key pasted where a variable's name belongs.
        ({"api_key_env": "rhtestkeyZ9fTq2LmZpR7vWsYbN4"}, "name not shown: it looks like a key"),
        ({"api_key_env": ["rhtestkey-in-a-list"]}, "must be a string, got a list"),
    ],
    ids=["key-as-a-name", "key-in-a-list"],  # the ids are printed: no key in them
)
def test_a_key_pasted_into_api_key_env_is_never_echoed(
    entry: dict[str, object], shown_instead: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_one_provider(**entry), env={})
    assert shown_instead in str(info.value)
    assert "rhtestkey" not in str(info.value)


def test_an_empty_literal_secret_names_only_the_key_written() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**_one_provider(), "server": {"auth_token": ""}}, env={})
    assert str(info.value) == "<config>: server.auth_token: is empty: write the token, or remove auth_token"


def test_a_cluster_url_yields_its_password_for_redaction_but_not_the_bare_user() -> None:
    from service.config import ClusterConfig

    config = ClusterConfig(redis_url=Secret("redis://default:rhtestkey-redis@cache:6379/0"))
    shown = [s if isinstance(s, str) else s.reveal() for s in config.secrets()]
    assert "rhtestkey-redis" in shown
    assert "default:rhtestkey-redis" in shown
    assert "default" not in shown
    assert "rhtestkey" not in config.display_url

"""The example LiteLLM configs loaded into validated Configs, directly and through ``import litellm``.

The mapping itself is in test_litellm_mapping.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.config import (
    Config,
    ConfigError,
    ProviderConfig,
    import_litellm,
    load_config,
    load_litellm_config,
)

CONFIGS = Path(__file__).parent / "litellm_configs"
ALL = sorted(p.name for p in CONFIGS.glob("*.yaml"))

#: Every variable the example configs read, set (keys are test keys).
KEY_VARIABLES = (
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_API_KEY", "AZURE_API_KEY_EU", "AZURE_API_KEY_CA",
    "GEMINI_API_KEY", "COHERE_API_KEY", "GROQ_API_KEY", "MISTRAL_API_KEY", "DEEPSEEK_API_KEY",
    "OPENROUTER_API_KEY", "TOGETHERAI_API_KEY", "FIREWORKS_AI_API_KEY", "XAI_API_KEY",
    "PERPLEXITYAI_API_KEY", "DASHSCOPE_API_KEY", "MOONSHOT_API_KEY", "ZAI_API_KEY",
    "CEREBRAS_API_KEY", "NVIDIA_NIM_API_KEY", "AZURE_AI_API_KEY", "VOLCENGINE_API_KEY",
    "HUGGINGFACE_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "TEAM_HEADER",
)
#: The keys env_and_literals.yaml writes in the file itself.
LITERAL_KEY = "rhtestkey-literal-openai-0123456789"
LITERAL_HEADER = "rhtestkey-literal-org-0123456789"
FULL_ENV = {
    **{name: f"rhtestkey-{name.lower().replace('_', '-')}" for name in KEY_VARIABLES},
    "AZURE_API_BASE": "https://from-env.openai.azure.com",
    "AZURE_API_VERSION": "2024-10-21",
    "AWS_REGION_NAME": "us-west-2",  # LiteLLM's region variable: cloud.yaml's titan-embed has none
}


def load(name: str, *, strict: bool = False) -> Config:
    return load_litellm_config(CONFIGS / name, env=FULL_ENV, strict=strict)


def deployments(name: str) -> int:
    return len(yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))["model_list"])


def setting(provider: ProviderConfig, key: str) -> Any:
    """A provider key, wherever ProviderConfig keeps it (a field, or its options)."""
    return getattr(provider, key, None) if hasattr(provider, key) else provider.options.get(key)


@pytest.mark.parametrize("name", ALL)
def test_every_example_config_loads_one_provider_per_deployment(name: str) -> None:
    config = load(name)
    assert sum(len(m.providers) for m in config.models) == deployments(name)
    assert config.source == str(CONFIGS / name)


def test_keys_come_from_the_variables_the_file_names() -> None:
    config = load("azure_group.yaml")
    eu, ca, openai = config.model("gpt-4o").providers
    assert eu.api_key_env == "AZURE_API_KEY_EU"
    assert eu.api_key is not None and eu.api_key.reveal() == FULL_ENV["AZURE_API_KEY_EU"]
    assert ca.options == {"deployment": "gpt-4o-ca", "api_version": "2024-06-01"}
    assert (openai.type, openai.model) == ("openai", "gpt-4o")


def test_health_check_settings_become_the_schedule_and_the_probe_timeout() -> None:
    config = load("health_checks.yaml")
    assert config.checks.schedule.interval == 60.0
    assert config.checks.schedule_for("gemini-2.5-pro", "gemini").enabled
    assert not config.checks.schedule_for("claude-opus", "anthropic").enabled
    assert config.model("gemini-2.5-pro").providers[0].timeout == 10.0
    assert setting(config.model("gemini-2.5-pro").providers[0], "probe_model") == "gemini-2.0-flash-lite"


def test_an_unknown_prefix_loads_as_unsupported_with_its_reason() -> None:
    config = load("unknown_prefix.yaml")
    jumpstart = config.model("jumpstart").providers[0]
    assert jumpstart.type == "unsupported"
    assert setting(jumpstart, "reason") == (
        "no router-health adapter for LiteLLM provider prefix 'sagemaker/'"
    )
    assert config.model("gpt-4o").providers[0].type == "openai"


def test_strict_makes_an_unknown_prefix_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        load("unknown_prefix.yaml", strict=True)
    assert str(info.value).splitlines() == [
        f"{CONFIGS / 'unknown_prefix.yaml'}: model_list[{i}] ({name}).litellm_params.model: "
        f"no router-health adapter for LiteLLM provider prefix '{prefix}/'; --strict refuses a "
        "deployment router-health cannot check"
        for i, name, prefix in ((0, "jumpstart", "sagemaker"), (1, "starcoder", "huggingface"))
    ]


def test_modes_load_for_every_checked_mode() -> None:
    config = load("modes.yaml")
    assert setting(config.model("azure-embedding-model").providers[0], "mode") == "embedding"
    assert setting(config.model("rerank-english-v3.0").providers[0], "mode") == "rerank"
    assert config.model("batch-gpt-4o-mini").providers[0].type == "unsupported"


def test_a_wildcard_route_loads_with_its_pattern() -> None:
    config = load("wildcards.yaml")
    assert [m.providers[0].model for m in config.models] == ["*", "*", "*", "llama*", "claude-3-*"]
    assert not any(m.providers[0].verify_model for m in config.models)


# -- import litellm: the printed TOML loads to the same fleet ----------------------------


#: The example configs whose every key router-health reads today.
ROUND_TRIPS = [
    "anchors.yaml",
    "azure_group.yaml",
    "background_default.yaml",
    "model_ids.yaml",
    "quickstart.yaml",
]
#: The rest: they need the provider types, modes and keys of issue 14 in parse_config.
ROUND_TRIPS_WITH_NEW_KEYS = sorted({p.name for p in CONFIGS.glob("*.yaml")} - set(ROUND_TRIPS))


#: The import's invented variables, holding what the files wrote.
WRITTEN_IN_THE_FILE = {
    "env_and_literals.yaml": {
        "GPT_4O_OPENAI_API_KEY": LITERAL_KEY,
        "GPT_4O_OPENAI_OPENAI_ORGANIZATION": LITERAL_HEADER,
    },
    "openai_compatible.yaml": {"VLLM_MODELS_OPENAI_COMPATIBLE_VLLM_8000_API_KEY": "none"},
}


def imported_then_loaded(name: str, tmp_path: Path, env: dict[str, str]) -> Config:
    result = import_litellm((CONFIGS / name).read_bytes(), source=name, env=env)
    path = tmp_path / "imported.toml"
    path.write_text(result.toml, encoding="utf-8")
    return load_config(path, env=env)


def fleet(config: Config, *, without_variables: bool = False) -> tuple[Any, ...]:
    """What a config checks: its models and providers, its checks; not where it was read from.

    ``without_variables`` blanks the names of variables (``*_env``): a key
    written in the LiteLLM file is read from an invented variable once
    imported, and the resolved key is compared instead.
    """

    def provider(p: ProviderConfig) -> ProviderConfig:
        if not without_variables:
            return p
        blank = {f.name: None for f in dataclasses.fields(p) if f.name.endswith("_env")}
        options = {k: v for k, v in p.options.items() if not k.endswith("_env")}
        return dataclasses.replace(p, **blank, options=options)

    models = tuple(
        dataclasses.replace(m, providers=tuple(provider(p) for p in m.providers))
        for m in config.models
    )
    return models, config.checks, config.server, config.webhook, config.cluster


@pytest.mark.parametrize("name", ROUND_TRIPS)
def test_the_imported_toml_loads_to_the_same_fleet(name: str, tmp_path: Path) -> None:
    direct = load_litellm_config(CONFIGS / name, env=FULL_ENV)
    assert fleet(imported_then_loaded(name, tmp_path, FULL_ENV)) == fleet(direct)


@pytest.mark.parametrize("name", ROUND_TRIPS_WITH_NEW_KEYS)
def test_the_imported_toml_loads_to_the_same_fleet_with_every_provider_key(
    name: str, tmp_path: Path
) -> None:
    direct = load_litellm_config(CONFIGS / name, env=FULL_ENV)
    # the keys written in the file, exported under the names the import invented
    literals = WRITTEN_IN_THE_FILE.get(name, {})
    env = {**FULL_ENV, **literals}
    assert fleet(imported_then_loaded(name, tmp_path, env), without_variables=bool(literals)) == (
        fleet(direct, without_variables=bool(literals))
    )

"""``import_litellm``: the TOML it prints never holds a secret, and says where each entry came from.

That the TOML loads to the same fleet as the LiteLLM file: test_litellm_load.py.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from service.config import ConfigError, dump_toml, import_litellm, parse_config

CONFIGS = Path(__file__).parent / "litellm_configs"
#: What env_and_literals.yaml reads from the environment besides keys.
ENV = {"AZURE_API_BASE": "https://from-env.openai.azure.com", "AZURE_API_VERSION": "2024-10-21"}
LITERAL_KEY = "rhtestkey-literal-openai-0123456789"
LITERAL_HEADER = "rhtestkey-literal-org-0123456789"
def test_keys_and_header_values_written_in_the_file_are_never_printed() -> None:
    text = (CONFIGS / "env_and_literals.yaml").read_bytes()
    result = import_litellm(text, source="env_and_literals.yaml", env=ENV)
    assert LITERAL_KEY not in result.toml and LITERAL_HEADER not in result.toml
    assert "rhtestkey" not in result.toml
    assert result.invented == ("GPT_4O_OPENAI_API_KEY", "GPT_4O_OPENAI_OPENAI_ORGANIZATION")
    provider = tomllib.loads(result.toml)["models"][0]["providers"][1]
    assert provider["api_key_env"] == "GPT_4O_OPENAI_API_KEY"
    assert provider["headers_env"] == {
        "OpenAI-Organization": "GPT_4O_OPENAI_OPENAI_ORGANIZATION",
        "X-Team": "TEAM_HEADER",
    }
    lines = result.toml.splitlines()
    at = lines.index("  # litellm_params.api_key is written in the LiteLLM file: not copied here;")
    assert lines[at + 1 : at + 5] == [
        "  # export GPT_4O_OPENAI_API_KEY=<that key> before serving",
        "  # header values are written in the LiteLLM file: not copied here;",
        "  # export GPT_4O_OPENAI_OPENAI_ORGANIZATION=<the OpenAI-Organization value> before serving",
        "  [[models.providers]]",
    ]


def test_one_key_written_for_many_deployments_is_one_variable_to_export() -> None:
    keys = ["rhtestkey-shared-aaaa-0123456789", "rhtestkey-shared-bbbb-0123456789"]
    text = "model_list:\n" + "".join(
        f"  - {{model_name: m{i}, litellm_params: {{model: openai/gpt-4o, api_key: {keys[i % 2]},"
        f" extra_headers: {{X-Team: {keys[0]}}}}}}}\n"
        for i in range(10)
    )
    result = import_litellm(text, source="c.yaml", env={})
    assert "rhtestkey" not in result.toml
    assert result.invented == ("M0_OPENAI_API_KEY", "M0_OPENAI_X_TEAM", "M1_OPENAI_API_KEY")
    assert result.unset == result.invented
    providers = [m["providers"][0] for m in tomllib.loads(result.toml)["models"]]
    assert [p["api_key_env"] for p in providers] == ["M0_OPENAI_API_KEY", "M1_OPENAI_API_KEY"] * 5
    assert {p["headers_env"]["X-Team"] for p in providers} == {"M0_OPENAI_X_TEAM"}


def test_the_import_refuses_a_bedrock_deployment_no_region_is_found_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    text = "model_list:\n  - {model_name: nova, litellm_params: {model: bedrock/amazon.nova-lite-v1:0}}\n"
    with pytest.raises(ConfigError, match=r"^c.yaml: model_list\[0\] \(nova\).litellm_params.aws_region_name: required"):
        import_litellm(text, source="c.yaml", env={})
    imported = import_litellm(text, source="c.yaml", env={"AWS_REGION_NAME": "eu-west-1"})
    assert tomllib.loads(imported.toml)["models"][0]["providers"][0]["region"] == "eu-west-1"


def test_the_import_names_every_variable_to_export_and_needs_none_of_them() -> None:
    text = (CONFIGS / "azure_group.yaml").read_bytes()
    result = import_litellm(text, source="azure_group.yaml", env={})
    assert result.unset == ("AZURE_API_KEY_EU", "AZURE_API_KEY_CA", "OPENAI_API_KEY")
    assert result.invented == ()
    env = {name: "rhtestkey-0123456789" for name in result.unset}
    assert import_litellm(text, source="azure_group.yaml", env=env).unset == ()


def test_the_import_is_the_same_text_every_time() -> None:
    text = (CONFIGS / "model_ids.yaml").read_bytes()
    assert import_litellm(text, env={}).toml == import_litellm(text, env={"X": "1"}).toml


def test_the_import_says_where_each_provider_came_from() -> None:
    toml = import_litellm((CONFIGS / "quickstart.yaml").read_bytes(), source="cfg/x.yaml", env={}).toml
    assert toml.splitlines()[:3] == [
        "# router-health config imported from x.yaml (a LiteLLM proxy config)",
        "# by `router-health import litellm`; each provider names the model_list entry it came from.",
        "",
    ]
    assert toml.count("  # from model_list[") == 2


def test_a_pasted_key_where_a_variable_name_belongs_is_refused_unshown() -> None:
    text = "model_list:\n  - {model_name: m, litellm_params: {model: openai/x, api_key: os.environ/rhtestkey-Pasted-0123456789}}\n"
    with pytest.raises(ConfigError) as info:
        import_litellm(text, source="c.yaml", env={})
    assert "rhtestkey" not in str(info.value)
    assert "c.yaml: model_list[0] (m).litellm_params.api_key: is not an environment variable name" in str(info.value)


def test_the_import_with_strict_refuses_what_cannot_be_checked() -> None:
    with pytest.raises(ConfigError, match="prefix 'sagemaker/'; --strict refuses"):
        import_litellm((CONFIGS / "unknown_prefix.yaml").read_bytes(), env={}, strict=True)


# -- dump_toml: what the import writes ---------------------------------------------------


def test_dump_toml_writes_tables_as_inline_tables_and_quotes_keys_that_need_it() -> None:
    document = {
        "checks": {"interval": 30},
        "models": [{"name": "m", "providers": [
            {"name": "p", "type": "ollama", "headers_env": {"X-Team": "TEAM", "a.b c": "AB"}},
        ]}],
    }
    text = dump_toml(document)
    assert '  headers_env = { X-Team = "TEAM", "a.b c" = "AB" }' in text.splitlines()
    assert tomllib.loads(text) == document


def test_dump_toml_writes_every_section_and_comments() -> None:
    document = {
        "checks": {"interval": 30},
        "server": {"port": 9000},
        "webhook": {"url": "https://alerts.example/hook"},
        "models": [{"name": "m", "providers": [{"name": "p", "type": "ollama"}]}],
    }
    text = dump_toml(document, header=["line one", "line two"], notes={(0, 0): ["from here"]})
    assert tomllib.loads(text) == document
    assert text.startswith("# line one\n# line two\n\n[checks]\n")
    assert "\n  # from here\n  [[models.providers]]\n" in text
    assert parse_config(tomllib.loads(text), env={}).webhook is not None

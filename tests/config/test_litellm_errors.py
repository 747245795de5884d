"""LiteLLM configs that cannot load: one line per problem, at the key that caused it, never a traceback.

Secrets written in a file (keys, header values, AWS credentials) never
appear in a message, whatever is wrong with them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import ConfigError, load_litellm_config, parse_litellm_config
from service.config.litellm_yaml import MAX_LITELLM_BYTES, MAX_YAML_VALUES

SOURCE = "config.yaml"
SECRET = "rhtestkey-secret-0123456789"


def error(text: str | bytes, *, env: dict[str, str] | None = None, strict: bool = False) -> str:
    """The message for ``text`` (which must fail), checked to be free of tracebacks and secrets."""
    with pytest.raises(ConfigError) as info:
        parse_litellm_config(text, source=SOURCE, env={} if env is None else env, strict=strict)
    message = str(info.value)
    assert "Traceback" not in message
    assert SECRET not in message
    assert all(line.startswith(f"{SOURCE}: ") for line in message.splitlines()), message
    return message


def one(text: str | bytes, **kwargs: object) -> str:
    message = error(text, **kwargs)  # type: ignore[arg-type]
    assert len(message.splitlines()) == 1, message
    return message.removeprefix(f"{SOURCE}: ")


def deployment(params: str, info: str = "", name: str = "m") -> str:
    """A one-deployment config; ``params``/``info`` are YAML flow mappings' contents."""
    text = f"model_list:\n  - model_name: {name}\n    litellm_params: {{{params}}}\n"
    return text + (f"    model_info: {{{info}}}\n" if info else "")


# -- YAML ---------------------------------------------------------------------------


def test_invalid_yaml_is_reported_at_its_line_and_column() -> None:
    text = "model_list:\n  - model_name: m\n    litellm_params: {model: [openai/x\n"
    assert one(text) == (
        "line 4, column 1: invalid YAML: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence)"
    )


def test_a_tab_in_the_indentation_names_its_place() -> None:
    assert one("model_list:\n\t- model_name: m\n").startswith(
        "line 2, column 1: invalid YAML: found character '\\t' that cannot start any token"
    )


def test_yaml_tags_that_build_objects_are_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f"model_list: !!python/object/apply:os.system ['touch {marker}']\n"
    assert "could not determine a constructor for the tag" in one(text)
    assert not marker.exists()


def test_two_documents_in_one_file_are_refused() -> None:
    assert "expected a single document in the stream" in one("model_list: []\n---\nmodel_list: []\n")


def test_an_anchor_bomb_is_refused_by_its_expanded_size() -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    text = "\n".join(lines) + "\nmodel_list: *a8\n"
    assert one(text) == (
        f"invalid YAML: its aliases expand to more than {MAX_YAML_VALUES:,} values; "
        "refusing it (a LiteLLM config is far smaller)"
    )


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    assert one("loop: &l [1, *l]\nmodel_list: []\n") == (
        "invalid YAML: an alias refers to a node that contains it (a loop)"
    )


def test_deep_nesting_is_refused() -> None:
    assert one("model_list: " + "[" * 5000 + "]" * 5000 + "\n") == "invalid YAML: nested too deeply"


def test_a_file_over_the_size_cap_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"# " + b"x" * MAX_LITELLM_BYTES + b"\n")
    with pytest.raises(ConfigError) as info:
        load_litellm_config(path, env={})
    assert str(info.value) == f"{path}: larger than 1024 KiB: too large for a LiteLLM config"


def test_text_over_the_size_cap_is_refused_from_code_too() -> None:
    assert one("#" * (MAX_LITELLM_BYTES + 1)) == "larger than 1024 KiB: too large for a LiteLLM config"


def test_text_that_is_not_utf8_is_refused() -> None:
    assert one(b"model_list:\n  - model_name: \xff\n") == "not UTF-8 text"


def test_a_character_yaml_refuses_is_one_line_at_its_place() -> None:
    assert one('model_list:\n  - {model_name: "gpt\x07x", litellm_params: {model: ollama/x}}\n') == (
        "line 2, column 22: invalid YAML: special characters are not allowed (U+0007)"
    )


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"file not found$"):
        load_litellm_config(tmp_path / "nope.yaml", env={})


# -- shape ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "model_list: the file is empty; expected a LiteLLM config with a model_list"),
        ("- a\n- b\n", "the file: must be a LiteLLM config (a mapping with model_list), got a list"),
        ("litellm_settings: {}\n",
         "model_list: required: the list of deployments (model_name + litellm_params)"),
        ("model_list: {gpt: openai/gpt-4}\n", "model_list: must be a list of deployments, got a mapping"),
        ("model_list: []\n", "model_list: is empty: list at least one deployment"),
        ("model_list: [openai/gpt-4]\n",
         "model_list[0]: must be a mapping with model_name and litellm_params, got a string"),
        ("model_list:\n  - litellm_params: {model: openai/gpt-4}\n",
         "model_list[0].model_name: required: a non-empty string, got nothing"),
        ("model_list:\n  - {model_name: [a], litellm_params: {model: openai/gpt-4}}\n",
         "model_list[0].model_name: required: a non-empty string, got a list"),
        ("model_list:\n  - model_name: m\n",
         "model_list[0] (m).litellm_params: required: a mapping with at least model, got nothing"),
        ("model_list:\n  - {model_name: m, litellm_params: openai/gpt-4}\n",
         "model_list[0] (m).litellm_params: required: a mapping with at least model, got a string"),
        (deployment("api_key: os.environ/K"),
         "model_list[0] (m).litellm_params.model: required: provider/model, e.g. openai/gpt-4o, "
         "got nothing"),
        (deployment("model: 4"),
         "model_list[0] (m).litellm_params.model: required: provider/model, e.g. openai/gpt-4o, "
         "got 4"),
        ("model_list:\n  - {model_name: m, litellm_params: {model: ollama/x}, model_info: [1]}\n",
         "model_list[0] (m).model_info: must be a mapping, got a list"),
        (deployment("model: ollama/x", "id: [1]"),
         "model_list[0] (m).model_info.id: must be a string, got a list"),
        (deployment("model: ollama/x", "mode: 3"), "model_list[0] (m).model_info.mode: must be a string, got 3"),
        (deployment("model: ollama/x", "disable_background_health_check: 'true'"),
         "model_list[0] (m).model_info.disable_background_health_check: must be true or false, "
         "got 'true'"),
        (deployment("model: ollama/x", "health_check_model: ''"),
         "model_list[0] (m).model_info.health_check_model: must be a model name, got ''"),
        (deployment("model: ollama/x, api_base: [http://a]"),
         "model_list[0] (m).litellm_params.api_base: must be a string, got a list"),
        (deployment("model: ollama/x, extra_headers: [a]"),
         "model_list[0] (m).litellm_params.extra_headers: must be a mapping, got a list"),
        (deployment("model: ollama/x") + "general_settings: [a]\n",
         "general_settings: must be a mapping, got a list"),
        (deployment("model: ollama/x") + "general_settings: {background_health_checks: maybe}\n",
         "general_settings.background_health_checks: must be true or false, got 'maybe'"),
    ],
)
def test_a_wrong_shape_names_the_entry_and_key(text: str, expected: str) -> None:
    assert one(text) == expected


def test_every_shape_problem_is_listed_at_once() -> None:
    text = (
        "model_list:\n"
        "  - {model_name: a, litellm_params: {model: ollama/x}}\n"
        "  - {model_name: b}\n"
        "  - 7\n"
        "  - {model_name: c, litellm_params: {model: ollama/x}, model_info: {mode: 1}}\n"
    )
    assert error(text).splitlines() == [
        f"{SOURCE}: model_list[1] (b).litellm_params: required: a mapping with at least model, "
        "got nothing",
        f"{SOURCE}: model_list[2]: must be a mapping with model_name and litellm_params, got a number",
        f"{SOURCE}: model_list[3] (c).model_info.mode: must be a string, got 1",
    ]


def test_an_environment_value_that_is_not_set_is_named() -> None:
    text = deployment("model: azure/gpt-4o, api_base: os.environ/AZURE_BASE_EU, api_key: os.environ/K")
    assert one(text, env={"K": SECRET}) == (
        "model_list[0] (m).litellm_params.api_base: environment variable AZURE_BASE_EU is not set "
        "(or empty); export AZURE_BASE_EU=... before starting"
    )


# -- secrets are never shown ------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        f"model: openai/x, api_key: [{SECRET}]",
        f"model: openai/x, api_key: {{k: {SECRET}}}",
        f"model: ollama/x, extra_headers: {{Authorization: [{SECRET}]}}",
        f"model: ollama/x, extra_headers: {{{SECRET}: 1}}",
    ],
    ids=["key-list", "key-mapping", "header-list", "header-number"],
)
def test_a_wrong_secret_value_is_described_without_showing_it(params: str) -> None:
    assert "must be" in one(deployment(params))


def test_a_key_with_spaces_is_reported_at_api_key_without_showing_it() -> None:
    text = deployment(f"model: openai/x, api_key: 'rhtestkey secret 0123456789 {SECRET}'")
    assert one(text) == (
        "model_list[0] (m).litellm_params.api_key: the key has spaces or control characters "
        "inside it (value not shown)"
    )


def test_a_literal_aws_credential_is_unsupported_and_not_shown() -> None:
    text = deployment(f"model: bedrock/anthropic.claude-3, aws_secret_access_key: {SECRET}")
    assert one(text, strict=True) == (
        "model_list[0] (m).litellm_params.aws_secret_access_key: aws_secret_access_key is "
        "written in the file; router-health reads AWS credentials from the environment: "
        "write os.environ/NAME; --strict refuses a deployment router-health cannot check"
    )


def test_vertex_credentials_json_in_the_file_is_unsupported_and_not_shown() -> None:
    text = deployment(
        f"model: vertex_ai/gemini-pro, vertex_credentials: '{{\"private_key\": \"{SECRET}\"}}'"
    )
    assert "holds the credentials JSON itself" in one(text, strict=True)


# -- parse_config's problems, told at the LiteLLM keys --------------------------------------


def test_validation_problems_are_reported_at_the_litellm_keys() -> None:
    text = (
        "model_list:\n"
        "  - model_name: gpt-4o\n"
        "    litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_KEY_EU}\n"
        "  - model_name: gpt-4o\n"
        "    litellm_params: {model: openai/gpt-4o, api_base: 'ftp://x', api_key: os.environ/K}\n"
        "    model_info: {health_check_timeout: -1}\n"
        "general_settings: {background_health_checks: true, health_check_interval: -5}\n"
    )
    assert error(text, env={"K": SECRET}).splitlines() == [
        f"{SOURCE}: general_settings.health_check_interval: must be a finite number of seconds "
        ">= 0 (0 = off), got -5",
        f"{SOURCE}: model_list[0] (gpt-4o).litellm_params.api_key: environment variable "
        "OPENAI_KEY_EU is not set (or empty); export OPENAI_KEY_EU=... before starting",
        f"{SOURCE}: model_list[1] (gpt-4o).model_info.health_check_timeout: must be a finite "
        "number of seconds > 0, got -1",
    ]


def test_a_bidi_character_in_a_model_name_is_reported_at_its_model_name() -> None:
    text = deployment("model: ollama/x", name='"gpt\\u202e4o"') + deployment(
        "model: ollama/y", name='"gpt\\u202e4o"'
    ).removeprefix("model_list:\n")
    assert one(text).startswith(
        "model_list[0].model_name: 'gpt\\u202e4o' contains U+202E (RIGHT-TO-LEFT OVERRIDE)"
    )


@pytest.fixture
def no_aws_region(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No region anywhere botocore looks: no variable, no profile."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_aws_region")
def test_a_bedrock_deployment_without_a_region_is_an_error_at_aws_region_name() -> None:
    assert one(deployment("model: bedrock/amazon.nova-lite-v1:0")) == (
        "model_list[0] (m).litellm_params.aws_region_name: required: no region in the file, "
        "AWS_REGION_NAME, AWS_REGION, AWS_DEFAULT_REGION or the AWS profile; set "
        "aws_region_name: us-east-1 (LiteLLM would fall back to us-west-2 unasked)"
    )


@pytest.mark.usefixtures("no_aws_region")
def test_a_bedrock_region_from_the_profile_or_the_endpoint_host_is_enough(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    vpc = "https://vpce-0abc.bedrock-runtime.eu-central-1.vpce.amazonaws.com"
    parse_litellm_config(
        deployment(f"model: bedrock/amazon.nova-lite-v1:0, api_base: '{vpc}'"), env={}
    )
    profile = tmp_path / "aws-config"
    profile.write_text("[default]\nregion = sa-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(profile))
    parse_litellm_config(deployment("model: bedrock/amazon.nova-lite-v1:0"), env={})


def test_a_key_variable_litellm_defaults_to_is_named_when_unset() -> None:
    assert one(deployment("model: anthropic/claude-3-5-haiku-latest")) == (
        "model_list[0] (m).litellm_params.api_key: environment variable ANTHROPIC_API_KEY is not "
        "set (or empty); export ANTHROPIC_API_KEY=... before starting"
    )


def test_strict_refuses_an_unknown_prefix_at_its_entry() -> None:
    text = deployment("model: sagemaker/jumpstart-llama") + deployment(
        "model: ollama/x", name="ok"
    ).removeprefix("model_list:\n")
    assert one(text, strict=True) == (
        "model_list[0] (m).litellm_params.model: no router-health adapter for LiteLLM provider "
        "prefix 'sagemaker/'; --strict refuses a deployment router-health cannot check"
    )


def test_strict_refuses_a_mode_that_cannot_be_checked() -> None:
    assert one(deployment("model: openai/gpt-4o-realtime", "mode: realtime"), strict=True).startswith(
        "model_list[0] (m).model_info.mode: mode 'realtime' cannot be checked (router-health checks: "
    )

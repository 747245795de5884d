"""LiteLLM proxy configs (tests/config/litellm_configs/) mapped to router-health documents.

Each file is modelled on LiteLLM's documented config.yaml; the expected
document is written out whole, so a change to any mapping rule shows here.
Loading the same files into a validated Config is in test_litellm_load.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.config.litellm import LiteLLMDocument, litellm_document
from service.config.litellm_yaml import parse_yaml

CONFIGS = Path(__file__).parent / "litellm_configs"
#: What the environment holds while these files are mapped: api_base and
#: api_version references resolve from it, and it picks LiteLLM's default key
#: variables (keys themselves stay references).
ENV = {
    "AZURE_API_BASE": "https://from-env.openai.azure.com",
    "AZURE_API_VERSION": "2024-10-21",
    "ANTHROPIC_API_KEY": "rhtestkey-anthropic-0123456789",
    "AWS_REGION_NAME": "us-west-2",
}


def mapped(name: str, env: dict[str, str] | None = None) -> LiteLLMDocument:
    path = CONFIGS / name
    data = parse_yaml(path.read_bytes(), source=str(path))
    return litellm_document(data, source=str(path), env=ENV if env is None else env)


def providers(name: str) -> dict[str, list[dict[str, Any]]]:
    """model name -> its provider entries."""
    return {m["name"]: m["providers"] for m in mapped(name).document["models"]}


def test_the_quick_start_maps_prefixes_and_environment_keys_and_ignores_the_rest() -> None:
    document = mapped("quickstart.yaml").document
    assert document == {
        "models": [
            {
                "name": "gpt-3.5-turbo",
                "providers": [
                    {"name": "openai", "type": "openai", "model": "gpt-3.5-turbo",
                     "api_key_env": "OPENAI_API_KEY"},
                ],
            },
            {
                "name": "claude-3-sonnet",
                "providers": [
                    {"name": "anthropic", "type": "anthropic", "model": "claude-3-5-sonnet-20241022",
                     "api_key_env": "ANTHROPIC_API_KEY"},
                ],
            },
        ]
    }


def test_deployments_sharing_a_model_name_are_one_model_with_several_providers() -> None:
    assert providers("azure_group.yaml") == {
        "gpt-4o": [
            {"name": "azure@my-endpoint-europe.openai.azure.com/gpt-4o-eu", "type": "azure",
             "base_url": "https://my-endpoint-europe.openai.azure.com/", "model": "gpt-4o-eu",
             "api_key_env": "AZURE_API_KEY_EU", "deployment": "gpt-4o-eu",
             "api_version": "2024-02-15-preview"},
            # an unquoted api_version is a YAML date: read back as written
            {"name": "azure@my-endpoint-canada.openai.azure.com/gpt-4o-ca", "type": "azure",
             "base_url": "https://my-endpoint-canada.openai.azure.com/", "model": "gpt-4o-ca",
             "api_key_env": "AZURE_API_KEY_CA", "deployment": "gpt-4o-ca",
             "api_version": "2024-06-01"},
            # no prefix: OpenAI
            {"name": "openai", "type": "openai", "model": "gpt-4o", "api_key_env": "OPENAI_API_KEY"},
        ]
    }


def test_provider_names_are_model_info_ids_else_type_and_host_numbered_in_file_order() -> None:
    names = [p["name"] for p in providers("model_ids.yaml")["llama3"]]
    assert names == [
        "gpu-1",  # model_info.id
        "ollama@gpu-2:11434",  # ollama_chat/ is ollama too
        "ollama@gpu-2:11434-2",  # the same default name again
        "ollama",  # an id equal to a default name is the id's
        "42",  # a numeric id
        "gpu-1-2",  # a repeated id
    ]


def test_names_do_not_depend_on_the_environment() -> None:
    first = mapped("model_ids.yaml", env={}).document
    assert first == mapped("model_ids.yaml", env={"OLLAMA_HOST": "x"}).document


def test_openai_with_another_api_base_is_an_openai_compatible_server() -> None:
    assert providers("openai_compatible.yaml") == {
        "vllm-models": [
            {"name": "openai-compatible@vllm:8000", "type": "openai-compatible",
             "base_url": "http://vllm:8000/v1", "model": "facebook/opt-125m", "api_key": "none"},
        ],
        # keyless: OPENAI_API_KEY is sent only when it is set, as LiteLLM does
        "llamacpp": [
            {"name": "openai-compatible@127.0.0.1:8080", "type": "openai-compatible",
             "base_url": "http://127.0.0.1:8080/v1", "model": "qwen2.5-7b-instruct"},
        ],
        "gpt-4o-mini": [
            {"name": "openai@api.openai.com", "type": "openai",
             "base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini",
             "api_key_env": "OPENAI_API_KEY"},
        ],
        "davinci": [
            {"name": "openai", "type": "openai", "model": "gpt-3.5-turbo-instruct",
             "api_key_env": "OPENAI_API_KEY", "mode": "completion"},
        ],
    }


def test_an_openai_compatible_server_gets_openai_api_key_when_it_is_set() -> None:
    env = {"OPENAI_API_KEY": "rhtestkey-openai-0123456789"}
    entry = mapped("openai_compatible.yaml", env=env).document["models"][1]["providers"][0]
    assert entry["api_key_env"] == "OPENAI_API_KEY"


def test_wildcard_routes_check_whatever_the_provider_serves() -> None:
    assert providers("wildcards.yaml") == {
        "openai/*": [
            {"name": "openai", "type": "openai", "model": "*", "api_key_env": "OPENAI_API_KEY",
             "probe_model": "gpt-4o-mini"},
        ],
        "anthropic/*": [
            {"name": "anthropic", "type": "anthropic", "model": "*",
             "api_key_env": "ANTHROPIC_API_KEY"},
        ],
        "*": [
            {"name": "openai", "type": "openai", "model": "*", "api_key_env": "OPENAI_API_KEY"},
        ],
        # a pattern stays one: the listed models that match it
        "groq/llama*": [
            {"name": "groq", "type": "groq", "model": "llama*", "api_key_env": "GROQ_API_KEY"},
        ],
        "claude-3": [
            {"name": "anthropic", "type": "anthropic", "model": "claude-3-*",
             "api_key_env": "ANTHROPIC_API_KEY"},
        ],
    }


CHECKED = "chat, completion, embedding, image_generation, audio_speech, audio_transcription, rerank, moderation, responses"


def test_model_info_mode_maps_to_mode_and_other_modes_are_unsupported() -> None:
    found = {name: entries[0] for name, entries in providers("modes.yaml").items()}
    assert {name: entry.get("mode") for name, entry in found.items()} == {
        "azure-embedding-model": "embedding",
        "dall-e-3": "image_generation",
        "whisper": "audio_transcription",
        "tts": "audio_speech",
        "rerank-english-v3.0": "rerank",
        "omni-moderation": "moderation",
        "o3-responses": "responses",
        "gpt-4o-chat": None,  # chat is the default
        "batch-gpt-4o-mini": None,
        "gpt-4o-realtime": None,
    }
    assert found["rerank-english-v3.0"]["type"] == "cohere"
    assert found["batch-gpt-4o-mini"] == {
        "name": "azure@batch.openai.azure.com/batch-gpt-4o-mini",
        "type": "unsupported",
        "model": "batch-gpt-4o-mini",
        "reason": f"mode 'batch' cannot be checked (router-health checks: {CHECKED})",
    }
    assert found["gpt-4o-realtime"]["type"] == "unsupported"
    assert found["gpt-4o-realtime"]["reason"].startswith("mode 'realtime' cannot be checked")


def test_an_unknown_prefix_is_an_unsupported_deployment_with_a_reason() -> None:
    assert providers("unknown_prefix.yaml") == {
        "jumpstart": [
            {"name": "sagemaker", "type": "unsupported",
             "model": "jumpstart-dft-meta-textgeneration-llama-2-7b",
             "reason": "no router-health adapter for LiteLLM provider prefix 'sagemaker/'"},
        ],
        "starcoder": [
            {"name": "huggingface@my-endpoint.endpoints.huggingface.cloud", "type": "unsupported",
             "model": "bigcode/starcoder",
             "reason": "no router-health adapter for LiteLLM provider prefix 'huggingface/'"},
        ],
        "gpt-4o": [
            {"name": "openai", "type": "openai", "model": "gpt-4o", "api_key_env": "OPENAI_API_KEY"},
        ],
    }


def test_health_check_settings_map_to_probe_settings_and_background_checks() -> None:
    document = mapped("health_checks.yaml").document
    assert document["checks"] == {"interval": 60}
    gemini, claude = (m["providers"][0] for m in document["models"])
    assert gemini == {
        "name": "gemini", "type": "gemini", "model": "gemini-2.5-pro",
        "api_key_env": "GEMINI_API_KEY", "probe_model": "gemini-2.0-flash-lite",
        "timeout": 10, "max_tokens": 5,
    }
    assert claude == {
        "name": "anthropic", "type": "anthropic", "model": "claude-opus-4-1",
        "api_key_env": "ANTHROPIC_API_KEY", "timeout": 2.5, "interval": 0,
    }


def test_background_checks_without_an_interval_run_every_300_seconds() -> None:
    assert mapped("background_default.yaml").document["checks"] == {"interval": 300}


def test_no_background_checks_unless_general_settings_turn_them_on() -> None:
    assert "checks" not in mapped("quickstart.yaml").document


def test_bedrock_and_vertex_keep_region_project_location_and_credential_references() -> None:
    assert providers("cloud.yaml") == {
        "claude-3-haiku": [
            {"name": "bedrock@us-east-1", "type": "bedrock",
             "model": "anthropic.claude-3-haiku-20240307-v1:0", "region": "us-east-1",
             "aws_access_key_id_env": "AWS_ACCESS_KEY_ID",
             "aws_secret_access_key_env": "AWS_SECRET_ACCESS_KEY"},
            # bedrock/converse/ is the same model on the Converse route
            {"name": "bedrock@eu-west-1", "type": "bedrock",
             "model": "anthropic.claude-3-haiku-20240307-v1:0", "region": "eu-west-1"},
        ],
        # no aws_region_name: LiteLLM's AWS_REGION_NAME, written out (the name does not
        # depend on the environment)
        "titan-embed": [
            {"name": "bedrock", "type": "bedrock", "model": "amazon.titan-embed-text-v2:0",
             "region": "us-west-2", "mode": "embedding"},
        ],
        "gemini-vertex": [
            {"name": "vertex-ai@my-project/europe-west4", "type": "vertex-ai",
             "model": "gemini-1.5-pro", "project": "my-project", "location": "europe-west4",
             "credentials_file": "/secrets/vertex-sa.json"},
        ],
    }


def test_every_listed_prefix_maps_to_its_contract_type_and_default_key_variable() -> None:
    found = {name: entries[0] for name, entries in providers("registry.yaml").items()}
    assert {name: (e["type"], e.get("api_key_env")) for name, e in found.items()} == {
        "groq-llama": ("groq", "GROQ_API_KEY"),
        "mistral-small": ("mistral", "MISTRAL_API_KEY"),
        "deepseek-chat": ("deepseek", "DEEPSEEK_API_KEY"),
        "or-claude": ("openrouter", "OPENROUTER_API_KEY"),
        "together-llama": ("together", "TOGETHERAI_API_KEY"),
        "fireworks-llama": ("fireworks", "FIREWORKS_AI_API_KEY"),
        "grok": ("xai", "XAI_API_KEY"),
        "sonar": ("perplexity", "PERPLEXITYAI_API_KEY"),
        "command-r": ("cohere", "COHERE_API_KEY"),
        "qwen-plus": ("dashscope", "DASHSCOPE_API_KEY"),
        "kimi": ("moonshot", "MOONSHOT_API_KEY"),
        "glm": ("zhipu", "ZAI_API_KEY"),
        "cerebras-llama": ("cerebras", "CEREBRAS_API_KEY"),
        "nim-llama": ("nvidia-nim", "NVIDIA_NIM_API_KEY"),
        "vllm-qwen": ("vllm", None),
        "lmstudio": ("lm-studio", None),
        "azure-ai-mistral": ("azure-ai", "AZURE_AI_API_KEY"),
        "gemini-flash": ("gemini", "GEMINI_API_KEY"),
        "doubao": ("volcengine", "VOLCENGINE_API_KEY"),
    }
    # no free models list: checked by the 1-token call LiteLLM's own check sends
    assert {name for name, e in found.items() if e.get("probe") == "completion"} == {
        "sonar", "glm", "azure-ai-mistral",
    }
    # the model is what follows the prefix, slashes and all
    assert found["or-claude"]["model"] == "anthropic/claude-3.5-sonnet"
    assert found["fireworks-llama"]["model"] == "accounts/fireworks/models/llama-v3-70b-instruct"


def test_values_from_the_environment_and_litellm_default_variables() -> None:
    gpt, claude = (m["providers"] for m in mapped("env_and_literals.yaml").document["models"])
    azure, openai = gpt
    assert azure["base_url"] == "https://from-env.openai.azure.com"  # os.environ/AZURE_API_BASE
    assert azure["api_version"] == "2024-10-21"  # os.environ/AZURE_API_VERSION
    assert azure["api_key_env"] == "AZURE_API_KEY"
    assert openai["headers_env"] == {"X-Team": "TEAM_HEADER"}
    assert claude == [
        # no api_key: LiteLLM reads ANTHROPIC_API_KEY
        {"name": "anthropic", "type": "anthropic", "model": "claude-3-5-haiku-latest",
         "api_key_env": "ANTHROPIC_API_KEY"},
    ]


def test_a_key_written_in_the_file_is_the_entrys_key_for_serving() -> None:
    openai = mapped("env_and_literals.yaml").document["models"][0]["providers"][1]
    assert openai["api_key"] == "rhtestkey-literal-openai-0123456789"
    assert openai["headers"] == {"OpenAI-Organization": "rhtestkey-literal-org-0123456789"}


def test_yaml_anchors_and_merge_keys_are_read_as_litellm_reads_them() -> None:
    found = providers("anchors.yaml")
    assert [e[0]["api_version"] for e in found.values()] == ["2024-06-01", "2024-06-01"]
    assert [e[0]["api_key_env"] for e in found.values()] == ["AZURE_API_KEY", "AZURE_API_KEY"]
    assert [e[0]["deployment"] for e in found.values()] == ["gpt-4o", "gpt-4o-mini"]


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_provider_remembers_its_model_list_entry(name: str) -> None:
    result = mapped(name)
    entries = [
        (origin.index, origin.model_name)
        for (i, j), origin in sorted(result.origins.items())
        if result.document["models"][i]["name"] == origin.model_name
    ]
    count = sum(len(m["providers"]) for m in result.document["models"])
    assert len(entries) == count
    assert sorted(index for index, _ in entries) == list(range(count))


def test_a_type_without_a_models_list_cannot_check_a_wildcard_or_bill_an_image() -> None:
    text = (
        "model_list:\n"
        "  - {model_name: 'perplexity/*', litellm_params: {model: 'perplexity/*'}}\n"
        "  - {model_name: cogview, litellm_params: {model: zai/cogview-4}, model_info: {mode: image_generation}}\n"
    )
    found = litellm_document(parse_yaml(text, source="c.yaml"), env={}).document["models"]
    assert [(m["providers"][0]["type"], m["providers"][0]["reason"]) for m in found] == [
        ("unsupported", "type 'perplexity' has no models list, so a wildcard route cannot be checked"),
        ("unsupported", "type 'zhipu' has no free probe, and an image is never generated (billed) "
         "to check a deployment unless the config allows it"),
    ]


def test_a_mode_the_type_cannot_check_is_unsupported_with_the_modes_it_can() -> None:
    text = "model_list:\n  - {model_name: e, litellm_params: {model: anthropic/claude-3}, model_info: {mode: embedding}}\n"
    entry = litellm_document(parse_yaml(text, source="c.yaml"), env={}).document["models"][0]
    assert entry["providers"][0]["type"] == "unsupported"
    assert entry["providers"][0]["reason"] == "type 'anthropic' cannot check mode 'embedding' (it checks: chat)"


def test_the_mapped_document_never_shows_a_key_in_its_repr() -> None:
    assert "rhtestkey" not in repr(mapped("env_and_literals.yaml"))


def deployments(*entries: str) -> list[dict[str, Any]]:
    """The provider entries of a config of ``entries`` (flow mappings), all named ``m``."""
    text = "model_list:\n" + "".join(f"  - {{model_name: m, {e}}}\n" for e in entries)
    return litellm_document(parse_yaml(text, source="c.yaml"), env={}).document["models"][0][
        "providers"
    ]


def test_generated_names_skip_ids_taken_later_and_names_already_given() -> None:
    names = [p["name"] for p in deployments(
        "litellm_params: {model: ollama/a}",
        "litellm_params: {model: ollama/b}",
        "litellm_params: {model: ollama/c}, model_info: {id: ollama-2}",
        "litellm_params: {model: ollama/d}",
        "litellm_params: {model: ollama/e, api_base: 'http://gpu:11434'}",
        "litellm_params: {model: ollama/f}, model_info: {id: ollama}",
        "litellm_params: {model: ollama/g}, model_info: {id: ollama-2}",
        "litellm_params: {model: ollama/h, api_base: 'http://gpu:11434'}",
        "litellm_params: {model: ollama/i}, model_info: {id: 'ollama@gpu:11434-2'}",
        "litellm_params: {model: ollama/j}",
    )]
    assert names == [
        "ollama-3",  # "ollama" and "ollama-2" are ids further down
        "ollama-4",
        "ollama-2",  # the id
        "ollama-5",
        "ollama@gpu:11434",
        "ollama",  # the id
        "ollama-2-2",  # a repeated id, numbered from itself
        "ollama@gpu:11434-3",  # "-2" is an id further down
        "ollama@gpu:11434-2",
        "ollama-6",
    ]


def test_thousands_of_deployments_of_one_model_get_numbered_names() -> None:
    names = [p["name"] for p in deployments(*["litellm_params: {model: ollama/x}"] * 3000)]
    assert names[:3] == ["ollama", "ollama-2", "ollama-3"]
    assert names[-1] == "ollama-3000"
    assert len(set(names)) == 3000


@pytest.mark.parametrize(
    ("params", "base_url"),
    [
        # LiteLLM appends /v1/messages unless api_base ends with it
        ("model: anthropic/claude-3-5-haiku, api_base: 'https://api.anthropic.com/v1/messages'",
         "https://api.anthropic.com"),
        ("model: anthropic/claude-3-5-haiku, api_base: 'https://gw.test/anthropic/v1/messages/'",
         "https://gw.test/anthropic"),
        # ... so a base ending /v1 is /v1/v1/messages to LiteLLM too: kept, and fails alike
        ("model: anthropic/claude-3-5-haiku, api_base: 'https://gw.test/v1'", "https://gw.test/v1"),
        ("model: ollama/llama3, api_base: 'http://gpu:11434/api/generate'", "http://gpu:11434"),
        ("model: ollama_chat/llama3, api_base: 'http://gpu:11434/api/chat'", "http://gpu:11434"),
        # LiteLLM's Cohere api_base is the whole endpoint URL
        ("model: cohere_chat/command-r, api_base: 'https://api.cohere.com/v2/chat'",
         "https://api.cohere.com"),
        # Gemini's api_base carries its version, as router-health's base_url does
        ("model: gemini/gemini-2.0-flash, api_base: 'https://gw.test/v1beta'", "https://gw.test/v1beta"),
    ],
    ids=["anthropic", "anthropic-slash", "anthropic-v1", "ollama", "ollama-chat", "cohere", "gemini"],
)
def test_an_endpoint_litellm_accepts_at_the_end_of_api_base_is_taken_off(
    params: str, base_url: str
) -> None:
    (entry,) = deployments(f"litellm_params: {{{params}, api_key: os.environ/K}}")
    assert entry["base_url"] == base_url


def test_an_azure_api_base_naming_a_deployment_is_that_deployment_at_the_resource_root() -> None:
    (entry,) = deployments(
        "litellm_params: {model: azure/gpt-4o, api_key: os.environ/K, api_version: '2024-10-21',"
        " api_base: 'https://eu.openai.azure.com/openai/deployments/gpt-4o-eu'}"
    )
    assert (entry["name"], entry["base_url"], entry["deployment"]) == (
        "azure@eu.openai.azure.com/gpt-4o-eu", "https://eu.openai.azure.com", "gpt-4o-eu",
    )


def test_an_azure_wildcard_is_unsupported_as_it_would_list_the_base_model_catalogue() -> None:
    (entry,) = deployments(
        "litellm_params: {model: 'azure/*', api_key: os.environ/K, api_base: 'https://eu.openai.azure.com'}"
    )
    assert entry["type"] == "unsupported"
    assert "base-model catalogue, not this resource's deployments" in entry["reason"]


@pytest.mark.parametrize(
    ("model", "info", "reasoning"),
    [
        ("azure/my-o3", "base_model: azure/o3-mini", True),  # the name does not say; base_model does
        ("azure/o3-proxy", "base_model: azure/gpt-4o", False),  # the name misleads
        ("azure/gpt-4o-eu", "base_model: azure/gpt-4o", None),  # both agree: nothing to say
        ("azure/my-o3", "base_model: o3-mini, health_check_model: azure/gpt-4o-mini", None),
        ("azure/my-o3", "base_model: azure/o3-mini, mode: embedding", None),
    ],
    ids=["reasoning", "not-reasoning", "agree", "probe-model", "embedding"],
)
def test_model_info_base_model_says_whether_the_deployment_is_a_reasoning_model(
    model: str, info: str, reasoning: bool | None
) -> None:
    (entry,) = deployments(
        f"litellm_params: {{model: {model}, api_key: os.environ/K, api_base: 'https://r.openai.azure.com'}},"
        f" model_info: {{{info}}}"
    )
    assert entry.get("reasoning") is reasoning


def bedrock(env: dict[str, str], params: str = "model: bedrock/amazon.nova-lite-v1:0") -> dict[str, Any]:
    text = f"model_list:\n  - {{model_name: m, litellm_params: {{{params}}}}}\n"
    return litellm_document(parse_yaml(text, source="c.yaml"), env=env).document["models"][0][
        "providers"
    ][0]


def test_a_bedrock_region_is_read_where_litellm_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-2")
    both = {"AWS_REGION_NAME": "eu-west-1", "AWS_REGION": "us-east-2"}
    # LiteLLM's AWS_REGION_NAME first; written out, router-health's adapter does not read it
    assert bedrock(both)["region"] == "eu-west-1"
    assert bedrock(both)["name"] == "bedrock"
    # AWS_REGION (or AWS_DEFAULT_REGION): the adapter reads it itself, where it runs
    assert "region" not in bedrock({"AWS_REGION": "us-east-2"})
    # a model ARN names its region
    arn = "model: 'bedrock/arn:aws:bedrock:ap-south-1:123456789012:inference-profile/apac.x'"
    assert bedrock(both, arn)["region"] == "ap-south-1"
    # aws_region_name wins over all of them
    given = "model: bedrock/amazon.nova-lite-v1:0, aws_region_name: sa-east-1"
    assert bedrock(both, given)["region"] == "sa-east-1"


def test_health_check_voice_is_the_voice_of_speech_deployments_only() -> None:
    yaml_text = b"""
model_list:
  - model_name: tts
    litellm_params: {model: groq/playai-tts, api_key: os.environ/GROQ_API_KEY}
    model_info: {mode: audio_speech, health_check_voice: Fritz-PlayAI}
  - model_name: chat
    litellm_params: {model: groq/llama-3.3-70b-versatile, api_key: os.environ/GROQ_API_KEY}
    model_info: {health_check_voice: Fritz-PlayAI}
"""
    data = parse_yaml(yaml_text, source="voice.yaml")
    document = litellm_document(data, source="voice.yaml", env={}).document
    tts, chat = (m["providers"][0] for m in document["models"])
    assert (tts["mode"], tts["voice"]) == ("audio_speech", "Fritz-PlayAI")
    assert "voice" not in chat  # LiteLLM reads it for speech deployments alone

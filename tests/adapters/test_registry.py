"""The OpenAI-compatible registry: providers as data, one adapter class per line."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from adapters import ADAPTER_TYPES, PROVIDERS, OpenAIAdapter, ProviderSpec, RegistryAdapter, Secret
from adapters.registry import REGISTRY_ADAPTERS, adapter_class

KEY = Secret("rhtestkey-registry-0123456789abcdef")

#: The contract's registry names (issue 14): every one must be a config type.
CONTRACT_TYPES = [
    "mistral", "groq", "deepseek", "openrouter", "together", "fireworks", "xai", "perplexity",
    "moonshot", "dashscope", "zhipu", "siliconflow", "cerebras", "nvidia-nim", "vllm",
    "lm-studio", "llama-cpp", "azure-ai",
]


def test_every_registry_provider_of_the_contract_is_a_config_type() -> None:
    assert [spec.type for spec in PROVIDERS] == CONTRACT_TYPES
    for kind in CONTRACT_TYPES:
        assert issubclass(ADAPTER_TYPES[kind], RegistryAdapter)


@pytest.mark.parametrize("spec", PROVIDERS, ids=lambda s: s.type)
def test_each_line_makes_a_class_with_its_data(spec: ProviderSpec) -> None:
    cls = REGISTRY_ADAPTERS[spec.type]
    assert cls.__name__ == cls.adapter_name == spec.adapter_name
    assert cls.adapter_name.endswith("Adapter")
    assert cls.default_base_url == spec.base_url
    assert cls.key_required is spec.key_required
    assert cls.lists_models is spec.lists_models
    assert cls.modes == spec.mode_set and "chat" in cls.modes
    if spec.base_url is not None:
        parts = urlsplit(spec.base_url)
        local = parts.hostname == "127.0.0.1"
        assert parts.scheme == ("http" if local else "https"), spec.type
        assert local is not spec.key_required, spec.type  # hosted APIs need a key


@pytest.mark.parametrize(
    ("kind", "models_url"),
    [
        ("mistral", "https://api.mistral.ai/v1/models"),
        ("groq", "https://api.groq.com/openai/v1/models"),
        ("deepseek", "https://api.deepseek.com/models"),
        ("openrouter", "https://openrouter.ai/api/v1/models"),
        ("together", "https://api.together.xyz/v1/models"),
        ("fireworks", "https://api.fireworks.ai/inference/v1/models"),
        ("xai", "https://api.x.ai/v1/models"),
        ("moonshot", "https://api.moonshot.ai/v1/models"),
        ("dashscope", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/models"),
        ("siliconflow", "https://api.siliconflow.cn/v1/models"),
        ("cerebras", "https://api.cerebras.ai/v1/models"),
        ("nvidia-nim", "https://integrate.api.nvidia.com/v1/models"),
        ("lm-studio", "http://127.0.0.1:1234/v1/models"),
        ("llama-cpp", "http://127.0.0.1:8080/v1/models"),
    ],
)
def test_the_free_probe_lists_models_at_the_providers_default_base_url(
    kind: str, models_url: str
) -> None:
    cls = ADAPTER_TYPES[kind]
    assert cls.default_base_url is not None
    adapter = cls(provider=kind, base_url=cls.default_base_url, model="m", api_key=KEY)
    request = adapter.build_request()
    assert (request.method, request.url, request.params) == ("GET", models_url, {})
    assert request.headers == {"Authorization": f"Bearer {KEY.reveal()}"}


def test_the_paid_probe_is_openais_format_at_the_registry_url() -> None:
    cls = ADAPTER_TYPES["groq"]
    adapter = cls(provider="groq", base_url=str(cls.default_base_url), model="whisper-large-v3",
                  api_key=KEY, probe="completion", mode="audio_transcription")
    request = adapter.build_request()
    assert request.url == "https://api.groq.com/openai/v1/audio/transcriptions"
    assert request.content is not None and b"whisper-large-v3" in request.content


def test_a_local_server_needs_no_key() -> None:
    cls = ADAPTER_TYPES["vllm"]
    adapter = cls(provider="vllm", base_url="http://10.0.0.5:8000/v1", model="qwen")
    assert adapter.build_request().headers == {}
    assert adapter.build_request().url == "http://10.0.0.5:8000/v1/models"


def test_azure_ai_sends_an_api_key_header_and_its_api_version() -> None:
    cls = ADAPTER_TYPES["azure-ai"]
    assert cls.option_keys == frozenset({"api_version"})
    adapter = cls(provider="foundry", base_url="https://res.services.ai.azure.com/models",
                  model="Phi-4", api_key=KEY, probe="completion")
    request = adapter.build_request()
    assert request.url == "https://res.services.ai.azure.com/models/chat/completions"
    assert request.headers == {"api-key": KEY.reveal()}
    assert request.params == {"api-version": "2024-05-01-preview"}
    pinned = cls(provider="foundry", base_url="https://res.services.ai.azure.com/models",
                 model="Phi-4", api_key=KEY, probe="completion", options={"api_version": "2025-01-01"})
    assert pinned.build_request().params == {"api-version": "2025-01-01"}


@pytest.mark.parametrize("kind", ["perplexity", "zhipu", "azure-ai"])
def test_a_provider_without_a_models_list_says_what_to_set_instead(kind: str) -> None:
    cls = ADAPTER_TYPES[kind]
    assert not cls.lists_models
    adapter = cls(provider=kind, base_url="https://example.test/v1", model="m", api_key=KEY)
    with pytest.raises(ValueError, match="probe_path"):
        adapter.build_request()
    with_path = cls(provider=kind, base_url="https://example.test/v1", model="m", api_key=KEY,
                    probe_path="/status")
    assert with_path.build_request().url == "https://example.test/status"


def test_a_models_list_as_a_bare_array_is_read_too() -> None:
    cls = ADAPTER_TYPES["together"]
    adapter = cls(provider="t", base_url=str(cls.default_base_url), model="m-2", api_key=KEY)
    assert adapter.judge([{"id": "m-1"}, {"id": "m-2"}]).healthy
    assert not adapter.judge([{"id": "m-1"}]).healthy


def test_registering_a_provider_is_one_line_of_data() -> None:
    spec = ProviderSpec("acme", "AcmeAdapter", "https://api.acme.test/v1", "chat embedding")
    cls = adapter_class(spec)
    assert issubclass(cls, OpenAIAdapter) and cls.adapter_name == "AcmeAdapter"
    adapter = cls(provider="acme", base_url="https://api.acme.test/v1", model="a", api_key=KEY,
                  probe="completion", mode="embedding")
    assert adapter.build_request().url == "https://api.acme.test/v1/embeddings"
    with pytest.raises(ValueError, match="unknown modes"):
        adapter_class(ProviderSpec("bad", "BadAdapter", None, "chat telepathy"))


def doc_rows() -> dict[str, list[str]]:
    """docs/providers.md's table rows by their first cell's type name."""
    text = (Path(__file__).parents[2] / "docs" / "providers.md").read_text(encoding="utf-8")
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) > 2:
            rows.setdefault(cells[0].strip("`"), cells)
    return rows


def test_the_providers_page_lists_every_type() -> None:
    rows = doc_rows()
    assert set(ADAPTER_TYPES) <= set(rows)


@pytest.mark.parametrize("spec", PROVIDERS, ids=lambda s: s.type)
def test_the_providers_page_says_what_the_registry_says(spec: ProviderSpec) -> None:
    cells = doc_rows()[spec.type]
    base, key, listing, modes = cells[1:5]
    if spec.base_url is None:
        assert base.startswith("none")
    else:
        assert base == f"`{spec.base_url}`"
    assert key.startswith("required" if spec.key_required else "optional")
    assert listing.startswith("yes" if spec.lists_models else "**no**")
    assert modes.replace("`", "").split() == spec.modes.split()

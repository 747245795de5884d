"""Each adapter's request: the provider's real paths, auth headers and query."""

from __future__ import annotations

import pytest

from adapters import (
    AnthropicAdapter,
    AzureOpenAIAdapter,
    GeminiAdapter,
    HttpAdapter,
    OllamaAdapter,
    OpenAIAdapter,
    OpenAICompatibleAdapter,
    Secret,
    VolcengineAdapter,
)

KEY = Secret("rhtestkey-0123456789abcdef")


def make(cls: type[HttpAdapter], probe: str = "models", **kwargs: object) -> HttpAdapter:
    base = kwargs.pop("base_url", cls.default_base_url or "https://example.test")
    return cls(provider="p", base_url=str(base), model="m-1", api_key=KEY, probe=probe, **kwargs)  # type: ignore[arg-type]


def test_openai_lists_models_with_a_bearer_token() -> None:
    request = make(OpenAIAdapter).build_request()
    assert (request.method, request.url) == ("GET", "https://api.openai.com/v1/models")
    assert request.headers == {"Authorization": f"Bearer {KEY.reveal()}"}


def test_openai_completion_asks_for_one_token() -> None:
    request = make(OpenAIAdapter, probe="completion").build_request()
    assert (request.method, request.url) == ("POST", "https://api.openai.com/v1/chat/completions")
    assert request.json_body["max_tokens"] == 1
    assert request.json_body["model"] == "m-1"


def test_volcengine_uses_ark_v3() -> None:
    request = make(VolcengineAdapter).build_request()
    assert request.url == "https://ark.cn-beijing.volces.com/api/v3/models"
    assert request.headers["Authorization"].startswith("Bearer ")


def test_compatible_sends_no_auth_without_a_key() -> None:
    adapter = OpenAICompatibleAdapter(provider="vllm", base_url="http://127.0.0.1:9/v1/", model="q")
    request = adapter.build_request()
    assert request.url == "http://127.0.0.1:9/v1/models"  # trailing slash tolerated
    assert request.headers == {}


def test_azure_uses_api_key_header_version_query_and_deployment_path() -> None:
    adapter = make(
        AzureOpenAIAdapter,
        probe="completion",
        base_url="https://res.openai.azure.com",
        options={"deployment": "gpt4-prod", "api_version": "2024-06-01"},
    )
    request = adapter.build_request()
    assert request.url == "https://res.openai.azure.com/openai/deployments/gpt4-prod/chat/completions"
    assert request.params == {"api-version": "2024-06-01"}
    assert request.headers == {"api-key": KEY.reveal()}
    assert "model" not in request.json_body  # the deployment selects the model
    listing = make(AzureOpenAIAdapter, base_url="https://res.openai.azure.com").build_request()
    assert listing.url == "https://res.openai.azure.com/openai/models"
    assert listing.params["api-version"]


def test_anthropic_sends_key_and_version_headers() -> None:
    request = make(AnthropicAdapter).build_request()
    assert request.url == "https://api.anthropic.com/v1/models"
    assert request.headers == {"x-api-key": KEY.reveal(), "anthropic-version": "2023-06-01"}
    pinned = make(AnthropicAdapter, probe="completion", options={"anthropic_version": "2024-01-01"})
    body = pinned.build_request()
    assert body.headers["anthropic-version"] == "2024-01-01"
    assert body.json_body["max_tokens"] == 1


def test_gemini_keeps_the_key_out_of_the_url() -> None:
    request = make(GeminiAdapter).build_request()
    assert request.url == "https://generativelanguage.googleapis.com/v1beta/models/m-1"
    assert KEY.reveal() not in request.url and not request.params
    assert request.headers == {"x-goog-api-key": KEY.reveal()}
    completion = make(GeminiAdapter, probe="completion").build_request()
    assert completion.url.endswith("/models/m-1:generateContent")
    assert completion.json_body["generationConfig"] == {"maxOutputTokens": 1}


def test_ollama_lists_pulled_models() -> None:
    adapter = OllamaAdapter(provider="local", base_url="http://127.0.0.1:11434", model="llama3")
    assert adapter.build_request().url == "http://127.0.0.1:11434/api/tags"
    adapter.probe = "completion"
    body = adapter.build_request().json_body
    assert body["options"] == {"num_predict": 1} and body["stream"] is False


@pytest.mark.parametrize(
    "cls",
    [OpenAIAdapter, AzureOpenAIAdapter, AnthropicAdapter, VolcengineAdapter, GeminiAdapter, OllamaAdapter],
)
def test_repr_never_shows_the_key(cls: type[HttpAdapter]) -> None:
    adapter = make(cls)
    assert KEY.reveal() not in repr(adapter)
    assert KEY.reveal() not in str(vars(adapter))


async def test_an_unopened_adapter_says_how_to_open_it() -> None:
    outcome = await make(OpenAIAdapter).check_health()
    assert not outcome.healthy
    assert "async with manager" in (outcome.error or "")

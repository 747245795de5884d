"""The simulator driven by the providers' own SDKs, the clients users run.

If an official SDK parses the simulator's answers, lists its models and
raises its own authentication error for a wrong key, the simulated wire is
the real one as far as a client can tell. The SDKs are synchronous: each call
runs in a worker thread (``trio.to_thread``) against the simulator served by
the ``sim`` fixture, and the counters are read back on the Trio side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import cohere
import ollama
import openai
import pytest
import trio
from cohere.errors import UnauthorizedError as CohereUnauthorizedError
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from service.testing.simulator import Behavior, SimProvider, Simulator
from service.testing.simulator.audio import silent_wav

# cohere's own models still read pydantic v1's ``__fields__``: its noise, not ours.
pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")

KEYS = {
    "openai": "sk-sdk-openai-0123456789",
    "groq": "gsk-sdk-groq-0123456789",
    "azure": "sdk-azure-0123456789abcdef",
    "anthropic": "sk-ant-sdk-0123456789",
    "gemini": "AIza-sdk-gemini-0123456789",
    "ollama": "sdk-ollama-gateway-0123456789",
    "cohere": "sdk-cohere-0123456789",
}
WRONG = "sk-wrong-key-000000000000"
OPENAI_MODELS = [
    "gpt-4o-mini",
    "o3-mini",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "dall-e-2",
    "tts-1",
    "whisper-1",
    "omni-moderation-latest",
]
AZURE_API_VERSION = "2024-10-21"


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    def keyed(name: str, kind: str, models: list[str]) -> SimProvider:
        return SimProvider(name, kind, KEYS[name], models, Behavior(latency=0.0))

    return [
        keyed("openai", "openai", OPENAI_MODELS),
        keyed("groq", "groq", ["llama-3.1-8b-instant"]),
        keyed("azure", "azure", ["gpt-4o", "text-embedding-3-small"]),
        keyed("anthropic", "anthropic", ["claude-3-5-haiku-latest"]),
        keyed("gemini", "gemini", ["gemini-2.0-flash", "text-embedding-004"]),
        keyed("ollama", "ollama", ["llama3.2:latest", "nomic-embed-text:latest"]),
        keyed("cohere", "cohere", ["command-r", "embed-english-v3.0", "rerank-english-v3.0"]),
    ]


# -- clients, as each SDK's docs build them (no retries: one call, one request) --


def openai_client(sim: Simulator, name: str = "openai", key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url(name), api_key=key or KEYS[name], max_retries=0)


def azure_client(sim: Simulator, key: str | None = None) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=sim.base_url("azure"),
        api_key=key or KEYS["azure"],
        api_version=AZURE_API_VERSION,
        max_retries=0,
    )


def anthropic_client(sim: Simulator, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=sim.base_url("anthropic"), api_key=key or KEYS["anthropic"], max_retries=0
    )


def gemini_client(sim: Simulator, key: str | None = None) -> genai.Client:
    # The SDK appends the API version itself, so its base URL stops before /v1beta.
    options = genai_types.HttpOptions(
        base_url=sim.base_url("gemini").removesuffix("/v1beta") + "/", api_version="v1beta"
    )
    return genai.Client(api_key=key or KEYS["gemini"], http_options=options)


def ollama_client(sim: Simulator, key: str | None = None) -> ollama.Client:
    # A keyed Ollama: the gateway setup (ollama.com, a proxy) that takes a Bearer key.
    return ollama.Client(
        host=sim.base_url("ollama"), headers={"Authorization": f"Bearer {key or KEYS['ollama']}"}
    )


def cohere_client(sim: Simulator, key: str | None = None) -> cohere.ClientV2:
    return cohere.ClientV2(api_key=key or KEYS["cohere"], base_url=sim.base_url("cohere"))


# -- the calls: each SDK's list/get calls (free) and its cheapest real calls (billed) --


@dataclass(frozen=True)
class SdkCall:
    provider: str  # the simulated provider it talks to
    paid: bool  # a model runs: billed upstream
    run: Callable[[Simulator], None]  # runs in a worker thread; asserts on what the SDK parsed


CALLS: dict[str, SdkCall] = {}


def sdk_call(
    name: str, provider: str, *, paid: bool
) -> Callable[[Callable[[Simulator], None]], None]:
    def register(run: Callable[[Simulator], None]) -> None:
        CALLS[name] = SdkCall(provider, paid, run)

    return register


PING: Any = [{"role": "user", "content": "ping"}]


@sdk_call("openai-models.list", "openai", paid=False)
def _(sim: Simulator) -> None:
    with openai_client(sim) as client:
        assert [m.id for m in client.models.list()] == OPENAI_MODELS


@sdk_call("openai-models.retrieve", "openai", paid=False)
def _(sim: Simulator) -> None:
    with openai_client(sim) as client:
        assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"


@sdk_call("openai-chat.completions", "openai", paid=True)
def _(sim: Simulator) -> None:
    with openai_client(sim) as client:
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=PING, max_tokens=1)
    assert answer.choices[0].message.content == "p"
    assert answer.usage is not None and answer.usage.total_tokens == 2


@sdk_call("openai-chat.reasoning", "openai", paid=True)
def _(sim: Simulator) -> None:
    with openai_client(sim) as client:
        answer = client.chat.completions.create(
            model="o3-mini", messages=PING, max_completion_tokens=64
        )
    assert answer.choices[0].message.content == "p"
    assert answer.usage is not None and answer.usage.completion_tokens_details is not None
    assert answer.usage.completion_tokens_details.reasoning_tokens == 8


@sdk_call("openai-completions", "openai", paid=True)
def _(sim: Simulator) -> None:
    with openai_client(sim) as client:
        answer = client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="ping", max_tokens=1
        )
    assert answer.choices[0].text == "p"


@sdk_call("openai-embeddings", "openai", paid=True)
def _(sim: Simulator) -> None:
    with openai_client(sim) as client:  # the SDK asks for base64 and decodes it
        answer = client.embeddings.create(model="text-embedding-3-small", input="ping")
    assert len(answer.data[0].embedding) == 8
    assert answer.usage.total_tokens == 1


@sdk_call("openai-images.generate", "openai", paid=True)
def _(sim: Simulator) -> None:
    with openai_client(sim) as client:
        answer = client.images.generate(model="dall-e-2", prompt="ping", n=1, size="256x256")
    assert answer.data and answer.data[0].url


@sdk_call("openai-audio.speech", "openai", paid=True)
def _(sim: Simulator) -> None:
    with openai_client(sim) as client:
        audio = client.audio.speech.create(model="tts-1", input="a", voice="alloy")
    assert audio.content.startswith(b"ID3")


@sdk_call("openai-audio.transcriptions", "openai", paid=True)
def _(sim: Simulator) -> None:
    with openai_client(sim) as client:
        answer = client.audio.transcriptions.create(
            model="whisper-1", file=("silence.wav", silent_wav(0.1), "audio/wav")
        )
    assert answer.text == ""


@sdk_call("openai-moderations", "openai", paid=True)
def _(sim: Simulator) -> None:
    with openai_client(sim) as client:
        answer = client.moderations.create(model="omni-moderation-latest", input="ping")
    assert answer.results[0].flagged is False


@sdk_call("openai-responses", "openai", paid=True)
def _(sim: Simulator) -> None:
    with openai_client(sim) as client:
        answer = client.responses.create(model="gpt-4o-mini", input="ping", max_output_tokens=16)
    assert answer.output_text == "p"
    assert answer.usage is not None and answer.usage.total_tokens == 2


@sdk_call("openai-on-groq-models.list", "groq", paid=False)
def _(sim: Simulator) -> None:
    with openai_client(sim, "groq") as client:
        assert [m.id for m in client.models.list()] == ["llama-3.1-8b-instant"]


@sdk_call("openai-on-groq-chat.completions", "groq", paid=True)
def _(sim: Simulator) -> None:
    with openai_client(sim, "groq") as client:
        answer = client.chat.completions.create(
            model="llama-3.1-8b-instant", messages=PING, max_tokens=1
        )
    assert answer.choices[0].message.content == "p"


@sdk_call("azure-models.list", "azure", paid=False)
def _(sim: Simulator) -> None:
    with azure_client(sim) as client:
        assert [m.id for m in client.models.list()] == ["gpt-4o", "text-embedding-3-small"]


@sdk_call("azure-chat.completions", "azure", paid=True)
def _(sim: Simulator) -> None:
    with azure_client(sim) as client:  # the model is the deployment, put in the path
        answer = client.chat.completions.create(model="gpt-4o", messages=PING, max_tokens=1)
    assert answer.choices[0].message.content == "p"


@sdk_call("azure-embeddings", "azure", paid=True)
def _(sim: Simulator) -> None:
    with azure_client(sim) as client:
        answer = client.embeddings.create(model="text-embedding-3-small", input="ping")
    assert answer.usage.prompt_tokens == 1


@sdk_call("anthropic-models.list", "anthropic", paid=False)
def _(sim: Simulator) -> None:
    with anthropic_client(sim) as client:
        assert [m.id for m in client.models.list()] == ["claude-3-5-haiku-latest"]


@sdk_call("anthropic-models.retrieve", "anthropic", paid=False)
def _(sim: Simulator) -> None:
    with anthropic_client(sim) as client:
        assert client.models.retrieve("claude-3-5-haiku-latest").id == "claude-3-5-haiku-latest"


@sdk_call("anthropic-messages.count_tokens", "anthropic", paid=False)
def _(sim: Simulator) -> None:
    with anthropic_client(sim) as client:
        counted = client.messages.count_tokens(model="claude-3-5-haiku-latest", messages=PING)
    assert counted.input_tokens == 1


@sdk_call("anthropic-messages.create", "anthropic", paid=True)
def _(sim: Simulator) -> None:
    with anthropic_client(sim) as client:
        message = client.messages.create(
            model="claude-3-5-haiku-latest", max_tokens=1, messages=PING
        )
    assert message.content[0].type == "text" and message.content[0].text == "p"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (1, 1)


@sdk_call("gemini-models.list", "gemini", paid=False)
def _(sim: Simulator) -> None:
    with gemini_client(sim) as client:
        names = [m.name for m in client.models.list()]
    assert names == ["models/gemini-2.0-flash", "models/text-embedding-004"]


@sdk_call("gemini-models.get", "gemini", paid=False)
def _(sim: Simulator) -> None:
    with gemini_client(sim) as client:
        model = client.models.get(model="gemini-2.0-flash")
    assert model.name == "models/gemini-2.0-flash"


@sdk_call("gemini-models.count_tokens", "gemini", paid=False)
def _(sim: Simulator) -> None:
    with gemini_client(sim) as client:
        counted = client.models.count_tokens(model="gemini-2.0-flash", contents="ping")
    assert counted.total_tokens == 1


@sdk_call("gemini-models.generate_content", "gemini", paid=True)
def _(sim: Simulator) -> None:
    with gemini_client(sim) as client:
        answer = client.models.generate_content(
            model="gemini-2.0-flash",
            contents="ping",
            config=genai_types.GenerateContentConfig(max_output_tokens=1),
        )
    assert answer.text == "p"
    assert answer.usage_metadata is not None and answer.usage_metadata.total_token_count == 2


@sdk_call("gemini-models.embed_content", "gemini", paid=True)
def _(sim: Simulator) -> None:
    with gemini_client(sim) as client:
        answer = client.models.embed_content(model="text-embedding-004", contents="ping")
    assert answer.embeddings is not None and len(answer.embeddings[0].values or []) == 8


@sdk_call("ollama-list", "ollama", paid=False)
def _(sim: Simulator) -> None:
    listed = ollama_client(sim).list()
    assert [m.model for m in listed.models] == ["llama3.2:latest", "nomic-embed-text:latest"]


@sdk_call("ollama-show", "ollama", paid=False)
def _(sim: Simulator) -> None:
    shown = ollama_client(sim).show("llama3.2")
    assert shown.capabilities == ["completion"]
    assert shown.details is not None and shown.details.format == "gguf"


@sdk_call("ollama-generate", "ollama", paid=True)
def _(sim: Simulator) -> None:
    answer = ollama_client(sim).generate(
        model="llama3.2", prompt="ping", options={"num_predict": 1}
    )
    assert answer.response == "p" and answer.eval_count == 1


@sdk_call("ollama-chat", "ollama", paid=True)
def _(sim: Simulator) -> None:
    answer = ollama_client(sim).chat(model="llama3.2", messages=PING, options={"num_predict": 1})
    assert answer.message.content == "p"


@sdk_call("ollama-embed", "ollama", paid=True)
def _(sim: Simulator) -> None:
    answer = ollama_client(sim).embed(model="nomic-embed-text", input="ping")
    assert len(answer.embeddings) == 1 and answer.prompt_eval_count == 1


@sdk_call("cohere-models.list", "cohere", paid=False)
def _(sim: Simulator) -> None:
    listed = cohere_client(sim).models.list()
    assert [m.name for m in listed.models] == [
        "command-r",
        "embed-english-v3.0",
        "rerank-english-v3.0",
    ]


@sdk_call("cohere-models.get", "cohere", paid=False)
def _(sim: Simulator) -> None:
    assert cohere_client(sim).models.get("command-r").endpoints == ["chat"]


@sdk_call("cohere-chat", "cohere", paid=True)
def _(sim: Simulator) -> None:
    answer = cohere_client(sim).chat(model="command-r", messages=PING, max_tokens=1)
    assert answer.message.content is not None and answer.message.content[0].text == "p"
    assert answer.usage is not None and answer.usage.billed_units is not None
    assert answer.usage.billed_units.output_tokens == 1


@sdk_call("cohere-embed", "cohere", paid=True)
def _(sim: Simulator) -> None:
    answer = cohere_client(sim).embed(
        model="embed-english-v3.0",
        texts=["ping"],
        input_type="search_query",
        embedding_types=["float"],
    )
    assert answer.embeddings.float_ is not None and len(answer.embeddings.float_[0]) == 8


@sdk_call("cohere-rerank", "cohere", paid=True)
def _(sim: Simulator) -> None:
    answer = cohere_client(sim).rerank(
        model="rerank-english-v3.0", query="ping", documents=["pong"], top_n=1
    )
    assert [r.index for r in answer.results] == [0]


@pytest.mark.parametrize("name", list(CALLS))
async def test_sdk_call_succeeds_and_is_counted_as_free_or_billed(
    sim: Simulator, name: str
) -> None:
    call = CALLS[name]
    await trio.to_thread.run_sync(call.run, sim)
    stats = sim.stats(call.provider)
    assert stats.requests == 1, "one SDK call, one request (no retry, no redirect)"
    if call.paid:
        assert (stats.list_probes, stats.completion_probes) == (0, 1)
    else:
        assert (stats.list_probes, stats.completion_probes, stats.billed_tokens) == (1, 0, 0)


# -- a wrong key: each SDK's own authentication error -------------------------


def list_gemini_models(client: genai.Client) -> list[genai_types.Model]:
    with client:  # a client dropped unclosed is closed under a running call
        return list(client.models.list())


WRONG_KEY_CALLS: dict[str, tuple[Callable[[Simulator], object], type[BaseException]]] = {
    "openai": (
        lambda sim: openai_client(sim, key=WRONG).models.list(),
        openai.AuthenticationError,
    ),
    "openai-on-groq": (
        lambda sim: openai_client(sim, "groq", key=WRONG).models.list(),
        openai.AuthenticationError,
    ),
    "azure": (lambda sim: azure_client(sim, key=WRONG).models.list(), openai.AuthenticationError),
    "anthropic": (
        lambda sim: anthropic_client(sim, key=WRONG).models.list(),
        anthropic.AuthenticationError,
    ),
    # Gemini answers a wrong key with 400 API_KEY_INVALID: the SDK's ClientError.
    "gemini": (
        lambda sim: list_gemini_models(gemini_client(sim, key=WRONG)),
        genai_errors.ClientError,
    ),
    # Ollama's SDK has one error class; the status says what happened.
    "ollama": (lambda sim: ollama_client(sim, key=WRONG).list(), ollama.ResponseError),
    "cohere": (
        lambda sim: cohere_client(sim, key=WRONG).models.list(),
        CohereUnauthorizedError,
    ),
}


@pytest.mark.parametrize("sdk", list(WRONG_KEY_CALLS))
async def test_wrong_key_raises_the_sdks_authentication_error(sim: Simulator, sdk: str) -> None:
    run, error_class = WRONG_KEY_CALLS[sdk]

    def call() -> BaseException:
        with pytest.raises(error_class) as caught:
            run(sim)
        return caught.value

    error = await trio.to_thread.run_sync(call)
    status = getattr(error, "status_code", None) or getattr(error, "code", None)
    assert status == (400 if sdk == "gemini" else 401)
    if sdk == "gemini":
        assert "API_KEY_INVALID" in str(error)


# -- the SDKs see the provider's refusals as the provider's -------------------


async def test_reasoning_model_refuses_max_tokens_through_the_openai_sdk(sim: Simulator) -> None:
    def call() -> openai.BadRequestError:
        with openai_client(sim) as client, pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="o3-mini", messages=PING, max_tokens=1)
        return caught.value

    error = await trio.to_thread.run_sync(call)
    assert error.code == "unsupported_parameter" and error.param == "max_tokens"
    assert "Use 'max_completion_tokens' instead." in error.message


async def test_chat_call_to_an_embedding_model_is_the_sdks_not_found_error(
    sim: Simulator,
) -> None:
    def call() -> openai.NotFoundError:
        with openai_client(sim) as client, pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(
                model="text-embedding-3-small", messages=PING, max_tokens=1
            )
        return caught.value

    error = await trio.to_thread.run_sync(call)
    assert "This is not a chat model" in error.message


async def test_ollama_show_of_an_unknown_model_is_a_404(sim: Simulator) -> None:
    def call() -> ollama.ResponseError:
        with pytest.raises(ollama.ResponseError) as caught:
            ollama_client(sim).show("no-such-model")
        return caught.value

    error = await trio.to_thread.run_sync(call)
    assert error.status_code == 404 and "not found" in error.error

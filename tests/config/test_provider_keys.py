"""The per-provider probe keys: what they load as, and one precise line per mistake."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from adapters import Secret
from service import AdapterManager, ConfigError, parse_config
from service.config import ProviderConfig

HEADER_VALUE = "Zq7f3a9c1e5bWx-header"
ENV = {"OPENAI_API_KEY": "rhtestkey-openai-000000", "TENANT_ID": HEADER_VALUE}


def load(**entry: Any) -> ProviderConfig:
    entry.setdefault("type", "openai")
    entry.setdefault("api_key_env", "OPENAI_API_KEY")
    config = parse_config(
        {"models": [{"name": "gpt-4o", "providers": [{"name": "p", **entry}]}]}, env=ENV
    )
    return config.models[0].providers[0]


def problem(**entry: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(**entry)
    message = str(info.value)
    assert "Traceback" not in message
    return message


def test_the_probe_keys_default_to_todays_behaviour() -> None:
    provider = load()
    assert (provider.mode, provider.reasoning, provider.probe_model, provider.max_tokens) == (
        "chat", None, None, None,
    )
    assert (provider.probe_path, dict(provider.headers), provider.expect_status) == (None, {}, ())
    assert provider.allow_image_probe is False


def test_every_key_reaches_the_adapter() -> None:
    config = parse_config(
        {"models": [{"name": "gpt-4o", "providers": [{
            "name": "p", "type": "openai", "api_key_env": "OPENAI_API_KEY", "mode": "responses",
            "reasoning": True, "probe_model": "gpt-4o-mini", "max_tokens": 32,
            "probe_path": "/healthz", "headers": {"X-Org": "org-1"},
            "headers_env": {"X-Tenant": "TENANT_ID"}, "expect_status": [200, 204],
        }]}]},
        env=ENV,
    )
    provider = config.models[0].providers[0]
    assert provider.headers == {"X-Org": Secret("org-1"), "X-Tenant": Secret(HEADER_VALUE)}
    assert provider.headers_env == {"X-Tenant": "TENANT_ID"}
    assert HEADER_VALUE not in repr(provider)
    assert Secret(HEADER_VALUE) in provider.secrets
    manager = AdapterManager.from_config(config)
    (adapter,) = manager.get_model_adapters("gpt-4o")
    assert (adapter.mode, adapter.reasoning, adapter.probe_model, adapter.max_tokens) == (  # type: ignore[attr-defined]
        "responses", True, "gpt-4o-mini", 32,
    )
    assert adapter.probe_path == "/healthz"  # type: ignore[attr-defined]
    assert adapter.expect_status == frozenset({200, 204})  # type: ignore[attr-defined]
    assert Secret(HEADER_VALUE) in manager.health_checker.known_secrets


def test_a_wildcard_entry_lists_without_verifying() -> None:
    provider = load(model="*")
    assert provider.model == "*" and provider.verify_model is False


def test_image_generation_may_be_probed_for_a_price_only_when_allowed() -> None:
    assert load(mode="image_generation").probe == "models"  # free: always fine
    allowed = load(mode="image_generation", probe="completion", allow_image_probe=True)
    assert allowed.allow_image_probe is True


def test_a_provider_without_a_models_list_is_fine_with_a_probe_path_or_the_paid_probe() -> None:
    assert load(type="perplexity", api_key_env="OPENAI_API_KEY", probe_path="/").probe_path == "/"
    assert load(type="perplexity", probe="completion").probe == "completion"


def test_an_unsupported_entry_needs_only_a_reason() -> None:
    config = parse_config(
        {"models": [{"name": "m", "providers": [{
            "name": "x", "type": "unsupported", "reason": "no adapter for the prefix 'foo/'",
            "base_url": "https://foo.example", "api_key_env": "NOT_SET_ANYWHERE",
        }]}]},
        env={},
    )
    provider = config.models[0].providers[0]
    assert provider.options == {"reason": "no adapter for the prefix 'foo/'"}
    assert provider.api_key is None  # never probed: the variable is not even read


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"mode": "embeddings"}, "mode: unknown mode 'embeddings' (did you mean 'embedding'?)"),
        ({"mode": 3}, "mode: must be a string, got 3"),
        ({"type": "anthropic", "api_key_env": "OPENAI_API_KEY", "mode": "embedding"},
         "mode: type 'anthropic' cannot probe mode 'embedding'; its modes: chat"),
        ({"type": "gemini", "api_key_env": "OPENAI_API_KEY", "mode": "rerank"},
         "its modes: chat, embedding"),
        ({"reasoning": "yes"}, "reasoning: must be true or false, got 'yes'"),
        ({"max_tokens": 0}, "max_tokens: must be 1 to 4096"),
        ({"max_tokens": 100000}, "max_tokens: must be 1 to 4096"),
        ({"max_tokens": 1.5}, "max_tokens: must be an integer, got 1.5"),
        ({"max_tokens": 4, "mode": "embedding"},
         "max_tokens: only applies to modes chat, completion, responses"),
        ({"reasoning": True, "mode": "moderation"}, "reasoning: only applies to modes"),
        ({"probe_model": ""}, "probe_model: must name one model"),
        ({"probe_path": "health"}, "probe_path: must be a path starting with one '/'"),
        ({"probe_path": "//evil.example/x"}, "probe_path: must be a path starting with one '/'"),
        ({"probe_path": "/a b"}, "probe_path: must be ASCII with no spaces or '#'"),
        ({"probe_path": "/health", "probe": "completion"},
         "probe_path: replaces the free probe, and this entry sends the paid one"),
        ({"expect_status": 99}, "expect_status: must be an HTTP status (100 to 599)"),
        ({"expect_status": []}, "expect_status: must be an HTTP status"),
        ({"expect_status": [200, "204"]}, "expect_status: must be an HTTP status"),
        ({"expect_status": True}, "expect_status: must be an HTTP status"),
        ({"expect_status": 401},
         "expect_status: the list and paid probes are judged by their body too, so only 2xx"),
        ({"headers": "X-A: b"}, "headers: must be a table of header name = value"),
        ({"headers": {"X A": "b"}}, "headers.X A: is not a header name"),
        ({"headers": {"Host": "b"}}, "headers.Host: is written by the probe itself"),
        ({"headers": {"X-A": 5}}, "headers.X-A: must be a string, got a int"),
        ({"headers": {"X-A": "line\nbreak"}}, "headers.X-A: the value must be visible ASCII"),
        ({"headers_env": {"X-A": "UNSET_VARIABLE"}},
         "headers_env.X-A: environment variable UNSET_VARIABLE is not set"),
        ({"headers_env": {"X-A": "sk-pasted value"}},
         "headers_env.X-A: is not an environment variable name"),
        ({"headers": {"X-Tenant": "a"}, "headers_env": {"x-tenant": "TENANT_ID"}},
         "headers_env.x-tenant: is set twice"),
        ({"allow_image_probe": True}, 'allow_image_probe: only applies with mode = "image_generation"'),
        ({"voice": "alloy"}, 'voice: only applies with mode = "audio_speech"'),
        ({"mode": "image_generation", "probe": "completion"},
         "probe: a paid probe of mode \"image_generation\" generates (and bills) an image"),
        ({"mode": "image_generation", "probe": "passive", "passive_fallback": "completion"},
         "set allow_image_probe = true"),
        ({"reason": "because"}, "reason: only applies to type unsupported"),
        ({"model": "*", "probe": "completion"}, 'probe: model = "*" is checked with the free list probe'),
        ({"model": "*", "verify_model": True}, 'verify_model: model = "*" has no one model'),
        ({"model": "*", "probe_path": "/health"}, "probe_path: model = \"*\" reports the models"),
        ({"type": "perplexity", "model": "*"},
         "model: type 'perplexity' has no models list, so model = \"*\""),
        ({"type": "perplexity"},
         "probe: type 'perplexity' has no models list to probe for free: set probe_path"),
        ({"type": "zhipu", "probe": "passive"}, "type 'zhipu' has no models list"),
        ({"type": "unsupported"}, 'reason: required for type "unsupported"'),
        ({"type": "unsupported", "reason": "  "}, "reason: is empty"),
        ({"type": "unsupported", "reason": "x", "probe": "completion"},
         'probe: does not apply to type "unsupported" (it is never probed)'),
        ({"type": "unsupported", "reason": "x", "mode": "embedding"},
         'mode: does not apply to type "unsupported"'),
        ({"type": "unsupported", "reason": "x", "base_url": "ftp://x"},
         "base_url: must start with http:// or https://"),
    ],
)
def test_each_mistake_is_one_precise_line(entry: dict[str, Any], expected: str) -> None:
    message = problem(**entry)
    assert expected in message, message
    assert "models[0] (gpt-4o).providers[0]" in message


def test_header_values_are_never_shown_in_a_problem() -> None:
    message = problem(headers={"X-A": "Zq7f3a9c\x00e5bWx"})
    assert "Zq7f3a9c" not in message and "e5bWx" not in message
    env = {**ENV, "BAD_HEADER": "Zq7f3a9c\ne5bWx"}
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"models": [{"name": "m", "providers": [{
                "name": "p", "type": "openai", "api_key_env": "OPENAI_API_KEY",
                "headers_env": {"X-A": "BAD_HEADER"},
            }]}]},
            env=env,
        )
    assert "Zq7f3a9c" not in str(info.value) and "the value in BAD_HEADER" in str(info.value)


def test_a_secret_pasted_as_a_variable_name_is_not_echoed() -> None:
    pasted = "sk1AbCdEfGhIjKlMnOpQrStUvWx"
    message = problem(headers_env={"X-A": pasted})
    assert pasted not in message



def test_the_documented_example_loads_as_written() -> None:
    text = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = text.split("### Modes and probe overrides", 1)[1]
    example = re.search(r"```toml\n(.*?)```", section, re.S)
    assert example is not None
    names = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "GATEWAY_API_KEY", "GATEWAY_TENANT_TOKEN",
             "PERPLEXITY_API_KEY", "COHERE_API_KEY", "OPENROUTER_API_KEY")
    config = parse_config(
        tomllib.loads(example.group(1)), env={name: f"rhtestkey-{name.lower()}" for name in names}
    )
    modes = {p.name: p.mode for m in config.models for p in m.providers}
    assert modes["cohere"] == "rerank"
    assert [m.providers[0].type for m in config.models][-1] == "unsupported"

"""Adapters registered in code follow the config's rules for names."""

from __future__ import annotations

import pytest

from adapters import CallableAdapter
from service import AdapterManager, parse_config


async def _ok() -> bool:
    return True


def _manager() -> AdapterManager:
    config = parse_config(
        {"models": [{"name": "m", "providers": [{"name": "p", "type": "ollama"}]}]}, env={}
    )
    return AdapterManager(config)


@pytest.mark.parametrize(
    ("model", "provider", "named"),
    [
        ("bad\nmodel", "prov", "model name 'bad\\nmodel' contains U+000A (LINE FEED)"),
        ("m", "evil\u202eprov", "provider name 'evil\\u202eprov' contains U+202E"),
        ("m", "nul\x00", "provider name 'nul\\x00' contains U+0000"),
    ],
    ids=["newline-in-model", "bidi-in-provider", "nul-in-provider"],
)
def test_a_name_with_control_characters_is_refused_and_shown_escaped(
    model: str, provider: str, named: str
) -> None:
    manager = _manager()
    with pytest.raises(ValueError, match="control, format and bidi") as info:
        manager.register_adapter(model, CallableAdapter(provider, _ok))
    assert named in str(info.value)
    assert model not in manager.model_adapters or model == "m"
    assert [a.provider for a in manager.model_adapters["m"]] == ["p"]


def test_an_ordinary_name_in_any_script_is_fine() -> None:
    manager = _manager()
    manager.register_adapter("模型-ü", CallableAdapter("προμηθευτής", _ok))
    assert [a.provider for a in manager.model_adapters["模型-ü"]] == ["προμηθευτής"]

"""A config document as TOML text, for tools that generate configs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["dump_toml"]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string, given raw non-ASCII (JSON's
        # surrogate-pair escapes are not valid TOML) and an escaped DEL.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to a config file")


def dump_toml(document: Mapping[str, Any]) -> str:
    """A config document (what :func:`parse_config` takes) as TOML text.

    For tools that generate configs (the benchmarks, the soak, tests): the
    result loads back with :func:`load_config` into the same config.
    """
    lines: list[str] = []
    for section in ("checks", "server"):
        if section in document:
            lines.append(f"[{section}]")
            lines += [
                f"{k} = {_toml_value(v)}" for k, v in document[section].items() if v is not None
            ]
    for model in document.get("models", ()):
        lines += ["", "[[models]]", f"name = {_toml_value(model['name'])}"]
        if model.get("tags") is not None:
            lines.append(f"tags = {_toml_value(model['tags'])}")
        for provider in model.get("providers", ()):
            lines += ["", "  [[models.providers]]"]
            lines += [f"  {k} = {_toml_value(v)}" for k, v in provider.items() if v is not None]
    return "\n".join(lines) + "\n"

"""A config document as TOML text, for tools that generate configs."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = ["dump_toml"]

#: Sections written first, in this order; any other table follows in document order.
_SECTIONS: Final = ("checks", "server", "webhook", "cluster")
_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


def _toml_string(value: str) -> str:
    # A JSON string is a TOML basic string, given raw non-ASCII (JSON's
    # surrogate-pair escapes are not valid TOML) and an escaped DEL.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):  # an inline table: headers = { Name = "value" }
        if not value:
            return "{}"
        pairs = (f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + ", ".join(pairs) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to a config file")


def _comments(lines: Sequence[str], indent: str = "") -> list[str]:
    return [f"{indent}# {line}".rstrip() for text in lines for line in text.splitlines() or [""]]


def dump_toml(
    document: Mapping[str, Any],
    *,
    header: Sequence[str] = (),
    notes: Mapping[tuple[int, int], Sequence[str]] | None = None,
) -> str:
    """A config document (what :func:`parse_config` takes) as TOML text.

    For tools that generate configs (the benchmarks, the soak, tests,
    ``router-health import``): the result loads back with :func:`load_config`
    into the same config. ``header`` is written first as comment lines;
    ``notes`` maps (model index, provider index) to comment lines written
    above that provider's table.
    """
    lines: list[str] = _comments(header)
    if header:
        lines.append("")
    sections = [s for s in _SECTIONS if s in document]
    sections += [s for s, v in document.items() if s not in (*_SECTIONS, "models") and isinstance(v, Mapping)]
    for section in sections:
        if lines and lines[-1] != "":
            lines.append("")
        lines.append(f"[{section}]")
        lines += [
            f"{_toml_key(k)} = {_toml_value(v)}"
            for k, v in document[section].items()
            if v is not None
        ]
    for i, model in enumerate(document.get("models", ())):
        if lines and lines[-1] != "":
            lines.append("")
        lines += ["[[models]]", f"name = {_toml_value(model['name'])}"]
        if model.get("tags") is not None:
            lines.append(f"tags = {_toml_value(model['tags'])}")
        for j, provider in enumerate(model.get("providers", ())):
            lines.append("")
            lines += _comments((notes or {}).get((i, j), ()), indent="  ")
            lines.append("  [[models.providers]]")
            lines += [
                f"  {_toml_key(k)} = {_toml_value(v)}" for k, v in provider.items() if v is not None
            ]
    return "\n".join(lines).lstrip("\n") + "\n"

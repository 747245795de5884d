"""A LiteLLM config file read as YAML, safely and within bounds.

``yaml.safe_load`` only (plain data: no tags that build objects). A file is
read up to :data:`MAX_LITELLM_BYTES`; a document whose aliases expand past
:data:`MAX_YAML_VALUES` values (an "anchor bomb"), refers to itself or nests
too deeply is refused with one line that says so, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

import yaml

from .values import ConfigError

__all__ = ["MAX_LITELLM_BYTES", "MAX_YAML_VALUES", "parse_yaml", "read_config_file"]

#: The largest LiteLLM config read (5,000 deployments fit in about 1 MiB).
MAX_LITELLM_BYTES: Final = 1 << 20
#: The most values a document may hold once its aliases are expanded.
MAX_YAML_VALUES: Final = 250_000
_TOO_LARGE: Final = f"larger than {MAX_LITELLM_BYTES // 1024} KiB: too large for a LiteLLM config"


def read_config_file(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes, up to the size cap. Raises :class:`ConfigError`."""
    source = str(path)
    try:
        with Path(path).open("rb") as file:
            raw = file.read(MAX_LITELLM_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(source, ["file not found"]) from None
    except OSError as exc:
        raise ConfigError(source, [f"cannot read: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_LITELLM_BYTES:
        raise ConfigError(source, [_TOO_LARGE])
    return raw


def parse_yaml(raw: bytes | str, *, source: str) -> Any:
    """The YAML document in ``raw`` as plain data. Raises :class:`ConfigError`."""
    if len(raw) > MAX_LITELLM_BYTES:
        raise ConfigError(source, [_TOO_LARGE])
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ConfigError(source, ["not UTF-8 text"]) from None
    else:
        text = raw
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(source, [_yaml_problem(exc)]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML refuses: its place, on one line
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise ConfigError(
            source,
            [f"line {line}, column {column}: invalid YAML: {exc.reason} (U+{exc.character:04X})"],
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"invalid YAML: {exc}"]) from None
    except RecursionError:
        raise ConfigError(source, ["invalid YAML: nested too deeply"]) from None
    problem = _size_problem(data)
    if problem is not None:
        raise ConfigError(source, [problem])
    return data


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """``line L, column C: invalid YAML: <problem> (<context>)``, on one line."""
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = " ".join(str(exc.problem or "").split()) or "cannot be parsed"
    context = " ".join(str(exc.context or "").split())
    return f"{where}invalid YAML: {problem}" + (f" ({context})" if context else "")


def _size_problem(root: Any) -> str | None:
    """Why the document is too large once expanded, or refers to itself; None if neither.

    Aliases share one object, so the walk counts each container once
    (memoised by identity) and never expands what it measures.
    """
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()  # containers whose walk is under way: their ancestors
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        if not isinstance(node, dict | list):
            continue
        key = id(node)
        children = list(node.values()) if isinstance(node, dict) else node
        if finished:
            open_ids.discard(key)
            size = 1 + sum(sizes.get(id(child), 1) for child in children)
            if size > MAX_YAML_VALUES:
                return (
                    f"invalid YAML: its aliases expand to more than {MAX_YAML_VALUES:,} values; "
                    "refusing it (a LiteLLM config is far smaller)"
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in open_ids:
            return "invalid YAML: an alias refers to a node that contains it (a loop)"
        open_ids.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return None

"""The OpenAI API's field checks, with its own 400 messages and codes.

Shared by every mode's handler (:mod:`.openai_modes`, :mod:`.openai_media`):
a missing field is ``missing_required_parameter``, a mistyped one
``invalid_type``, an out-of-range one ``integer_below_min_value``...
"""

from __future__ import annotations

from typing import Any

from .wire import Refused, Wire


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def invalid_type(wire: Wire, name: str, value: Any, expected: str) -> Refused:
    return wire.bad_request(
        f"Invalid type for '{name}': expected {expected}, but got {json_type(value)} instead.",
        param=name,
        code="invalid_type",
    )


def require(wire: Wire, data: dict[str, Any], name: str) -> Any:
    value = data.get(name)
    if value is None:
        raise wire.bad_request(
            f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
        )
    return value


def string(wire: Wire, data: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = require(wire, data, name) if required else data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid_type(wire, name, value, "a string")
    if not value:
        raise wire.bad_request(
            f"Invalid '{name}': string too short. Expected a string with minimum length 1, "
            "but got an empty string instead.",
            param=name,
            code="string_below_min_length",
        )
    return value


def integer(
    wire: Wire,
    data: dict[str, Any],
    name: str,
    *,
    minimum: int,
    maximum: int | None = None,
) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_type(wire, name, value, "an integer")
    if value < minimum:
        raise wire.bad_request(
            f"Invalid '{name}': integer below minimum value. Expected a value >= {minimum}, "
            f"but got {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    if maximum is not None and value > maximum:
        raise wire.bad_request(
            f"Invalid '{name}': integer above maximum value. Expected a value <= {maximum}, "
            f"but got {value} instead.",
            param=name,
            code="integer_above_max_value",
        )
    return value


def choice(
    wire: Wire, data: dict[str, Any], name: str, allowed: tuple[str, ...], default: str
) -> str:
    value = data.get(name, default)
    if value not in allowed:
        supported = ", ".join(f"'{a}'" for a in allowed)
        raise wire.bad_request(
            f"Invalid value: '{value}'. Supported values are: {supported}.",
            param=name,
            code="invalid_value",
        )
    return str(value)


def texts(wire: Wire, data: dict[str, Any], name: str) -> list[str]:
    """A string-or-array field (``input``, ``prompt``) as a non-empty list of texts."""
    value = require(wire, data, name)
    items = value if isinstance(value, list) else [value]
    if not isinstance(value, str | list):
        raise invalid_type(wire, name, value, "a string or array")
    if not items or any(item == "" or item == [] for item in items):
        raise wire.bad_request(
            f"'$.{name}' is invalid. Please check the API reference: "
            "https://platform.openai.com/docs/api-reference.",
            param=name,
        )
    return [item if isinstance(item, str) else "x" for item in items]  # token ids: one each


def count_tokens(text: str) -> int:
    """A stand-in token count: one per word, at least one."""
    return max(1, len(text.split()))

"""What a provider entry's probe sends, and how its answer is judged.

``mode``, ``reasoning``, ``probe_model``, ``max_tokens``, ``probe_path``,
``headers``/``headers_env``, ``expect_status`` and ``allow_image_probe``,
checked together (each rules the others) into :class:`ProviderConfig` fields.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from adapters.base import HttpAdapter, Secret, is_wildcard
from adapters.modes import DEFAULT_MODE, MODES

from .parse_validator import Validator, looks_like_a_secret
from .values import ENV_NAME, label

__all__ = ["probe_keys"]

#: The modes whose paid probe has an output budget (``max_tokens``, ``reasoning``).
_BUDGET_MODES = ("chat", "completion", "responses")
#: A health probe needs a few tokens; a typo of 100000 must not bill a long answer.
_MAX_PROBE_TOKENS = 4096
#: Headers the transport writes itself: set from config, they would break the exchange.
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "content-type", "transfer-encoding", "connection", "te",
     "upgrade", "expect", "keep-alive", "accept-encoding"}
)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: A header value: visible ASCII, inner spaces allowed (never shown in a message).
_HEADER_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


def probe_keys(
    validator: Validator,
    table: Mapping[str, Any],
    kind: str,
    adapter_cls: type[HttpAdapter],
    probe: str,
    fallback: str,
    model: str,
    path: str,
) -> dict[str, Any]:
    """``mode`` to ``allow_image_probe``, checked together: ProviderConfig fields.

    Problems are reported; the caller stops at any. ``probe`` and
    ``fallback`` were validated: the request actually sent is the
    fallback of a passive entry.
    """
    active = fallback if probe == "passive" else probe
    mode = table.get("mode", DEFAULT_MODE)
    if mode not in MODES:
        close = difflib.get_close_matches(str(mode), MODES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        validator.problem(
            f"{path}.mode", f"unknown mode {mode!r}{hint}; expected one of {', '.join(MODES)}"
        )
    elif mode not in adapter_cls.modes:
        served = ", ".join(m for m in MODES if m in adapter_cls.modes)
        validator.problem(
            f"{path}.mode",
            f"type {kind!r} cannot probe mode {mode!r}; its modes: {served} "
            '(a server that serves it in OpenAI\'s format: type = "openai-compatible")',
        )
    values: dict[str, Any] = {"mode": mode}
    for key in ("reasoning", "allow_image_probe"):
        if key in table and validator.typed(table, key, bool, path) is not None:
            values[key] = table[key]
    if "max_tokens" in table and validator.typed(table, "max_tokens", int, path) is not None:
        tokens = table["max_tokens"]
        if not 1 <= tokens <= _MAX_PROBE_TOKENS:
            validator.problem(
                f"{path}.max_tokens",
                f"must be 1 to {_MAX_PROBE_TOKENS} (the paid probe's answer budget), "
                f"got {tokens}",
            )
        values["max_tokens"] = tokens
    for key in ("max_tokens", "reasoning"):
        if key in table and mode in MODES and mode not in _BUDGET_MODES:
            validator.problem(
                f"{path}.{key}",
                f"only applies to modes {', '.join(_BUDGET_MODES)} "
                f"(a {mode} probe has no answer budget); remove it",
            )
    if "probe_model" in table:
        probe_model = table["probe_model"]
        if not probe_model.strip() or is_wildcard(probe_model):
            validator.problem(
                f"{path}.probe_model",
                "must name one model the paid probe calls, e.g. probe_model = \"gpt-4o-mini\"",
            )
        values["probe_model"] = probe_model
    if "probe_path" in table:
        values["probe_path"] = _probe_path(validator, table["probe_path"], active, path)
    if "expect_status" in table:
        values["expect_status"] = _expect_status(
            validator, table["expect_status"], "probe_path" in table, path
        )
    headers, headers_env = _probe_headers(validator, table, path)
    values.update(headers=headers, headers_env=headers_env)
    if mode == "image_generation" and active == "completion" and not table.get("allow_image_probe"):
        validator.problem(
            f"{path}.probe",
            'a paid probe of mode "image_generation" generates (and bills) an image on '
            "every check: set allow_image_probe = true to accept that, or use the free "
            'probe (probe = "models")',
        )
    if table.get("allow_image_probe") is True and mode != "image_generation":
        validator.problem(
            f"{path}.allow_image_probe", 'only applies with mode = "image_generation"'
        )
    if "voice" in table and mode != "audio_speech":
        validator.problem(f"{path}.voice", 'only applies with mode = "audio_speech"')
    if is_wildcard(model):
        _wildcard(validator, table, kind, adapter_cls, probe, model, path)
    elif not adapter_cls.lists_models and active == "models" and "probe_path" not in table:
        validator.problem(
            f"{path}.probe",
            f"type {kind!r} has no models list to probe for free: set probe_path = "
            '"/..." (a health URL it serves, relative to the base URL\'s host) or '
            'probe = "completion" (a real call: a few tokens)',
        )
    return values


def _wildcard(
    validator: Validator,
    table: Mapping[str, Any],
    kind: str,
    adapter_cls: type[HttpAdapter],
    probe: str,
    model: str,
    path: str,
) -> None:
    """``model = "*"`` (or a pattern, ``"claude-3-*"``): the list probe, reporting what matches."""
    written = f'model = "{model}"'
    if probe != "models":
        validator.problem(
            f"{path}.probe",
            f"{written} is checked with the free list probe, which reports the models the "
            "provider serves: remove probe (or name one model)",
        )
    if not adapter_cls.lists_models:
        validator.problem(
            f"{path}.model",
            f"type {kind!r} has no models list, so {written} cannot report what it "
            "serves: name one model",
        )
    if "probe_path" in table:
        validator.problem(
            f"{path}.probe_path",
            f"{written} reports the models the list probe sees, and probe_path replaces "
            "that probe: remove one",
        )
    if table.get("verify_model") is True:
        validator.problem(
            f"{path}.verify_model",
            f"{written} has no one model to look for: remove verify_model",
        )


def _probe_path(validator: Validator, value: str, active: str, path: str) -> str:
    where = f"{path}.probe_path"
    if not value.startswith("/") or value.startswith("//"):
        validator.problem(
            where,
            f"must be a path starting with one '/', relative to the base URL's host, "
            f'e.g. probe_path = "/health"; got {value!r}',
        )
    elif any(c.isspace() for c in value) or "#" in value or not value.isascii():
        validator.problem(where, f"must be ASCII with no spaces or '#', got {value!r}")
    if active == "completion":
        validator.problem(
            where,
            'replaces the free probe, and this entry sends the paid one (probe = '
            '"completion"): remove probe_path, or the probe key',
        )
    return value


def _expect_status(
    validator: Validator, value: Any, custom_path: bool, path: str
) -> tuple[int, ...]:
    where = f"{path}.expect_status"
    statuses = value if isinstance(value, list) else [value]
    if not statuses or not all(
        isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in statuses
    ):
        validator.problem(
            where,
            f"must be an HTTP status (100 to 599) or a non-empty list of them, "
            f"e.g. expect_status = [200, 204]; got {value!r}",
        )
        return ()
    if not custom_path and not all(200 <= s < 300 for s in statuses):
        validator.problem(
            where,
            "the list and paid probes are judged by their body too, so only 2xx statuses "
            "can be healthy; for a health URL that answers otherwise, set probe_path",
        )
    return tuple(sorted(set(statuses)))


def _probe_headers(
    validator: Validator, table: Mapping[str, Any], path: str
) -> tuple[dict[str, Secret], dict[str, str]]:
    """``headers`` (literal values) and ``headers_env`` (names of variables holding them).

    Values are secrets: no message ever shows one.
    """
    headers: dict[str, Secret] = {}
    names: dict[str, str] = {}
    for key in ("headers", "headers_env"):
        given = table.get(key, {})
        if not isinstance(given, dict):
            validator.problem(
                f"{path}.{key}",
                f"must be a table of header name = {'value' if key == 'headers' else 'ENV_VAR_NAME'}, "
                f'e.g. {key} = {{ "X-Tenant" = "{"..." if key == "headers" else "TENANT_ID"}" }}; '
                f"got a {type(given).__name__}",
            )
            continue
        for header, raw in given.items():
            where = f"{path}.{key}.{label(header)}"
            if not _HEADER_NAME.fullmatch(header):
                validator.problem(where, "is not a header name (letters, digits and - only)")
                continue
            if header.lower() in _RESERVED_HEADERS:
                validator.problem(where, "is written by the probe itself; remove it")
                continue
            if any(h.lower() == header.lower() for h in headers):
                validator.problem(where, "is set twice (in headers and headers_env); keep one")
                continue
            if not isinstance(raw, str):
                validator.problem(where, f"must be a string, got a {type(raw).__name__}")
                continue
            if key == "headers_env":
                found = _header_from_env(validator, raw, where)
                if found is None:
                    continue
                names[header], value, what = raw, found, f"the value in {raw}"
            else:
                value, what = raw, "the value"
            if not _HEADER_VALUE.fullmatch(value):
                validator.problem(
                    where,
                    f"{what} must be visible ASCII (inner spaces allowed), with no "
                    "newline or control character (value not shown)",
                )
                continue
            headers[header] = Secret(value)
    return headers, names


def _header_from_env(validator: Validator, env_name: str, where: str) -> str | None:
    """The value of the variable ``env_name`` (reported when not a name, or unset)."""
    if not ENV_NAME.fullmatch(env_name):
        validator.problem(
            where,
            "is not an environment variable name (letters, digits, _); it looks like the "
            "value was pasted here — put it in the environment and its name here",
        )
        return None
    value = validator.env.get(env_name)
    if not value:
        shown = "(name not shown: it looks like a secret)" if looks_like_a_secret(env_name) else env_name
        validator.problem(
            where,
            f"environment variable {shown} is not set (or empty); export it before "
            "starting, or remove this header",
        )
        return None
    return value

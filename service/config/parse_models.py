"""``[[models]]`` and their ``[[models.providers]]`` entries -> :class:`ModelConfig`.

An entry's common keys (name, type, base URL, key, probe, schedule, caps)
are read here; the keys that shape what its probe sends are read in
:mod:`.parse_probe`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from typing import Any

from adapters import ADAPTER_TYPES
from adapters.base import Secret, is_wildcard
from adapters.bedrock import bedrock_region

from .checks import SCHEDULE_KEYS, ChecksConfig
from .models import ACTIVE_PROBES, PROBES, ModelConfig, ProviderConfig
from .parse_probe import probe_keys
from .parse_validator import Validator
from .values import TOKEN_CHARS, display_url, label, name_problem, url_problem

__all__ = ["parse_models", "provider_policies"]

_PROVIDER_KEYS = {
    "name",
    "type",
    "base_url",
    "api_key",
    "api_key_env",
    "model",
    "probe",
    "passive_fallback",
    "timeout",
    "verify_model",
    "min_interval",
    "max_concurrent",
    "tags",
    *SCHEDULE_KEYS,
    # What the probe sends and how its answer is judged (docs/configuration.md).
    "mode",
    "reasoning",
    "probe_model",
    "max_tokens",
    "probe_path",
    "headers",
    "headers_env",
    "expect_status",
    "allow_image_probe",
}
#: Keys that shape a probe: meaningless on a ``type = "unsupported"`` entry.
_PROBE_KEYS = (
    "probe", "passive_fallback", "mode", "reasoning", "probe_model", "max_tokens", "probe_path",
    "headers", "headers_env", "expect_status", "allow_image_probe", "verify_model", "timeout",
)


def _option_keys() -> dict[str, set[str]]:
    """Provider-specific keys (each adapter type declares its own) -> the types that read them."""
    keys: dict[str, set[str]] = {}
    for kind, cls in ADAPTER_TYPES.items():
        for key in cls.option_keys:
            keys.setdefault(key, set()).add(kind)
    return keys


_PROVIDER_OPTION_KEYS = _option_keys()
_PROVIDER_KEYS |= set(_PROVIDER_OPTION_KEYS)


def parse_models(validator: Validator, data: Mapping[str, Any]) -> tuple[ModelConfig, ...]:
    models = data.get("models")
    if models is None:
        validator.problem("models", "no models configured; add at least one [[models]] table")
        return ()
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        validator.problem("models", "must be an array of tables: [[models]]")
        return ()
    if not models:
        validator.problem("models", "no models configured; add at least one [[models]] table")
    seen: set[str] = set()
    result = []
    for i, model in enumerate(models):
        path = f"models[{i}]"
        validator.unknown_keys(model, {"name", "providers", "tags"}, path)
        name = model.get("name")
        if not isinstance(name, str) or not name.strip():
            validator.problem(f"{path}.name", "required: a non-empty string, e.g. name = \"gpt-4\"")
            continue
        name_ok = validator.name(name, f"{path}.name")
        path = f"models[{i}] ({label(name)})"
        if name in seen:
            validator.problem(f"{path}.name", f"duplicate model name {name!r}")
        seen.add(name)
        tags = validator.tags(model, path)
        providers = _providers(validator, model, name, path)
        if tags is not None and name_ok:
            result.append(ModelConfig(name, providers, tags))
    return tuple(result)


def _providers(
    validator: Validator, model: Mapping[str, Any], model_name: str, path: str
) -> tuple[ProviderConfig, ...]:
    providers = model.get("providers")
    if not isinstance(providers, list) or not providers:
        validator.problem(f"{path}.providers", "add at least one [[models.providers]] table")
        return ()
    seen: set[str] = set()
    result = []
    for j, table in enumerate(providers):
        ppath = f"{path}.providers[{j}]"
        if not isinstance(table, dict):
            validator.problem(ppath, "must be a table: [[models.providers]]")
            continue
        provider = _provider(validator, table, model_name, ppath)
        if provider is None:
            continue
        if provider.name in seen:
            validator.problem(
                f"{ppath}.name",
                f"duplicate provider name {provider.name!r} in model {model_name!r}; "
                "names must be unique within a model",
            )
            continue
        seen.add(provider.name)
        result.append(provider)
    return tuple(result)


def _provider(
    validator: Validator, table: Mapping[str, Any], model_name: str, path: str
) -> ProviderConfig | None:
    validator.unknown_keys(table, _PROVIDER_KEYS, path)
    before = len(validator.problems)
    non_strings = {
        "timeout", "verify_model", "min_interval", "max_concurrent", "tags", *SCHEDULE_KEYS,
        "reasoning", "max_tokens", "headers", "headers_env", "expect_status",
        "allow_image_probe",
    }
    for key in _PROVIDER_KEYS - non_strings:
        if key in table:
            validator.typed(table, key, str, path)
    tags = validator.tags(table, path)
    schedule = validator.schedule(table, path)
    if "timeout" in table and validator.typed(table, "timeout", (int, float), path) is not None:
        validator.seconds(table["timeout"], f"{path}.timeout")
    if (
        "min_interval" in table
        and validator.typed(table, "min_interval", (int, float), path) is not None
    ):
        validator.seconds(table["min_interval"], f"{path}.min_interval", zero_ok=True)
    if (
        "max_concurrent" in table
        and validator.typed(table, "max_concurrent", int, path) is not None
        and table["max_concurrent"] < 1
    ):
        validator.problem(
            f"{path}.max_concurrent",
            f"must be at least 1 (leave it out for no cap), got {table['max_concurrent']}",
        )
    if "verify_model" in table:
        validator.typed(table, "verify_model", bool, path)
    for key in ("name", "model", "probe_model", *_PROVIDER_OPTION_KEYS):
        if isinstance(table.get(key), str):
            validator.name(table[key], f"{path}.{key}")
    if len(validator.problems) > before or tags is None or schedule is None:
        return None

    name = table.get("name")
    kind = table.get("type")
    if not name:
        validator.problem(f"{path}.name", "required: the provider's name, unique within the model")
    if not kind:
        validator.problem(
            f"{path}.type", f"required: one of {', '.join(ADAPTER_TYPES)}"
        )
        return None
    if kind not in ADAPTER_TYPES:
        close = difflib.get_close_matches(kind, list(ADAPTER_TYPES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        validator.problem(
            f"{path}.type",
            f"unknown provider type {kind!r}{hint}; expected one of {', '.join(ADAPTER_TYPES)}",
        )
        return None
    if not name:
        return None
    adapter_cls = ADAPTER_TYPES[kind]
    for key, kinds in _PROVIDER_OPTION_KEYS.items():
        if key in table and kind not in kinds:
            validator.problem(f"{path}.{key}", f"only applies to type {' or '.join(sorted(kinds))}")
    upstream_model = table.get("model") or model_name
    if name_problem(upstream_model) is not None:
        return None  # the model's name: reported where it is written
    if kind == "unsupported":
        return _unsupported(validator, table, name, upstream_model, tags, schedule, path)

    base_url = table.get("base_url") or adapter_cls.default_base_url
    if not base_url:
        validator.problem(f"{path}.base_url", f"required for type {kind!r} (no public default)")
        return None
    if validator.base_url(base_url, f"{path}.base_url", what="probe a model server") is None:
        return None
    if kind == "bedrock" and not bedrock_region(table.get("region"), base_url, os.environ):
        # Where the adapter looks (the process environment): else only building it
        # would find out, without saying which entry.
        validator.problem(
            f"{path}.region",
            'required for type "bedrock": set region = "us-east-1" or export AWS_REGION '
            "(none in AWS_DEFAULT_REGION, the base_url host or the AWS profile either)",
        )
        return None

    probe = table.get("probe", "models")
    if probe not in PROBES:
        validator.problem(f"{path}.probe", f"must be one of {', '.join(PROBES)}, got {probe!r}")
        return None
    fallback = table.get("passive_fallback", "models")
    if "passive_fallback" in table and probe != "passive":
        validator.problem(
            f"{path}.passive_fallback", 'only applies with probe = "passive"'
        )
        return None
    if fallback not in ACTIVE_PROBES:
        validator.problem(
            f"{path}.passive_fallback",
            f"must be one of {', '.join(ACTIVE_PROBES)} (the probe sent while the router "
            f"reports no traffic), got {fallback!r}",
        )
        return None

    api_key = _api_key(validator, table, kind, adapter_cls.key_required, path)
    options = {k: table[k] for k in _PROVIDER_OPTION_KEYS if k in table}
    before = len(validator.problems)
    probing = probe_keys(validator, table, kind, adapter_cls, probe, fallback, upstream_model, path)
    if len(validator.problems) > before:
        return None
    return ProviderConfig(
        name=name,
        type=kind,
        base_url=base_url,
        model=upstream_model,
        api_key=api_key,
        api_key_env=table.get("api_key_env"),
        probe=probe,
        passive_fallback=fallback,
        timeout=float(table["timeout"]) if "timeout" in table else None,
        # Azure's list names base models, not deployments: nothing to match;
        # a wildcard entry has no one model to look for.
        verify_model=table.get("verify_model", kind != "azure" and not is_wildcard(upstream_model)),
        options=options,
        min_interval=float(table["min_interval"]) if "min_interval" in table else None,
        max_concurrent=table.get("max_concurrent"),
        tags=tags,
        schedule=schedule,
        **probing,
    )


def _unsupported(
    validator: Validator,
    table: Mapping[str, Any],
    name: str,
    model: str,
    tags: tuple[str, ...],
    schedule: Mapping[str, Any],
    path: str,
) -> ProviderConfig | None:
    """``type = "unsupported"``: a deployment listed with its ``reason``, never probed.

    Its ``base_url`` and key may stay as an importer wrote them (so the
    entry becomes a real one by changing its type) but are not read.
    """
    before = len(validator.problems)
    reason = table.get("reason")
    if reason is None:
        validator.problem(
            f"{path}.reason",
            'required for type "unsupported": one line saying why it cannot be checked, '
            'e.g. reason = "no adapter for the provider prefix \'foo/\'"',
        )
    elif not reason.strip():
        validator.problem(f"{path}.reason", "is empty: say why this deployment cannot be checked")
    for key in _PROBE_KEYS:
        if key in table:
            validator.problem(
                f"{path}.{key}",
                'does not apply to type "unsupported" (it is never probed); remove it',
            )
    base_url = table.get("base_url", "")
    if base_url and (problem := url_problem(base_url)):
        validator.problem(f"{path}.base_url", f"{problem}, got {display_url(base_url)!r}")
    if len(validator.problems) > before:
        return None
    return ProviderConfig(
        name=name,
        type="unsupported",
        base_url=base_url,
        model=model,
        verify_model=False,
        options={"reason": " ".join(str(reason).split())},
        min_interval=float(table["min_interval"]) if "min_interval" in table else None,
        max_concurrent=table.get("max_concurrent"),
        tags=tags,
        schedule=schedule,
    )


def _api_key(
    validator: Validator, table: Mapping[str, Any], kind: str, required: bool, path: str
) -> Secret | None:
    # An empty key means none (a keyless provider), as it always has.
    table = {k: v for k, v in table.items() if not (k in ("api_key", "api_key_env") and v == "")}
    found = validator.literal_or_env(table, "api_key", path, noun="key")
    if found is not None:
        value, where, what = found
        return _key_value(validator, value.strip(), where, what)
    if required and "api_key" not in table and "api_key_env" not in table:
        validator.problem(
            path,
            f"type {kind!r} needs a key: set api_key_env = \"NAME_OF_ENV_VAR\" (preferred) "
            "or api_key",
        )
    return None


def _key_value(validator: Validator, value: str, path: str, what: str) -> Secret | None:
    # A stray newline (a CRLF .env file, a secret file) would otherwise
    # fail every probe with an error that could quote the key.
    if not TOKEN_CHARS.fullmatch(value):
        validator.problem(
            path, f"{what} has spaces or control characters inside it (value not shown)"
        )
        return None
    return Secret(value)


def provider_policies(
    validator: Validator, checks: ChecksConfig, models: tuple[ModelConfig, ...]
) -> ChecksConfig:
    """Collect the providers' ``max_concurrent`` and ``min_interval`` into ``checks``.

    ``max_concurrent`` caps a provider *name* across every model (one
    account, one rate limit), so it may be written on any one of that
    name's entries; two different values for one name are a mistake.
    ``min_interval`` belongs to its entry alone.
    """
    caps: dict[str, tuple[int, str]] = {}
    intervals: dict[tuple[str, str], float] = {}
    schedules: dict[tuple[str, str], Mapping[str, Any]] = {}
    for i, model in enumerate(models):
        for j, provider in enumerate(model.providers):
            path = f"models[{i}] ({model.name}).providers[{j}]"
            if provider.schedule:
                schedules[(model.name, provider.name)] = provider.schedule
            if provider.min_interval is not None:
                intervals[(model.name, provider.name)] = provider.min_interval
            cap = provider.max_concurrent
            if cap is None:
                continue
            if provider.name in caps and caps[provider.name][0] != cap:
                first, where = caps[provider.name]
                validator.problem(
                    f"{path}.max_concurrent",
                    f"{cap} conflicts with {first} at {where}: the cap is shared by every "
                    f"entry named {provider.name!r}, so give it one value",
                )
                continue
            caps.setdefault(provider.name, (cap, path))
    return dataclasses.replace(
        checks,
        provider_max_concurrent={name: cap for name, (cap, _) in caps.items()},
        adapter_min_interval=intervals,
        adapter_schedule=schedules,
    )

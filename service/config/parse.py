"""TOML -> typed, validated :class:`~service.config.Config`.

Every problem is reported with the file, the key path and what to do, all of
them at once (fixing a config one error per run is miserable), as a single
:class:`ConfigError` whose message is ready to print; never a traceback.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adapters import ADAPTER_TYPES
from adapters.base import HttpAdapter, Secret
from adapters.modes import DEFAULT_MODE, MODES, WILDCARD

from .checks import HISTORY_LENGTH, SCHEDULE_KEYS, TRANSIENT_KINDS, CheckSchedule, ChecksConfig
from .cluster import CLUSTER_MODES, MODE_SCHEMES, ClusterConfig, display_redis_url, sentinel_url
from .document import Config
from .models import ACTIVE_PROBES, PROBES, ModelConfig, ProviderConfig
from .server import (
    DEFAULT_MAX_STREAMS,
    MIN_CONNECTIONS,
    MIN_NON_STREAM_CONNECTIONS,
    ServerConfig,
    stream_room,
)
from .values import (
    ENV_NAME,
    MAX_TAGS,
    TAG_ACCEPTED,
    TOKEN_CHARS,
    ConfigError,
    display_url,
    finite,
    forbidden_target,
    label,
    name_problem,
    seconds_problem,
    tag_problem,
    url_problem,
)
from .webhook import WebhookConfig, webhook_problems

__all__ = ["load_config", "parse_config"]

_CHECK_KEYS: dict[str, type | tuple[type, ...]] = {
    "timeout": (int, float),
    "model_timeout": (int, float),
    "adapter_timeout": (int, float),
    "use_concurrent": bool,
    "fallback_sequential": bool,
    "recheck_timeouts": bool,
    "max_body_bytes": int,
    "sync_threads": int,
    "min_interval": (int, float),
    "max_concurrent_probes": int,
    "adaptive_concurrency": bool,
    "adaptive_ceiling": int,
    "allow_link_local": bool,
    "max_probe_tokens_per_hour": int,
}
_SCHEDULE_TYPES: dict[str, type | tuple[type, ...]] = {
    "interval": (int, float),
    "jitter": (int, float),
    "unhealthy_interval": (int, float),
    "healthy_threshold": int,
    "unhealthy_threshold": int,
    "max_age": (int, float),
    "stale_while_revalidate": (int, float),
    "transient": list,
    "transient_limit": int,
    "latency_slo_ms": (int, float),
    "slo_percentile": (int, float),
    "slo_window": int,
    "passive_window": (int, float),
    "passive_error_rate": (int, float),
}
_SERVER_KEYS: dict[str, type | tuple[type, ...]] = {
    "host": str,
    "port": int,
    "max_timeout": (int, float),
    "shutdown_grace": (int, float),
    "keep_alive_timeout": (int, float),
    "anonymous_min_interval": (int, float),
    "max_connections": int,
    "max_streams": int,
    "max_streams_per_client": int,
    "auth_token": str,
    "auth_token_env": str,
}
#: Keys whose values are secrets: a message about them never shows the value.
#: (A ``*_env`` key holds a name, but the usual mistake is pasting the secret there.)
_SECRET_KEYS = frozenset(
    {
        "api_key", "auth_token", "token", "url", "redis_url",
        "api_key_env", "auth_token_env", "token_env", "redis_url_env",
    }
)
#: A bearer token: long enough not to be guessed, and sendable in a header.
_MIN_TOKEN_CHARS = 16
_TOKEN_HINT = (
    "e.g. generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
)
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


def _option_keys() -> dict[str, set[str]]:
    """Provider-specific keys (each adapter type declares its own) -> the types that read them."""
    keys: dict[str, set[str]] = {}
    for kind, cls in ADAPTER_TYPES.items():
        for key in cls.option_keys:
            keys.setdefault(key, set()).add(kind)
    return keys


_PROVIDER_OPTION_KEYS = _option_keys()
_PROVIDER_KEYS |= set(_PROVIDER_OPTION_KEYS)
_TOP_KEYS = {"checks", "server", "models", "webhook", "cluster"}
_CLUSTER_KEYS: dict[str, type | tuple[type, ...]] = {
    "redis_url": str,
    "redis_url_env": str,
    "mode": str,
    "key_prefix": str,
    "timeout": (int, float),
    "instance_id": str,
}
_KEY_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_WEBHOOK_KEYS: dict[str, type | tuple[type, ...]] = {
    "url": str,
    "min_interval": (int, float),
    "timeout": (int, float),
    "max_pending": int,
    "retries": int,
    "token": str,
    "token_env": str,
}


def _type_name(expected: type | tuple[type, ...]) -> str:
    if expected == (int, float):
        return "a number"
    return {bool: "true or false", int: "an integer", str: "a string", list: "a list"}.get(
        expected if isinstance(expected, type) else object, "a value"
    )


def _looks_like_a_secret(name: str) -> bool:
    """A "variable name" long and mixed enough to be a pasted key (never shown then).

    Variable names are short words, mostly upper case (``OPENAI_API_KEY``);
    generated keys and tokens are long runs of mixed-case letters and digits.
    """
    return (
        len(name) >= 20
        and any(c.islower() for c in name)
        and any(c.isdigit() for c in name)
        and any(c.isupper() for c in name)
    )


class _Validator:
    def __init__(self, source: str, env: Mapping[str, str]) -> None:
        self.source = source
        self.env = env
        self.problems: list[str] = []
        #: ``[checks] allow_link_local``: read first, it rules every URL after.
        self.allow_link_local = False

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def unknown_keys(self, table: Mapping[str, Any], allowed: set[str], path: str) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else (
                    f"; allowed: {', '.join(sorted(allowed))}"
                )
                shown_key = label(key)  # a key may hold a newline, too
                self.problem(f"{path}.{shown_key}" if path else shown_key, f"unknown key{hint}")

    def typed(
        self, table: Mapping[str, Any], key: str, expected: type | tuple[type, ...], path: str
    ) -> Any:
        value = table[key]
        # bool is an int in Python; a timeout of `true` is still a mistake.
        ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
        if not ok:
            shown = f"a {type(value).__name__}" if key in _SECRET_KEYS else repr(value)
            self.problem(f"{path}.{key}", f"must be {_type_name(expected)}, got {shown}")
            return None
        return value

    def tags(self, table: Mapping[str, Any], path: str) -> tuple[str, ...] | None:
        """``tags = [...]``: () when absent, None (reported) when invalid."""
        if "tags" not in table:
            return ()
        value = table["tags"]
        path = f"{path}.tags"
        if not isinstance(value, list):
            self.problem(path, f"must be {TAG_ACCEPTED}, got a {type(value).__name__}")
            return None
        if len(value) > MAX_TAGS:
            self.problem(path, f"at most {MAX_TAGS} tags, got {len(value)}")
            return None
        for tag in value:
            problem = tag_problem(tag)
            if problem is not None:
                self.problem(path, f"{problem}; expected {TAG_ACCEPTED}")
                return None
        duplicates = sorted({t for t in value if value.count(t) > 1})
        if duplicates:
            self.problem(path, f"duplicate tag(s) {', '.join(map(repr, duplicates))}; list each once")
            return None
        return tuple(value)

    def seconds(self, value: Any, path: str, *, zero_ok: bool = False) -> float | None:
        if value is None:
            return None
        problem = seconds_problem(value, zero_ok=zero_ok)
        if problem is not None:
            self.problem(path, problem)
            return None
        return float(value)

    def literal_or_env(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        *,
        noun: str,
        example: str = "...",
        otherwise: str = "",
    ) -> tuple[str, str, str] | None:
        """A secret given as ``key`` or in the environment variable ``<key>_env`` names.

        Returns (value, the key path it came from, how to name it in a
        message), or None when neither is set or on a problem (reported).
        The value is never echoed: the usual mistake is pasting the secret
        itself into ``<key>_env``.
        """
        env_key = f"{key}_env"
        literal, env_name = table.get(key), table.get(env_key)
        if not isinstance(literal, str | None) or not isinstance(env_name, str | None):
            return None  # already reported as a type problem
        if literal is not None and env_name is not None:
            self.problem(path, f"set {env_key} or {key}, not both")
            return None
        if env_name is not None:
            where = f"{path}.{env_key}"
            if not ENV_NAME.fullmatch(env_name):
                self.problem(
                    where,
                    "is not an environment variable name (letters, digits, _); it looks like "
                    f"a {noun} was pasted here — put the {noun} in the environment and its name "
                    "here",
                )
                return None
            value = self.env.get(env_name)
            if not value:
                if _looks_like_a_secret(env_name):
                    self.problem(
                        where,
                        f"names no environment variable that is set (name not shown: it looks "
                        f"like a {noun}); put the {noun} in the environment and its name here",
                    )
                else:
                    self.problem(
                        where,
                        f"environment variable {env_name} is not set (or empty); "
                        f"export {env_name}={example} before starting{otherwise}",
                    )
                return None
            return value, where, f"the {noun} in {env_name}"
        if literal is not None:
            where = f"{path}.{key}"
            if not literal:
                self.problem(where, f"is empty: write the {noun}, or remove {key}")
                return None
            return literal, where, f"the {noun}"
        return None

    def section(
        self,
        data: Mapping[str, Any],
        name: str,
        keys: dict[str, type | tuple[type, ...]],
        also_allowed: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        table = data.get(name, {})
        if not isinstance(table, dict):
            self.problem(name, "must be a table, e.g. [" + name + "]")
            return {}
        self.unknown_keys(table, {*keys, *also_allowed}, name)
        values: dict[str, Any] = {}
        for key, expected in keys.items():
            if key in table:
                value = self.typed(table, key, expected, name)
                if value is not None:
                    values[key] = value
        return values

    def schedule(self, table: Mapping[str, Any], path: str) -> dict[str, Any] | None:
        """The schedule keys present in ``table``, validated; None (reported) when invalid."""
        values: dict[str, Any] = {}
        before = len(self.problems)
        for key in SCHEDULE_KEYS:
            if key not in table:
                continue
            value = self.typed(table, key, _SCHEDULE_TYPES[key], path)
            if value is None:
                continue
            where = f"{path}.{key}"
            if key in ("healthy_threshold", "unhealthy_threshold", "slo_window"):
                if value < 1:
                    what = "results in the window" if key == "slo_window" else "consecutive results"
                    self.problem(where, f"must be an integer >= 1 ({what}), got {value}")
                    continue
                if key == "slo_window" and value > HISTORY_LENGTH:
                    self.problem(
                        where,
                        f"must be at most {HISTORY_LENGTH} (the results kept per adapter), got {value}",
                    )
                    continue
            elif key == "transient_limit":
                if value < 0:
                    self.problem(
                        where, f"must be an integer >= 0 (0 = never escalate), got {value}"
                    )
                    continue
            elif key == "transient":
                value = self.transient(value, where)
                if value is None:
                    continue
            elif key in ("jitter", "passive_error_rate"):
                if not (finite(value) and 0 <= value <= 1):
                    what = "of the interval " if key == "jitter" else "of requests "
                    self.problem(where, f"must be a fraction {what}from 0 to 1, got {value!r}")
                    continue
                value = float(value)
            elif key == "slo_percentile":
                if not (finite(value) and 0 < value <= 100):
                    self.problem(where, f"must be a percentile above 0 and up to 100, got {value!r}")
                    continue
                value = float(value)
            elif key == "latency_slo_ms":
                if not (finite(value) and value > 0):
                    self.problem(
                        where, f"must be a finite number of milliseconds > 0, got {value!r}"
                    )
                    continue
                value = float(value)
            else:
                zero_ok = key in ("interval", "stale_while_revalidate")
                value = self.seconds(value, where, zero_ok=zero_ok)
                if value is None:
                    continue
            values[key] = value
        return None if len(self.problems) > before else values

    def transient(self, value: list[Any], path: str) -> tuple[str, ...] | None:
        accepted = f"a list of {' and/or '.join(map(repr, TRANSIENT_KINDS))}"
        bad = [v for v in value if v not in TRANSIENT_KINDS]
        if bad:
            self.problem(path, f"unknown failure kind {bad[0]!r}; expected {accepted}")
            return None
        if len(set(value)) != len(value):
            self.problem(path, f"list each kind once; expected {accepted}")
            return None
        return tuple(value)

    def checks(self, data: Mapping[str, Any]) -> ChecksConfig:
        values = self.section(data, "checks", _CHECK_KEYS, SCHEDULE_KEYS)
        table = data.get("checks", {})
        schedule = self.schedule(table, "checks") if isinstance(table, dict) else {}
        values["schedule"] = CheckSchedule(**(schedule or {}))
        for key in ("timeout", "model_timeout", "adapter_timeout", "min_interval"):
            if key in values:
                seconds = self.seconds(
                    values[key], f"checks.{key}", zero_ok=key == "min_interval"
                )
                if seconds is None:
                    del values[key]
                else:
                    values[key] = seconds
        for key, low, note in (
            ("max_body_bytes", 1024, ""),
            ("sync_threads", 1, ""),
            ("max_concurrent_probes", 0, " (0 = unlimited)"),
            ("adaptive_ceiling", 1, " (the largest an adaptive provider limit grows)"),
            (
                "max_probe_tokens_per_hour",
                1,
                " (tokens paid probes may be billed per sliding hour; leave it out for no budget)",
            ),
        ):
            if key in values and values[key] < low:
                self.problem(f"checks.{key}", f"must be at least {low}{note}, got {values[key]}")
                del values[key]
        self.allow_link_local = values.get("allow_link_local", False)
        return ChecksConfig(**values)

    def server(self, data: Mapping[str, Any]) -> ServerConfig:
        values = self.section(data, "server", _SERVER_KEYS)
        if "port" in values and not 0 <= values["port"] <= 65535:
            self.problem("server.port", f"must be 0..65535, got {values['port']}")
            del values["port"]
        for key in ("max_timeout", "shutdown_grace", "keep_alive_timeout"):
            if key in values:
                seconds = self.seconds(values[key], f"server.{key}")
                if seconds is None:
                    del values[key]
                else:
                    values[key] = seconds
        if "anonymous_min_interval" in values:
            interval = self.seconds(
                values["anonymous_min_interval"], "server.anonymous_min_interval", zero_ok=True
            )
            if interval is None:
                del values["anonymous_min_interval"]
            else:
                values["anonymous_min_interval"] = interval
        self.caps(values)
        values.pop("auth_token", None)
        values["auth_token"] = self.auth_token(data.get("server", {}))
        return ServerConfig(**values)

    def caps(self, values: dict[str, Any]) -> None:
        """``max_connections``, ``max_streams``, ``max_streams_per_client``: bounds, and together."""
        lowest = {"max_connections": MIN_CONNECTIONS, "max_streams": 1, "max_streams_per_client": 1}
        for key, low in lowest.items():
            if key in values and values[key] < low:
                self.problem(f"server.{key}", f"must be at least {low}, got {values[key]}")
                del values[key]
        connections, streams = values.get("max_connections"), values.get("max_streams")
        if connections is not None and streams is not None and streams > stream_room(connections):
            self.problem(
                "server.max_streams",
                "must leave a quarter of server.max_connections (at least "
                f"{MIN_NON_STREAM_CONNECTIONS}) to check requests and /livez: at most "
                f"{stream_room(connections)} with max_connections = {connections}, got {streams}",
            )
            del values["max_streams"]
            return
        per_client = values.get("max_streams_per_client")
        if per_client is not None:
            bound = f"{streams}" if streams is not None else f"{DEFAULT_MAX_STREAMS} by default"
            if per_client > (DEFAULT_MAX_STREAMS if streams is None else streams):
                self.problem(
                    "server.max_streams_per_client",
                    f"must be at most server.max_streams ({bound}), got {per_client}",
                )
                del values["max_streams_per_client"]

    def auth_token(self, table: Any) -> Secret | None:
        """``[server] auth_token_env`` / ``auth_token``: the same rules as a provider's key."""
        if not isinstance(table, dict):
            return None
        found = self.literal_or_env(
            table, "auth_token", "server", noun="token",
            otherwise=", or remove auth_token_env to serve without auth",
        )
        if found is None:
            return None
        value, path, where = found
        if len(value) < _MIN_TOKEN_CHARS or not TOKEN_CHARS.fullmatch(value):
            self.problem(
                path,
                f"{where} must be at least {_MIN_TOKEN_CHARS} visible ASCII characters "
                f"with no spaces (got {len(value)} characters); {_TOKEN_HINT}",
            )
            return None
        return Secret(value)

    def webhook(self, data: Mapping[str, Any], checks: ChecksConfig) -> WebhookConfig | None:
        """``[webhook]``: where status transitions are POSTed (needs background checks)."""
        if "webhook" not in data:
            return None
        values = self.section(data, "webhook", _WEBHOOK_KEYS)
        table = data["webhook"]
        if not isinstance(table, dict):
            return None
        before = len(self.problems)
        if "url" not in table:
            self.problem("webhook.url", 'required: where to POST, e.g. url = "https://alerts.example/hook"')
        token = self.webhook_token(table)
        options = {k: v for k, v in values.items() if k not in ("token", "token_env")}
        if "url" in values:
            for key, message in webhook_problems(**options).items():
                self.problem(f"webhook.{key}", message)
            self.target(values["url"], "webhook.url", what="POST to the receiver")
        if not checks.background_enabled:
            self.problem(
                "webhook",
                "transitions come from background checks: set [checks] interval > 0, "
                "or remove [webhook]",
            )
        if len(self.problems) > before or "url" not in values:
            return None
        return WebhookConfig(**options, token=token)

    def cluster(self, data: Mapping[str, Any], checks: ChecksConfig) -> ClusterConfig | None:
        """``[cluster]``: the Redis that instances share their checks through."""
        if "cluster" not in data:
            return None
        values = self.section(data, "cluster", _CLUSTER_KEYS)
        if not isinstance(data["cluster"], dict):
            return None
        before = len(self.problems)
        table = data["cluster"]
        values.pop("redis_url", None)
        values.pop("redis_url_env", None)
        found = self.literal_or_env(
            table, "redis_url", "cluster", noun="Redis URL", example="redis://...",
            otherwise=", or remove [cluster]",
        )
        url, where = (found[0], found[1]) if found else (None, "cluster.redis_url")
        if found is None and "redis_url" not in table and "redis_url_env" not in table:
            self.problem(
                "cluster.redis_url",
                'required: the shared Redis, e.g. redis_url = "redis://redis:6379/0" '
                "(or redis_url_env naming a variable that holds it)",
            )
        mode = values.get("mode", "standalone")
        if mode not in CLUSTER_MODES:
            self.problem(
                "cluster.mode",
                f"must be one of {', '.join(CLUSTER_MODES)} (a single node, a Redis Cluster, "
                f"or a primary found through Sentinel), got {mode!r}",
            )
        elif url is not None:
            schemes = MODE_SCHEMES[mode]
            shown = display_redis_url(url)
            if url.partition("://")[0] not in schemes:
                wanted = ", ".join(f"{scheme}://" for scheme in schemes)
                self.problem(where, f"mode {mode!r} takes a {wanted} URL, got {shown!r}")
            elif mode == "sentinel":
                try:
                    sentinel_url(url)
                except ValueError as exc:
                    self.problem(where, f"{exc}, got {shown!r}")
        if "key_prefix" in values and not _KEY_PREFIX.fullmatch(values["key_prefix"]):
            self.problem(
                "cluster.key_prefix",
                "must be 1 to 64 letters, digits or _ . : -, got " + repr(values["key_prefix"]),
            )
        if "timeout" in values:
            values["timeout"] = self.seconds(values["timeout"], "cluster.timeout")
        if "instance_id" in values:
            self.name(values["instance_id"], "cluster.instance_id")
        if not checks.background_enabled:
            self.problem(
                "cluster",
                "instances share their background checks: set [checks] interval > 0, "
                "or remove [cluster]",
            )
        if len(self.problems) > before or url is None or values.get("timeout", 1.0) is None:
            return None
        return ClusterConfig(redis_url=Secret(url), **values)

    def webhook_token(self, table: Mapping[str, Any]) -> Secret | None:
        found = self.literal_or_env(
            table, "token", "webhook", noun="token", otherwise=", or remove token_env"
        )
        if found is None:
            return None
        value, path, _ = found
        if not TOKEN_CHARS.fullmatch(value):
            self.problem(
                path,
                f"the token must be visible ASCII characters with no spaces "
                f"(got {len(value)} characters)",
            )
            return None
        return Secret(value)

    def models(self, data: Mapping[str, Any]) -> tuple[ModelConfig, ...]:
        models = data.get("models")
        if models is None:
            self.problem("models", "no models configured; add at least one [[models]] table")
            return ()
        if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
            self.problem("models", "must be an array of tables: [[models]]")
            return ()
        if not models:
            self.problem("models", "no models configured; add at least one [[models]] table")
        seen: set[str] = set()
        result = []
        for i, model in enumerate(models):
            path = f"models[{i}]"
            self.unknown_keys(model, {"name", "providers", "tags"}, path)
            name = model.get("name")
            if not isinstance(name, str) or not name.strip():
                self.problem(f"{path}.name", "required: a non-empty string, e.g. name = \"gpt-4\"")
                continue
            name_ok = self.name(name, f"{path}.name")
            path = f"models[{i}] ({label(name)})"
            if name in seen:
                self.problem(f"{path}.name", f"duplicate model name {name!r}")
            seen.add(name)
            tags = self.tags(model, path)
            providers = self.providers(model, name, path)
            if tags is not None and name_ok:
                result.append(ModelConfig(name, providers, tags))
        return tuple(result)

    def providers(
        self, model: Mapping[str, Any], model_name: str, path: str
    ) -> tuple[ProviderConfig, ...]:
        providers = model.get("providers")
        if not isinstance(providers, list) or not providers:
            self.problem(f"{path}.providers", "add at least one [[models.providers]] table")
            return ()
        seen: set[str] = set()
        result = []
        for j, table in enumerate(providers):
            ppath = f"{path}.providers[{j}]"
            if not isinstance(table, dict):
                self.problem(ppath, "must be a table: [[models.providers]]")
                continue
            provider = self.provider(table, model_name, ppath)
            if provider is None:
                continue
            if provider.name in seen:
                self.problem(
                    f"{ppath}.name",
                    f"duplicate provider name {provider.name!r} in model {model_name!r}; "
                    "names must be unique within a model",
                )
                continue
            seen.add(provider.name)
            result.append(provider)
        return tuple(result)

    def provider(
        self, table: Mapping[str, Any], model_name: str, path: str
    ) -> ProviderConfig | None:
        self.unknown_keys(table, _PROVIDER_KEYS, path)
        before = len(self.problems)
        non_strings = {
            "timeout", "verify_model", "min_interval", "max_concurrent", "tags", *SCHEDULE_KEYS,
            "reasoning", "max_tokens", "headers", "headers_env", "expect_status",
            "allow_image_probe",
        }
        for key in _PROVIDER_KEYS - non_strings:
            if key in table:
                self.typed(table, key, str, path)
        tags = self.tags(table, path)
        schedule = self.schedule(table, path)
        if "timeout" in table and self.typed(table, "timeout", (int, float), path) is not None:
            self.seconds(table["timeout"], f"{path}.timeout")
        if (
            "min_interval" in table
            and self.typed(table, "min_interval", (int, float), path) is not None
        ):
            self.seconds(table["min_interval"], f"{path}.min_interval", zero_ok=True)
        if (
            "max_concurrent" in table
            and self.typed(table, "max_concurrent", int, path) is not None
            and table["max_concurrent"] < 1
        ):
            self.problem(
                f"{path}.max_concurrent",
                f"must be at least 1 (leave it out for no cap), got {table['max_concurrent']}",
            )
        if "verify_model" in table:
            self.typed(table, "verify_model", bool, path)
        for key in ("name", "model", "probe_model", *_PROVIDER_OPTION_KEYS):
            if isinstance(table.get(key), str):
                self.name(table[key], f"{path}.{key}")
        if len(self.problems) > before or tags is None or schedule is None:
            return None

        name = table.get("name")
        kind = table.get("type")
        if not name:
            self.problem(f"{path}.name", "required: the provider's name, unique within the model")
        if not kind:
            self.problem(
                f"{path}.type", f"required: one of {', '.join(ADAPTER_TYPES)}"
            )
            return None
        if kind not in ADAPTER_TYPES:
            close = difflib.get_close_matches(kind, list(ADAPTER_TYPES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.problem(
                f"{path}.type",
                f"unknown provider type {kind!r}{hint}; expected one of {', '.join(ADAPTER_TYPES)}",
            )
            return None
        if not name:
            return None
        adapter_cls = ADAPTER_TYPES[kind]
        for key, kinds in _PROVIDER_OPTION_KEYS.items():
            if key in table and kind not in kinds:
                self.problem(f"{path}.{key}", f"only applies to type {' or '.join(sorted(kinds))}")
        upstream_model = table.get("model") or model_name
        if name_problem(upstream_model) is not None:
            return None  # the model's name: reported where it is written
        if kind == "unsupported":
            return self.unsupported(table, name, upstream_model, tags, schedule, path)

        base_url = table.get("base_url") or adapter_cls.default_base_url
        if not base_url:
            self.problem(f"{path}.base_url", f"required for type {kind!r} (no public default)")
            return None
        if self.base_url(base_url, f"{path}.base_url", what="probe a model server") is None:
            return None

        probe = table.get("probe", "models")
        if probe not in PROBES:
            self.problem(f"{path}.probe", f"must be one of {', '.join(PROBES)}, got {probe!r}")
            return None
        fallback = table.get("passive_fallback", "models")
        if "passive_fallback" in table and probe != "passive":
            self.problem(
                f"{path}.passive_fallback", 'only applies with probe = "passive"'
            )
            return None
        if fallback not in ACTIVE_PROBES:
            self.problem(
                f"{path}.passive_fallback",
                f"must be one of {', '.join(ACTIVE_PROBES)} (the probe sent while the router "
                f"reports no traffic), got {fallback!r}",
            )
            return None

        api_key = self.api_key(table, kind, adapter_cls.key_required, path)
        options = {k: table[k] for k in _PROVIDER_OPTION_KEYS if k in table}
        before = len(self.problems)
        probing = self.probe_keys(table, kind, adapter_cls, probe, fallback, upstream_model, path)
        if len(self.problems) > before:
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
            verify_model=table.get("verify_model", kind != "azure" and upstream_model != WILDCARD),
            options=options,
            min_interval=float(table["min_interval"]) if "min_interval" in table else None,
            max_concurrent=table.get("max_concurrent"),
            tags=tags,
            schedule=schedule,
            **probing,
        )

    def unsupported(
        self,
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
        before = len(self.problems)
        reason = table.get("reason")
        if reason is None:
            self.problem(
                f"{path}.reason",
                'required for type "unsupported": one line saying why it cannot be checked, '
                'e.g. reason = "no adapter for the provider prefix \'foo/\'"',
            )
        elif not reason.strip():
            self.problem(f"{path}.reason", "is empty: say why this deployment cannot be checked")
        for key in _PROBE_KEYS:
            if key in table:
                self.problem(
                    f"{path}.{key}",
                    'does not apply to type "unsupported" (it is never probed); remove it',
                )
        base_url = table.get("base_url", "")
        if base_url and (problem := url_problem(base_url)):
            self.problem(f"{path}.base_url", f"{problem}, got {display_url(base_url)!r}")
        if len(self.problems) > before:
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

    def probe_keys(
        self,
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
            self.problem(
                f"{path}.mode", f"unknown mode {mode!r}{hint}; expected one of {', '.join(MODES)}"
            )
        elif mode not in adapter_cls.modes:
            served = ", ".join(m for m in MODES if m in adapter_cls.modes)
            self.problem(
                f"{path}.mode",
                f"type {kind!r} cannot probe mode {mode!r}; its modes: {served} "
                '(a server that serves it in OpenAI\'s format: type = "openai-compatible")',
            )
        values: dict[str, Any] = {"mode": mode}
        for key in ("reasoning", "allow_image_probe"):
            if key in table and self.typed(table, key, bool, path) is not None:
                values[key] = table[key]
        if "max_tokens" in table and self.typed(table, "max_tokens", int, path) is not None:
            tokens = table["max_tokens"]
            if not 1 <= tokens <= _MAX_PROBE_TOKENS:
                self.problem(
                    f"{path}.max_tokens",
                    f"must be 1 to {_MAX_PROBE_TOKENS} (the paid probe's answer budget), "
                    f"got {tokens}",
                )
            values["max_tokens"] = tokens
        for key in ("max_tokens", "reasoning"):
            if key in table and mode in MODES and mode not in _BUDGET_MODES:
                self.problem(
                    f"{path}.{key}",
                    f"only applies to modes {', '.join(_BUDGET_MODES)} "
                    f"(a {mode} probe has no answer budget); remove it",
                )
        if "probe_model" in table:
            probe_model = table["probe_model"]
            if not probe_model.strip() or probe_model == WILDCARD:
                self.problem(
                    f"{path}.probe_model",
                    "must name one model the paid probe calls, e.g. probe_model = \"gpt-4o-mini\"",
                )
            values["probe_model"] = probe_model
        if "probe_path" in table:
            values["probe_path"] = self.probe_path(table["probe_path"], active, path)
        if "expect_status" in table:
            values["expect_status"] = self.expect_status(
                table["expect_status"], "probe_path" in table, path
            )
        headers, headers_env = self.probe_headers(table, path)
        values.update(headers=headers, headers_env=headers_env)
        if mode == "image_generation" and active == "completion" and not table.get("allow_image_probe"):
            self.problem(
                f"{path}.probe",
                'a paid probe of mode "image_generation" generates (and bills) an image on '
                "every check: set allow_image_probe = true to accept that, or use the free "
                'probe (probe = "models")',
            )
        if table.get("allow_image_probe") is True and mode != "image_generation":
            self.problem(f"{path}.allow_image_probe", 'only applies with mode = "image_generation"')
        if model == WILDCARD:
            self.wildcard(table, kind, adapter_cls, probe, path)
        elif not adapter_cls.lists_models and active == "models" and "probe_path" not in table:
            self.problem(
                f"{path}.probe",
                f"type {kind!r} has no models list to probe for free: set probe_path = "
                '"/..." (a health URL it serves, relative to the base URL\'s host) or '
                'probe = "completion" (a real call: a few tokens)',
            )
        return values

    def wildcard(
        self, table: Mapping[str, Any], kind: str, adapter_cls: type[HttpAdapter], probe: str, path: str
    ) -> None:
        """``model = "*"``: the list probe, reporting whatever the provider serves."""
        if probe != "models":
            self.problem(
                f"{path}.probe",
                'model = "*" is checked with the free list probe, which reports the models the '
                'provider serves: remove probe (or name one model)',
            )
        if not adapter_cls.lists_models:
            self.problem(
                f"{path}.model",
                f'type {kind!r} has no models list, so model = "*" cannot report what it '
                "serves: name one model",
            )
        if "probe_path" in table:
            self.problem(
                f"{path}.probe_path",
                'model = "*" reports the models the list probe sees, and probe_path replaces '
                "that probe: remove one",
            )
        if table.get("verify_model") is True:
            self.problem(
                f"{path}.verify_model",
                'model = "*" has no one model to look for: remove verify_model',
            )

    def probe_path(self, value: str, active: str, path: str) -> str:
        where = f"{path}.probe_path"
        if not value.startswith("/") or value.startswith("//"):
            self.problem(
                where,
                f"must be a path starting with one '/', relative to the base URL's host, "
                f'e.g. probe_path = "/health"; got {value!r}',
            )
        elif any(c.isspace() for c in value) or "#" in value or not value.isascii():
            self.problem(where, f"must be ASCII with no spaces or '#', got {value!r}")
        if active == "completion":
            self.problem(
                where,
                'replaces the free probe, and this entry sends the paid one (probe = '
                '"completion"): remove probe_path, or the probe key',
            )
        return value

    def expect_status(self, value: Any, custom_path: bool, path: str) -> tuple[int, ...]:
        where = f"{path}.expect_status"
        statuses = value if isinstance(value, list) else [value]
        if not statuses or not all(
            isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in statuses
        ):
            self.problem(
                where,
                f"must be an HTTP status (100 to 599) or a non-empty list of them, "
                f"e.g. expect_status = [200, 204]; got {value!r}",
            )
            return ()
        if not custom_path and not all(200 <= s < 300 for s in statuses):
            self.problem(
                where,
                "the list and paid probes are judged by their body too, so only 2xx statuses "
                "can be healthy; for a health URL that answers otherwise, set probe_path",
            )
        return tuple(sorted(set(statuses)))

    def probe_headers(
        self, table: Mapping[str, Any], path: str
    ) -> tuple[dict[str, Secret], dict[str, str]]:
        """``headers`` (literal values) and ``headers_env`` (names of variables holding them).

        Values are secrets: no message ever shows one.
        """
        headers: dict[str, Secret] = {}
        names: dict[str, str] = {}
        for key in ("headers", "headers_env"):
            given = table.get(key, {})
            if not isinstance(given, dict):
                self.problem(
                    f"{path}.{key}",
                    f"must be a table of header name = {'value' if key == 'headers' else 'ENV_VAR_NAME'}, "
                    f'e.g. {key} = {{ "X-Tenant" = "{"..." if key == "headers" else "TENANT_ID"}" }}; '
                    f"got a {type(given).__name__}",
                )
                continue
            for header, raw in given.items():
                where = f"{path}.{key}.{label(header)}"
                if not _HEADER_NAME.fullmatch(header):
                    self.problem(where, "is not a header name (letters, digits and - only)")
                    continue
                if header.lower() in _RESERVED_HEADERS:
                    self.problem(where, "is written by the probe itself; remove it")
                    continue
                if any(h.lower() == header.lower() for h in headers):
                    self.problem(where, "is set twice (in headers and headers_env); keep one")
                    continue
                if not isinstance(raw, str):
                    self.problem(where, f"must be a string, got a {type(raw).__name__}")
                    continue
                if key == "headers_env":
                    found = self.header_from_env(raw, where)
                    if found is None:
                        continue
                    names[header], value, what = raw, found, f"the value in {raw}"
                else:
                    value, what = raw, "the value"
                if not _HEADER_VALUE.fullmatch(value):
                    self.problem(
                        where,
                        f"{what} must be visible ASCII (inner spaces allowed), with no "
                        "newline or control character (value not shown)",
                    )
                    continue
                headers[header] = Secret(value)
        return headers, names

    def header_from_env(self, env_name: str, where: str) -> str | None:
        """The value of the variable ``env_name`` (reported when not a name, or unset)."""
        if not ENV_NAME.fullmatch(env_name):
            self.problem(
                where,
                "is not an environment variable name (letters, digits, _); it looks like the "
                "value was pasted here — put it in the environment and its name here",
            )
            return None
        value = self.env.get(env_name)
        if not value:
            shown = "(name not shown: it looks like a secret)" if _looks_like_a_secret(env_name) else env_name
            self.problem(
                where,
                f"environment variable {shown} is not set (or empty); export it before "
                "starting, or remove this header",
            )
            return None
        return value

    def provider_policies(
        self, checks: ChecksConfig, models: tuple[ModelConfig, ...]
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
                    self.problem(
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

    def api_key(
        self, table: Mapping[str, Any], kind: str, required: bool, path: str
    ) -> Secret | None:
        # An empty key means none (a keyless provider), as it always has.
        table = {k: v for k, v in table.items() if not (k in ("api_key", "api_key_env") and v == "")}
        found = self.literal_or_env(table, "api_key", path, noun="key")
        if found is not None:
            value, where, what = found
            return self.key_value(value.strip(), where, what)
        if required and "api_key" not in table and "api_key_env" not in table:
            self.problem(
                path,
                f"type {kind!r} needs a key: set api_key_env = \"NAME_OF_ENV_VAR\" (preferred) "
                "or api_key",
            )
        return None

    def key_value(self, value: str, path: str, what: str) -> Secret | None:
        # A stray newline (a CRLF .env file, a secret file) would otherwise
        # fail every probe with an error that could quote the key.
        if not TOKEN_CHARS.fullmatch(value):
            self.problem(path, f"{what} has spaces or control characters inside it (value not shown)")
            return None
        return Secret(value)

    def base_url(self, value: str, path: str, *, what: str) -> str | None:
        problem = url_problem(value)
        if problem:
            self.problem(path, f"{problem}, got {display_url(value)!r}")
            return None
        return value if self.target(value, path, what=what) else None

    def target(self, url: str, path: str, *, what: str) -> bool:
        """False (reported) when ``url`` is a metadata or link-local address not allowed."""
        problem = None if self.allow_link_local else forbidden_target(url)
        if problem is None:
            return True
        self.problem(
            path,
            f"{problem}, got {display_url(url)!r}; refused because a metadata service hands "
            f"the machine's cloud credentials to whoever asks: {what} at its real address, "
            "or set [checks] allow_link_local = true if one really listens there",
        )
        return False

    def name(self, value: str, path: str) -> bool:
        """False (reported) when ``value`` has control, format or bidi characters."""
        problem = name_problem(value)
        if problem is None:
            return True
        self.problem(path, problem)
        return False


def parse_config(
    data: Mapping[str, Any], *, source: str = "<config>", env: Mapping[str, str] | None = None
) -> Config:
    """Validate an already-parsed TOML document. Raises :class:`ConfigError`."""
    validator = _Validator(source, os.environ if env is None else env)
    validator.unknown_keys(data, _TOP_KEYS, "")
    checks = validator.checks(data)
    server = validator.server(data)
    models = validator.models(data)
    checks = validator.provider_policies(checks, models)
    webhook = validator.webhook(data, checks)
    cluster = validator.cluster(data, checks)
    if validator.problems:
        raise ConfigError(source, validator.problems)
    return Config(
        checks=checks,
        models=models,
        server=server,
        source=source,
        webhook=webhook,
        cluster=cluster,
    )


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a TOML config file. Raises :class:`ConfigError`."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, ["file not found"]) from None
    except OSError as exc:
        raise ConfigError(source, [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(source, ["not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"invalid TOML: {exc}"]) from None
    return parse_config(data, source=source, env=env)

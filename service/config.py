"""TOML -> typed, validated configuration.

Every problem is reported with the file, the key path and what to do, all of
them at once (fixing a config one error per run is miserable), as a single
:class:`ConfigError` whose message is ready to print; never a traceback.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from adapters import ADAPTER_TYPES
from adapters.base import DEFAULT_MAX_BODY_BYTES, Secret

from .checker import CheckerSettings
from .numbers import finite

if TYPE_CHECKING:  # these import the state, which imports this module
    from .cluster import ClusterConfig
    from .webhook import WebhookConfig

__all__ = [
    "MAX_TAGS",
    "SCHEDULE_KEYS",
    "TAG_PATTERN",
    "CheckSchedule",
    "ChecksConfig",
    "Config",
    "ConfigError",
    "ModelConfig",
    "ProviderConfig",
    "ServerConfig",
    "dump_toml",
    "load_config",
    "parse_config",
    "tag_problem",
]

PROBES = ("models", "completion", "passive")
#: The probes a passive adapter falls back to while the router sends it no traffic.
ACTIVE_PROBES = ("models", "completion")
#: Failure kinds ``transient`` may name: they make an adapter degraded, not unhealthy.
TRANSIENT_KINDS: Final = ("rate_limited", "timeout")

#: A tag: letters, digits and ``_ . : -`` (Kubernetes-label-like), non-empty.
TAG_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:-]+")
#: At most this many tags on one model or provider entry (and in one filter).
MAX_TAGS: Final = 32
TAG_ACCEPTED: Final = (
    f"a list of at most {MAX_TAGS} distinct non-empty strings of letters, digits and _ . : -, "
    'e.g. ["prod", "eu"]'
)


def tag_problem(tag: object) -> str | None:
    """Why ``tag`` is not a valid tag, or None when it is (config and filters share it)."""
    if not isinstance(tag, str):
        return f"a tag must be a string, got {type(tag).__name__}"
    if not TAG_PATTERN.fullmatch(tag):
        shown = tag if len(tag) <= 40 else tag[:40] + "..."
        return f"{shown!r} is not a valid tag (letters, digits and _ . : - only, non-empty)"
    return None


class ConfigError(ValueError):
    """An invalid configuration; ``str()`` is the user-facing message."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {p}" for p in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True, slots=True)
class CheckSchedule:
    """One adapter's background-check policy (``[checks]`` keys, a provider may override).

    ``interval`` 0 means no background checks for that adapter.
    """

    interval: float = 0.0
    jitter: float = 0.1  # fraction of the delay, drawn uniformly in [-jitter, +jitter]
    unhealthy_interval: float | None = None  # None: ``interval``
    healthy_threshold: int = 1
    unhealthy_threshold: int = 1
    max_age: float | None = None  # None: 2 x ``interval``
    # Past max_age, a result is still served (marked stale) for this many more
    # seconds while a refresh runs; None: as long as max_age; 0: never.
    stale_while_revalidate: float | None = None
    # Failure kinds (TRANSIENT_KINDS) that make the adapter degraded instead of
    # unhealthy, until ``transient_limit`` of them in a row (0 = never escalate).
    transient: tuple[str, ...] = ()
    transient_limit: int = 3
    # Latency SLO: degraded while the ``slo_percentile`` of the last
    # ``slo_window`` answered probes is above ``latency_slo_ms`` (None = no SLO).
    latency_slo_ms: float | None = None
    slo_percentile: float = 95.0
    slo_window: int = 20
    # Passive adapters (probe = "passive"): how far back reported traffic
    # counts, and the share of failed requests above which it is unhealthy.
    passive_window: float = 60.0
    passive_error_rate: float = 0.5

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    @property
    def stale_for(self) -> float:
        """Seconds past ``served_max_age`` a result is still served, marked stale."""
        if not self.enabled:
            return 0.0
        if self.stale_while_revalidate is None:
            return self.served_max_age
        return self.stale_while_revalidate

    @property
    def fast_interval(self) -> float:
        """The interval while the adapter is down or changing state."""
        return self.interval if self.unhealthy_interval is None else self.unhealthy_interval

    @property
    def served_max_age(self) -> float:
        """How old a background result may be and still be served (0 when off)."""
        if not self.enabled:
            return 0.0
        return 2 * self.interval if self.max_age is None else self.max_age


#: The schedule keys, valid in ``[checks]`` and in a provider entry (an override).
SCHEDULE_KEYS: Final = (
    "interval",
    "jitter",
    "unhealthy_interval",
    "healthy_threshold",
    "unhealthy_threshold",
    "max_age",
    "stale_while_revalidate",
    "transient",
    "transient_limit",
    "latency_slo_ms",
    "slo_percentile",
    "slo_window",
    "passive_window",
    "passive_error_rate",
)


@dataclass(frozen=True, slots=True)
class ChecksConfig:
    """``[checks]``: the budgets and strategy switches (defaults are the seed's)."""

    timeout: float = 30.0
    model_timeout: float = 10.0
    adapter_timeout: float = 8.0
    use_concurrent: bool = True
    fallback_sequential: bool = True
    recheck_timeouts: bool = True
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    sync_threads: int = 16  # worker threads for user-registered blocking adapters
    # Serve an adapter's last verdict while younger than this many seconds
    # instead of probing again (0 = off); providers may override it.
    min_interval: float = 0.0
    # Probes in flight at once, across all requests (0 = unlimited).
    max_concurrent_probes: int = 0
    # Per-provider limits that shrink on 429/503/timeouts and grow back
    # (service.limits); a provider's ``max_concurrent`` is its ceiling, else
    # ``adaptive_ceiling``.
    adaptive_concurrency: bool = False
    adaptive_ceiling: int = 32
    # Filled by parse_config from the provider entries (not [checks] keys):
    # provider name -> its ``max_concurrent``, and (model, provider) -> its
    # ``min_interval`` override.
    provider_max_concurrent: Mapping[str, int] = field(default_factory=dict)
    adapter_min_interval: Mapping[tuple[str, str], float] = field(default_factory=dict)
    # Background checks (see service.background): the [checks] schedule, and
    # (model, provider) -> that entry's overrides of it.
    schedule: CheckSchedule = field(default_factory=CheckSchedule)
    adapter_schedule: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)

    def schedule_for(self, model: str, provider: str) -> CheckSchedule:
        """An adapter's schedule: ``[checks]``, with its provider entry's overrides."""
        overrides = self.adapter_schedule.get((model, provider))
        return dataclasses.replace(self.schedule, **overrides) if overrides else self.schedule

    @property
    def background_enabled(self) -> bool:
        """Whether any adapter is checked in the background."""
        return self.schedule.enabled or any(
            self.schedule_for(m, p).enabled for m, p in self.adapter_schedule
        )

    def checker_settings(self) -> CheckerSettings:
        return CheckerSettings(
            timeout=self.timeout,
            model_timeout=self.model_timeout,
            adapter_timeout=self.adapter_timeout,
            fallback_sequential=self.fallback_sequential,
            recheck_timeouts=self.recheck_timeouts,
            min_interval=self.min_interval,
            adapter_min_interval=dict(self.adapter_min_interval),
            max_concurrent_probes=self.max_concurrent_probes,
            provider_max_concurrent=dict(self.provider_max_concurrent),
            adaptive_concurrency=self.adaptive_concurrency,
            adaptive_ceiling=self.adaptive_ceiling,
            transient=frozenset(self.schedule.transient),
            adapter_transient={
                key: frozenset(self.schedule_for(*key).transient) for key in self.adapter_schedule
            },
        )


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """``[server]``: where ``router-health serve`` listens, request limits and auth.

    ``auth_token`` (read from the environment variable named by
    ``auth_token_env``, or given literally) turns on bearer-token auth for
    the detailed and expensive answers: see :mod:`service.auth`.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    max_timeout: float = 120.0  # the largest ?timeout= a request may ask for
    shutdown_grace: float = 10.0  # seconds in-flight requests get on SIGTERM
    # Seconds an idle client connection is kept open. It also bounds how long
    # the server holds the socket of a client that hung up mid-request.
    keep_alive_timeout: float = 5.0
    auth_token: Secret | None = field(default=None, repr=False)
    auth_token_env: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One ``[[models.providers]]`` entry: one adapter."""

    name: str
    type: str
    base_url: str
    model: str
    api_key: Secret | None = field(default=None, repr=False)
    api_key_env: str | None = None
    probe: str = "models"  # or "completion", or "passive" (see ``active_probe``)
    passive_fallback: str = "models"  # the probe a passive entry sends while idle
    timeout: float | None = None
    verify_model: bool = True
    options: Mapping[str, str] = field(default_factory=dict)  # deployment, api_version, ...
    min_interval: float | None = None  # overrides [checks] min_interval for this entry
    max_concurrent: int | None = None  # cap on this provider name's probes in flight
    # This entry's own tags; its effective tags add its model's (see effective_tags).
    tags: tuple[str, ...] = ()
    # Background-check keys this entry overrides (see CheckSchedule).
    schedule: Mapping[str, Any] = field(default_factory=dict)

    @property
    def passive(self) -> bool:
        return self.probe == "passive"

    @property
    def active_probe(self) -> str:
        """The request this entry's adapter sends when it does probe."""
        return self.passive_fallback if self.passive else self.probe


@dataclass(frozen=True, slots=True)
class ModelConfig:
    name: str
    providers: tuple[ProviderConfig, ...]
    tags: tuple[str, ...] = ()

    def effective_tags(self, provider: ProviderConfig) -> tuple[str, ...]:
        """A provider's tags: this model's, then the provider's own (each once)."""
        return tuple(dict.fromkeys((*self.tags, *provider.tags)))


@dataclass(frozen=True, slots=True)
class Config:
    checks: ChecksConfig
    models: tuple[ModelConfig, ...]
    server: ServerConfig = field(default_factory=ServerConfig)
    source: str = "<config>"
    webhook: WebhookConfig | None = None  # [webhook]: POST status transitions
    cluster: ClusterConfig | None = None  # [cluster]: share checks with other instances

    def model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)


# -- validation ---------------------------------------------------------------

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
    "auth_token": str,
    "auth_token_env": str,
}
#: Keys whose values are secrets: a message about them never shows the value.
_SECRET_KEYS = frozenset({"api_key", "auth_token", "token", "url", "redis_url"})
#: A bearer token: long enough not to be guessed, and sendable in a header.
_MIN_TOKEN_CHARS = 16
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
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
    # provider-specific
    "deployment",
    "api_version",
    "anthropic_version",
}
_PROVIDER_OPTION_KEYS = {
    "deployment": {"azure"},
    "api_version": {"azure"},
    "anthropic_version": {"anthropic"},
}
_TOP_KEYS = {"checks", "server", "models", "webhook", "cluster"}
_CLUSTER_KEYS: dict[str, type | tuple[type, ...]] = {
    "redis_url": str,
    "redis_url_env": str,
    "mode": str,
    "key_prefix": str,
    "timeout": (int, float),
    "instance_id": str,
}
#: Results kept per adapter (service.state.HISTORY_LENGTH; not imported: it imports us).
_HISTORY_KEPT: Final = 50
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


class _Validator:
    def __init__(self, source: str, env: Mapping[str, str]) -> None:
        self.source = source
        self.env = env
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def unknown_keys(self, table: Mapping[str, Any], allowed: set[str], path: str) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else (
                    f"; allowed: {', '.join(sorted(allowed))}"
                )
                self.problem(f"{path}.{key}" if path else key, f"unknown key{hint}")

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
        if not finite(value) or value < 0 or (value == 0 and not zero_ok):
            rule = ">= 0 (0 = off)" if zero_ok else "> 0"
            self.problem(path, f"must be a finite number of seconds {rule}, got {value!r}")
            return None
        return float(value)

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
                if key == "slo_window" and value > _HISTORY_KEPT:
                    self.problem(
                        where,
                        f"must be at most {_HISTORY_KEPT} (the results kept per adapter), got {value}",
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
        ):
            if key in values and values[key] < low:
                self.problem(f"checks.{key}", f"must be at least {low}{note}, got {values[key]}")
                del values[key]
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
        values.pop("auth_token", None)
        values["auth_token"] = self.auth_token(data.get("server", {}))
        return ServerConfig(**values)

    def auth_token(self, table: Any) -> Secret | None:
        """``[server] auth_token_env`` / ``auth_token``: the same rules as a provider's key."""
        if not isinstance(table, dict):
            return None
        literal = table.get("auth_token")
        env_name = table.get("auth_token_env")
        if not isinstance(literal, str | None) or not isinstance(env_name, str | None):
            return None  # already reported as a type problem
        if literal is not None and env_name is not None:
            self.problem("server", "set auth_token_env or auth_token, not both")
            return None
        if env_name is not None:
            path = "server.auth_token_env"
            value = self.env.get(env_name)
            if not value:
                self.problem(
                    path,
                    f"environment variable {env_name} is not set (or empty); "
                    f"export {env_name}=... before starting, or remove auth_token_env "
                    "to serve without auth",
                )
                return None
            where = f"the token in {env_name}"
        elif literal is not None:
            path, value, where = "server.auth_token", literal, "the token"
        else:
            return None
        if len(value) < _MIN_TOKEN_CHARS or not _TOKEN_CHARS.fullmatch(value):
            self.problem(
                path,
                f"{where} must be at least {_MIN_TOKEN_CHARS} visible ASCII characters "
                f"with no spaces (got {len(value)} characters); {_TOKEN_HINT}",
            )
            return None
        return Secret(value)

    def webhook(self, data: Mapping[str, Any], checks: ChecksConfig) -> WebhookConfig | None:
        """``[webhook]``: where status transitions are POSTed (needs background checks)."""
        from .webhook import WebhookConfig, webhook_problems

        if "webhook" not in data:
            return None
        values = self.section(data, "webhook", _WEBHOOK_KEYS)
        table = data["webhook"]
        if not isinstance(table, dict):
            return None
        before = len(self.problems)
        if "url" not in table:
            self.problem("webhook.url", 'required: where to POST, e.g. url = "https://alerts.example/hook"')
        token = self.webhook_token(values)
        options = {k: v for k, v in values.items() if k not in ("token", "token_env")}
        if "url" in values:
            for key, message in webhook_problems(**options).items():
                self.problem(f"webhook.{key}", message)
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
        from .cluster import (
            CLUSTER_MODES,
            MODE_SCHEMES,
            ClusterConfig,
            display_redis_url,
            sentinel_url,
        )

        if "cluster" not in data:
            return None
        values = self.section(data, "cluster", _CLUSTER_KEYS)
        if not isinstance(data["cluster"], dict):
            return None
        before = len(self.problems)
        literal, env_name = values.pop("redis_url", None), values.pop("redis_url_env", None)
        url: str | None = None
        if literal is not None and env_name is not None:
            self.problem("cluster", "set redis_url_env or redis_url, not both")
        elif env_name is not None:
            url = self.env.get(env_name)
            if not url:
                self.problem(
                    "cluster.redis_url_env",
                    f"environment variable {env_name} is not set (or empty); "
                    f"export {env_name}=redis://... before starting, or remove [cluster]",
                )
        elif literal is not None:
            url = literal
        else:
            self.problem(
                "cluster.redis_url",
                'required: the shared Redis, e.g. redis_url = "redis://redis:6379/0" '
                "(or redis_url_env naming a variable that holds it)",
            )
        where = "cluster.redis_url_env" if env_name is not None else "cluster.redis_url"
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
        if not checks.background_enabled:
            self.problem(
                "cluster",
                "instances share their background checks: set [checks] interval > 0, "
                "or remove [cluster]",
            )
        if len(self.problems) > before or url is None or values.get("timeout", 1.0) is None:
            return None
        return ClusterConfig(redis_url=Secret(url), **values)

    def webhook_token(self, values: Mapping[str, Any]) -> Secret | None:
        literal, env_name = values.get("token"), values.get("token_env")
        if literal is not None and env_name is not None:
            self.problem("webhook", "set token_env or token, not both")
            return None
        if env_name is not None:
            path, value = "webhook.token_env", self.env.get(env_name)
            if not value:
                self.problem(
                    path,
                    f"environment variable {env_name} is not set (or empty); "
                    f"export {env_name}=... before starting, or remove token_env",
                )
                return None
        elif literal is not None:
            path, value = "webhook.token", literal
        else:
            return None
        if not _TOKEN_CHARS.fullmatch(value):
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
            path = f"models[{i}] ({name})"
            if name in seen:
                self.problem(f"{path}.name", f"duplicate model name {name!r}")
            seen.add(name)
            tags = self.tags(model, path)
            providers = self.providers(model, name, path)
            if tags is not None:
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
            "timeout", "verify_model", "min_interval", "max_concurrent", "tags", *SCHEDULE_KEYS
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

        base_url = table.get("base_url") or adapter_cls.default_base_url
        if not base_url:
            self.problem(f"{path}.base_url", f"required for type {kind!r} (no public default)")
            return None
        if self.base_url(base_url, f"{path}.base_url") is None:
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

        for key, kinds in _PROVIDER_OPTION_KEYS.items():
            if key in table and kind not in kinds:
                self.problem(f"{path}.{key}", f"only applies to type {' or '.join(sorted(kinds))}")

        api_key = self.api_key(table, kind, adapter_cls.key_required, path)
        options = {k: table[k] for k in _PROVIDER_OPTION_KEYS if k in table}
        return ProviderConfig(
            name=name,
            type=kind,
            base_url=base_url,
            model=table.get("model") or model_name,
            api_key=api_key,
            api_key_env=table.get("api_key_env"),
            probe=probe,
            passive_fallback=fallback,
            timeout=float(table["timeout"]) if "timeout" in table else None,
            # Azure's list names base models, not deployments: nothing to match.
            verify_model=table.get("verify_model", kind != "azure"),
            options=options,
            min_interval=float(table["min_interval"]) if "min_interval" in table else None,
            max_concurrent=table.get("max_concurrent"),
            tags=tags,
            schedule=schedule,
        )

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
        literal = table.get("api_key")
        env_name = table.get("api_key_env")
        if literal and env_name:
            self.problem(path, "set api_key_env or api_key, not both")
            return None
        if env_name:
            if not _ENV_NAME.fullmatch(env_name):
                # Never echo it: the usual mistake is pasting the key itself here.
                self.problem(
                    f"{path}.api_key_env",
                    "is not an environment variable name (letters, digits, _); it looks like "
                    "a key was pasted here — put the key in the environment and its name here",
                )
                return None
            value = self.env.get(env_name)
            if not value:
                self.problem(
                    f"{path}.api_key_env",
                    f"environment variable {env_name} is not set (or empty); "
                    f"export {env_name}=... before starting",
                )
                return None
            return self.key_value(value.strip(), f"{path}.api_key_env", f"the key in {env_name}")
        if literal:
            return self.key_value(literal.strip(), f"{path}.api_key", "the key")
        if required:
            self.problem(
                path,
                f"type {kind!r} needs a key: set api_key_env = \"NAME_OF_ENV_VAR\" (preferred) "
                "or api_key",
            )
        return None


    def key_value(self, value: str, path: str, what: str) -> Secret | None:
        # A stray newline (a CRLF .env file, a secret file) would otherwise
        # fail every probe with an error that could quote the key.
        if not _TOKEN_CHARS.fullmatch(value):
            self.problem(path, f"{what} has spaces or control characters inside it (value not shown)")
            return None
        return Secret(value)

    def base_url(self, value: str, path: str) -> str | None:
        problem = _url_problem(value)
        if problem:
            self.problem(path, f"{problem}, got {value!r}")
            return None
        return value


def _url_problem(url: str) -> str | None:
    if not url.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a port out of range
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if not parts.hostname:
        return "has no host name"
    if parts.query or parts.fragment:
        return "must not have a query or fragment (keys go in api_key_env, never in the URL)"
    return None


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

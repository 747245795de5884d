"""The ``[checks]``, ``[server]``, ``[webhook]``, ``[cluster]`` and ``[storage]`` tables -> their settings."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from adapters.base import Secret

from .checks import (
    SCHEDULE_KEYS,
    WORKERS_PER_CPU,
    CheckSchedule,
    ChecksConfig,
    available_cpus,
    max_workers,
)
from .cluster import (
    CLUSTER_MODES,
    COREDIS_MISSING,
    MODE_SCHEMES,
    ClusterConfig,
    coredis_available,
    display_redis_url,
    sentinel_url,
)
from .parse_validator import KeyTypes, Validator
from .server import (
    DEFAULT_MAX_STREAMS,
    MAX_OBSERVATIONS_PER_REQUEST,
    MIN_CONNECTIONS,
    MIN_NON_STREAM_CONNECTIONS,
    ServerConfig,
    stream_room,
)
from .storage import StorageConfig, storage_problems
from .values import TOKEN_CHARS, finite
from .webhook import WebhookConfig, webhook_problems

__all__ = ["parse_checks", "parse_cluster", "parse_server", "parse_storage", "parse_webhook"]

_CHECK_KEYS: KeyTypes = {
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
    "shard_threshold": int,
}
_SERVER_KEYS: KeyTypes = {
    "host": str,
    "port": int,
    "max_timeout": (int, float),
    "shutdown_grace": (int, float),
    "keep_alive_timeout": (int, float),
    "anonymous_min_interval": (int, float),
    "route_panic_threshold": (int, float),
    "max_connections": int,
    "max_streams": int,
    "max_streams_per_client": int,
    "auth_token": str,
    "auth_token_env": str,
    "observe_token": str,
    "observe_token_env": str,
    "max_observations_per_request": int,
    "max_observation_requests_per_second": (int, float),
}
#: A bearer token: long enough not to be guessed, and sendable in a header.
_MIN_TOKEN_CHARS = 16
_TOKEN_HINT = (
    "e.g. generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
)
_CLUSTER_KEYS: KeyTypes = {
    "redis_url": str,
    "redis_url_env": str,
    "mode": str,
    "key_prefix": str,
    "timeout": (int, float),
    "instance_id": str,
}
_KEY_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_WEBHOOK_KEYS: KeyTypes = {
    "url": str,
    "min_interval": (int, float),
    "timeout": (int, float),
    "max_pending": int,
    "retries": int,
    "token": str,
    "token_env": str,
}
_STORAGE_KEYS: KeyTypes = {
    "enabled": bool,
    "path": str,
    "raw_retention": (int, float),
    "rollup_retention": (int, float),
    "flush_interval": (int, float),
    "max_pending": int,
}


def parse_checks(validator: Validator, data: Mapping[str, Any]) -> ChecksConfig:
    values = validator.section(data, "checks", _CHECK_KEYS, (*SCHEDULE_KEYS, "workers"))
    table = data.get("checks", {})
    schedule = validator.schedule(table, "checks") if isinstance(table, dict) else {}
    values["schedule"] = CheckSchedule(**(schedule or {}))
    _seconds(
        validator,
        values,
        "checks",
        ("timeout", "model_timeout", "adapter_timeout", "min_interval"),
        zero_ok={"min_interval"},
    )
    _at_least(
        validator,
        values,
        "checks",
        ("max_body_bytes", 1024, ""),
        ("sync_threads", 1, ""),
        ("max_concurrent_probes", 0, " (0 = unlimited)"),
        ("adaptive_ceiling", 1, " (the largest an adaptive provider limit grows)"),
        (
            "max_probe_tokens_per_hour",
            1,
            " (tokens paid probes may be billed per sliding hour; leave it out for no budget)",
        ),
        (
            "shard_threshold",
            1,
            " (the number of HTTP adapters from which the concurrent pass is sharded "
            "over worker processes)",
        ),
    )
    if isinstance(table, dict) and "workers" in table:
        _workers(validator, values, table["workers"])
    validator.allow_link_local = values.get("allow_link_local", False)
    return ChecksConfig(**values)


def _workers(validator: Validator, values: dict[str, Any], workers: object) -> None:
    """``workers = "auto" | int``: None (auto, the CPU count) or the number given."""
    if workers == "auto":
        values["workers"] = None
    elif isinstance(workers, int) and not isinstance(workers, bool) and workers > max_workers():
        validator.problem(
            "checks.workers",
            f"at most {max_workers()} on this machine ({WORKERS_PER_CPU} per CPU available, "
            f"{available_cpus()} here); use \"auto\" for one per CPU, got {workers!r}",
        )
    elif isinstance(workers, int) and not isinstance(workers, bool) and workers >= 0:
        values["workers"] = workers
    else:
        validator.problem(
            "checks.workers",
            'must be "auto" (one worker process per CPU) or a whole number >= 0 '
            f"(0 or 1 = no worker processes), got {workers!r}",
        )


def parse_server(validator: Validator, data: Mapping[str, Any]) -> ServerConfig:
    values = validator.section(data, "server", _SERVER_KEYS)
    if "port" in values and not 0 <= values["port"] <= 65535:
        validator.problem("server.port", f"must be 0..65535, got {values['port']}")
        del values["port"]
    _seconds(
        validator,
        values,
        "server",
        ("max_timeout", "shutdown_grace", "keep_alive_timeout", "anonymous_min_interval"),
        zero_ok={"anonymous_min_interval"},
    )
    threshold = values.get("route_panic_threshold")
    if threshold is not None:
        if 0 <= threshold <= 100:  # NaN and infinities fail it too
            values["route_panic_threshold"] = float(threshold)
        else:
            validator.problem(
                "server.route_panic_threshold",
                "must be a percentage from 0 to 100 (below it of a model's deployments "
                f"healthy, /v1/route returns them all; 0 = never), got {threshold!r}",
            )
            del values["route_panic_threshold"]
    _caps(validator, values)
    _observation_bounds(validator, values)
    table = data.get("server", {})
    values["auth_token"] = _bearer_token(
        validator, table, "auth_token", ", or remove auth_token_env to serve without auth"
    )
    values["observe_token"] = _bearer_token(
        validator, table, "observe_token", ", or remove observe_token_env to refuse observations"
    )
    if values["observe_token"] is not None and values["observe_token"] == values["auth_token"]:
        validator.problem(
            "server.observe_token",
            "must differ from auth_token: each grants what the other does not; " + _TOKEN_HINT,
        )
        values["observe_token"] = None
    return ServerConfig(**values)


def _observation_bounds(validator: Validator, values: dict[str, Any]) -> None:
    """``max_observations_per_request`` and ``max_observation_requests_per_second``."""
    count = values.get("max_observations_per_request")
    if count is not None and not 1 <= count <= MAX_OBSERVATIONS_PER_REQUEST:
        validator.problem(
            "server.max_observations_per_request",
            f"must be 1 to {MAX_OBSERVATIONS_PER_REQUEST:,} (observations one request may "
            f"carry), got {count}",
        )
        del values["max_observations_per_request"]
    rate = values.get("max_observation_requests_per_second")
    if rate is not None and not (finite(rate) and rate > 0):
        validator.problem(
            "server.max_observation_requests_per_second",
            f"must be a finite number > 0 (requests per second), got {rate!r}",
        )
        del values["max_observation_requests_per_second"]
    elif rate is not None:
        values["max_observation_requests_per_second"] = float(rate)


def _caps(validator: Validator, values: dict[str, Any]) -> None:
    """``max_connections``, ``max_streams``, ``max_streams_per_client``: bounds, and together."""
    _at_least(
        validator,
        values,
        "server",
        ("max_connections", MIN_CONNECTIONS, ""),
        ("max_streams", 1, ""),
        ("max_streams_per_client", 1, ""),
    )
    connections, streams = values.get("max_connections"), values.get("max_streams")
    if connections is not None and streams is not None and streams > stream_room(connections):
        validator.problem(
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
            validator.problem(
                "server.max_streams_per_client",
                f"must be at most server.max_streams ({bound}), got {per_client}",
            )
            del values["max_streams_per_client"]


def _bearer_token(validator: Validator, table: Any, key: str, otherwise: str) -> Secret | None:
    """``[server] <key>_env`` / ``<key>``: the same rules as a provider's key, and long."""
    if not isinstance(table, dict):
        return None
    found = validator.literal_or_env(table, key, "server", noun="token", otherwise=otherwise)
    if found is None:
        return None
    value, path, where = found
    if len(value) < _MIN_TOKEN_CHARS or not TOKEN_CHARS.fullmatch(value):
        validator.problem(
            path,
            f"{where} must be at least {_MIN_TOKEN_CHARS} visible ASCII characters "
            f"with no spaces (got {len(value)} characters); {_TOKEN_HINT}",
        )
        return None
    return Secret(value)


def parse_webhook(
    validator: Validator, data: Mapping[str, Any], checks: ChecksConfig
) -> WebhookConfig | None:
    """``[webhook]``: where status transitions are POSTed (needs background checks)."""
    if "webhook" not in data:
        return None
    values = validator.section(data, "webhook", _WEBHOOK_KEYS)
    table = data["webhook"]
    if not isinstance(table, dict):
        return None
    before = len(validator.problems)
    if "url" not in table:
        validator.problem(
            "webhook.url", 'required: where to POST, e.g. url = "https://alerts.example/hook"'
        )
    token = _webhook_token(validator, table)
    options = {k: v for k, v in values.items() if k not in ("token", "token_env")}
    if "url" in values:
        for key, message in webhook_problems(**options).items():
            validator.problem(f"webhook.{key}", message)
        validator.target(values["url"], "webhook.url", what="POST to the receiver")
    if not checks.background_enabled:
        validator.problem(
            "webhook",
            "transitions come from background checks: set [checks] interval > 0, "
            "or remove [webhook]",
        )
    if len(validator.problems) > before or "url" not in values:
        return None
    return WebhookConfig(**options, token=token)


def _webhook_token(validator: Validator, table: Mapping[str, Any]) -> Secret | None:
    found = validator.literal_or_env(
        table, "token", "webhook", noun="token", otherwise=", or remove token_env"
    )
    if found is None:
        return None
    value, path, _ = found
    if not TOKEN_CHARS.fullmatch(value):
        validator.problem(
            path,
            f"the token must be visible ASCII characters with no spaces "
            f"(got {len(value)} characters)",
        )
        return None
    return Secret(value)


def parse_cluster(
    validator: Validator, data: Mapping[str, Any], checks: ChecksConfig
) -> ClusterConfig | None:
    """``[cluster]``: the Redis that instances share their checks through."""
    if "cluster" not in data:
        return None
    values = validator.section(data, "cluster", _CLUSTER_KEYS)
    if not isinstance(data["cluster"], dict):
        return None
    before = len(validator.problems)
    table = data["cluster"]
    values.pop("redis_url", None)
    values.pop("redis_url_env", None)
    found = validator.literal_or_env(
        table, "redis_url", "cluster", noun="Redis URL", example="redis://...",
        otherwise=", or remove [cluster]",
    )
    url, where = (found[0], found[1]) if found else (None, "cluster.redis_url")
    if found is None and "redis_url" not in table and "redis_url_env" not in table:
        validator.problem(
            "cluster.redis_url",
            'required: the shared Redis, e.g. redis_url = "redis://redis:6379/0" '
            "(or redis_url_env naming a variable that holds it)",
        )
    mode = values.get("mode", "standalone")
    if mode not in CLUSTER_MODES:
        validator.problem(
            "cluster.mode",
            f"must be one of {', '.join(CLUSTER_MODES)} (a single node, a Redis Cluster, "
            f"or a primary found through Sentinel), got {mode!r}",
        )
    elif url is not None:
        schemes = MODE_SCHEMES[mode]
        shown = display_redis_url(url)
        if url.partition("://")[0] not in schemes:
            wanted = ", ".join(f"{scheme}://" for scheme in schemes)
            validator.problem(where, f"mode {mode!r} takes a {wanted} URL, got {shown!r}")
        elif mode == "sentinel":
            try:
                sentinel_url(url)
            except ValueError as exc:
                validator.problem(where, f"{exc}, got {shown!r}")
    if "key_prefix" in values and not _KEY_PREFIX.fullmatch(values["key_prefix"]):
        validator.problem(
            "cluster.key_prefix",
            "must be 1 to 64 letters, digits or _ . : -, got " + repr(values["key_prefix"]),
        )
    if "timeout" in values:
        values["timeout"] = validator.seconds(values["timeout"], "cluster.timeout")
    if "instance_id" in values:
        validator.name(values["instance_id"], "cluster.instance_id")
    if not checks.background_enabled:
        validator.problem(
            "cluster",
            "instances share their background checks: set [checks] interval > 0, "
            "or remove [cluster]",
        )
    if not coredis_available():
        validator.problem("cluster", COREDIS_MISSING)
    if len(validator.problems) > before or url is None or values.get("timeout", 1.0) is None:
        return None
    return ClusterConfig(redis_url=Secret(url), **values)


def parse_storage(
    validator: Validator, data: Mapping[str, Any], checks: ChecksConfig
) -> StorageConfig:
    """``[storage]``: the SQLite database results and transitions go to (on with background checks)."""
    if "storage" not in data:
        return StorageConfig()
    values = validator.section(data, "storage", _STORAGE_KEYS)
    if not isinstance(data["storage"], dict):
        return StorageConfig()
    before = len(validator.problems)
    merged = {**_storage_defaults(), **values}
    merged.pop("enabled", None)
    for key, message in storage_problems(**merged).items():
        validator.problem(f"storage.{key}", message)
    if values.get("enabled", False) and not checks.background_enabled:
        validator.problem(
            "storage.enabled",
            "storage keeps the results of background checks: set [checks] interval > 0, "
            "or set enabled = false",
        )
    if len(validator.problems) > before:
        return StorageConfig()
    for key in ("raw_retention", "rollup_retention", "flush_interval"):
        if key in values:
            values[key] = float(values[key])
    return StorageConfig(**values)


def _storage_defaults() -> dict[str, Any]:
    defaults = StorageConfig()
    return {
        "path": defaults.path,
        "raw_retention": defaults.raw_retention,
        "rollup_retention": defaults.rollup_retention,
        "flush_interval": defaults.flush_interval,
        "max_pending": defaults.max_pending,
    }


def _seconds(
    validator: Validator,
    values: dict[str, Any],
    section: str,
    keys: tuple[str, ...],
    *,
    zero_ok: Collection[str] = (),
) -> None:
    """Each of ``keys`` in ``values`` as seconds; one that is not is reported and dropped."""
    for key in keys:
        if key in values:
            seconds = validator.seconds(values[key], f"{section}.{key}", zero_ok=key in zero_ok)
            if seconds is None:
                del values[key]
            else:
                values[key] = seconds


def _at_least(
    validator: Validator,
    values: dict[str, Any],
    section: str,
    *floors: tuple[str, int, str],
) -> None:
    """Each ``(key, lowest, note)`` in ``values`` below its lowest is reported and dropped."""
    for key, low, note in floors:
        if key in values and values[key] < low:
            validator.problem(f"{section}.{key}", f"must be at least {low}{note}, got {values[key]}")
            del values[key]

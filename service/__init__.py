"""router-health: concurrent, deadline-bounded health checks for AI router adapters.

The public API, listed once::

    from service import load_config, AdapterManager

    manager = AdapterManager.from_config(load_config("providers.toml"))
    async with manager:
        report = await manager.health_checker.check_all_models_with_timeout(
            model_names=manager.get_available_models(),
            model_adapters=manager.model_adapters,
            timeout=30.0,
        )
    print(report.to_dict())

The checker needs no web stack: :func:`create_app` and :func:`serve` load
Quart and hypercorn only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import (
    ChecksConfig,
    Config,
    ConfigError,
    ModelConfig,
    ProviderConfig,
    ServerConfig,
    load_config,
    parse_config,
)
from .engine.checker import HealthChecker, ResultCallback
from .engine.manager import AdapterManager, UnknownModelError, raise_open_file_limit
from .engine.passive import PassivePolicy
from .engine.report import (
    HealthReport,
    HealthStatus,
    ModelHealthReport,
    ModelReport,
    ProbeResult,
    ProbeStatus,
)
from .engine.settings import CheckerSettings

if TYPE_CHECKING:
    from .api.app import create_app, serve

__all__ = [
    "AdapterManager",
    "CheckerSettings",
    "ChecksConfig",
    "Config",
    "ConfigError",
    "HealthChecker",
    "HealthReport",
    "HealthStatus",
    "ModelConfig",
    "ModelHealthReport",
    "ModelReport",
    "PassivePolicy",
    "ProbeResult",
    "ProbeStatus",
    "ProviderConfig",
    "ResultCallback",
    "ServerConfig",
    "UnknownModelError",
    "create_app",
    "load_config",
    "parse_config",
    "raise_open_file_limit",
    "serve",
]

#: Names whose module imports the web stack: loaded on first use.
_WEB: dict[str, str] = {"create_app": "service.api.app", "serve": "service.api.app"}


def __getattr__(name: str) -> Any:
    module = _WEB.get(name)
    if module is None:
        raise AttributeError(f"module 'service' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

"""router-health: concurrent, deadline-bounded health checks for AI router adapters.

The public API, and nothing else::

    from service import load_config, AdapterManager

    manager = AdapterManager.from_config(load_config("providers.toml"))
    async with manager:
        report = await manager.health_checker.check_all_models_with_timeout(
            model_names=manager.get_available_models(),
            model_adapters=manager.model_adapters,
            timeout=30.0,
        )
    print(report.to_dict())
"""

from .api.app import create_app, serve
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
from .engine.checker import CheckerSettings, HealthChecker, ResultCallback
from .engine.manager import AdapterManager, UnknownModelError
from .engine.passive import PassivePolicy
from .engine.report import (
    HealthReport,
    HealthStatus,
    ModelHealthReport,
    ModelReport,
    ProbeResult,
    ProbeStatus,
)

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
    "serve",
]

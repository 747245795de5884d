"""``Config``: one whole configuration, every section parsed and validated."""

from __future__ import annotations

from dataclasses import dataclass, field

from .alerts import AlertChannelConfig
from .checks import ChecksConfig
from .cluster import ClusterConfig
from .models import ModelConfig
from .server import ServerConfig
from .status_page import StatusPageConfig
from .storage import StorageConfig
from .telemetry import TelemetryConfig
from .webhook import WebhookConfig

__all__ = ["Config"]


@dataclass(frozen=True, slots=True)
class Config:
    checks: ChecksConfig
    models: tuple[ModelConfig, ...]
    server: ServerConfig = field(default_factory=ServerConfig)
    source: str = "<config>"
    webhook: WebhookConfig | None = None  # [webhook]: POST status transitions
    cluster: ClusterConfig | None = None  # [cluster]: share checks with other instances
    storage: StorageConfig = field(default_factory=StorageConfig)  # [storage]: SQLite history
    # [status_page]: the public GET /status and badges
    status_page: StatusPageConfig = field(default_factory=StatusPageConfig)
    alerts: tuple[AlertChannelConfig, ...] = ()  # [[alerts]]: channels told of transitions
    # [telemetry]: traces of runs and probes over OTLP (with the OTEL_* variables applied)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)

    def model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)

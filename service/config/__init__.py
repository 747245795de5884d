"""Configuration: every settings type, and the parsers that build them.

The bottom floor: it imports nothing else of ``service``. Settings are
frozen dataclasses, parsed and validated once (:func:`load_config`,
:func:`parse_config`); the floors above take them as they are. A LiteLLM
proxy config (YAML) maps onto the same document (:func:`load_litellm_config`,
:func:`import_litellm`).
"""

from .alerts import AlertChannelConfig
from .checks import HISTORY_LENGTH, SCHEDULE_KEYS, TRANSIENT_KINDS, CheckSchedule, ChecksConfig
from .cluster import ClusterConfig
from .document import Config
from .litellm import is_litellm_path, load_litellm_config, parse_litellm_config
from .litellm_import import ImportedConfig, import_litellm
from .models import ModelConfig, ProviderConfig
from .parse import load_config, parse_config
from .server import ServerConfig
from .status_page import StatusPageConfig
from .storage import StorageConfig
from .telemetry import TelemetryConfig
from .values import MAX_TAGS, TAG_PATTERN, ConfigError, tag_problem
from .webhook import WebhookConfig
from .writer import dump_toml

__all__ = [
    "HISTORY_LENGTH",
    "MAX_TAGS",
    "SCHEDULE_KEYS",
    "TAG_PATTERN",
    "TRANSIENT_KINDS",
    "AlertChannelConfig",
    "CheckSchedule",
    "ChecksConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "ImportedConfig",
    "ModelConfig",
    "ProviderConfig",
    "ServerConfig",
    "StatusPageConfig",
    "StorageConfig",
    "TelemetryConfig",
    "WebhookConfig",
    "dump_toml",
    "import_litellm",
    "is_litellm_path",
    "load_config",
    "load_litellm_config",
    "parse_config",
    "parse_litellm_config",
    "tag_problem",
]

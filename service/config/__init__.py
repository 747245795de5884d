"""Configuration: every settings type, and the parsers that build them.

The bottom floor: it imports nothing else of ``service``. Settings are
frozen dataclasses, parsed and validated once (:func:`load_config`,
:func:`parse_config`); the floors above take them as they are.
"""

from .checks import HISTORY_LENGTH, SCHEDULE_KEYS, TRANSIENT_KINDS, CheckSchedule, ChecksConfig
from .cluster import ClusterConfig
from .document import Config
from .models import ModelConfig, ProviderConfig
from .parse import load_config, parse_config
from .server import ServerConfig
from .values import MAX_TAGS, TAG_PATTERN, ConfigError, tag_problem
from .webhook import WebhookConfig
from .writer import dump_toml

__all__ = [
    "HISTORY_LENGTH",
    "MAX_TAGS",
    "SCHEDULE_KEYS",
    "TAG_PATTERN",
    "TRANSIENT_KINDS",
    "CheckSchedule",
    "ChecksConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "ModelConfig",
    "ProviderConfig",
    "ServerConfig",
    "WebhookConfig",
    "dump_toml",
    "load_config",
    "parse_config",
    "tag_problem",
]

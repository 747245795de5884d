"""TOML -> typed, validated :class:`~service.config.Config`.

Every problem is reported with the file, the key path and what to do, all of
them at once (fixing a config one error per run is miserable), as a single
:class:`ConfigError` whose message is ready to print; never a traceback.

The tables are read by their own modules: ``[checks]``, ``[server]``,
``[webhook]``, ``[cluster]`` and ``[storage]`` in :mod:`.parse_sections`, ``[status_page]``
in :mod:`.status_page`, ``[[alerts]]`` in :mod:`.parse_alerts`, ``[[models]]`` in
:mod:`.parse_models` (a provider entry's probe keys in :mod:`.parse_probe`), ``[telemetry]``
in :mod:`.telemetry`,
all reporting to one :class:`~.parse_validator.Validator`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .document import Config
from .parse_alerts import parse_alerts
from .parse_models import parse_models, provider_policies
from .parse_sections import (
    parse_checks,
    parse_cluster,
    parse_server,
    parse_storage,
    parse_webhook,
)
from .parse_validator import Validator
from .status_page import parse_status_page
from .telemetry import parse_telemetry
from .values import ConfigError

__all__ = ["load_config", "parse_config"]

_TOP_KEYS = {"checks", "server", "models", "webhook", "cluster", "storage", "status_page",
             "alerts", "telemetry"}


def parse_config(
    data: Mapping[str, Any], *, source: str = "<config>", env: Mapping[str, str] | None = None
) -> Config:
    """Validate an already-parsed TOML document. Raises :class:`ConfigError`."""
    validator = Validator(source, os.environ if env is None else env)
    validator.unknown_keys(data, _TOP_KEYS, "")
    checks = parse_checks(validator, data)
    server = parse_server(validator, data)
    models = parse_models(validator, data)
    checks = provider_policies(validator, checks, models)
    webhook = parse_webhook(validator, data, checks)
    cluster = parse_cluster(validator, data, checks)
    storage = parse_storage(validator, data, checks)
    status_page = parse_status_page(validator, data, _model_names(data))
    alerts = parse_alerts(validator, data, checks, models, _model_names(data))
    telemetry = parse_telemetry(validator, data)
    if validator.problems:
        raise ConfigError(source, validator.problems)
    return Config(
        checks=checks,
        models=models,
        server=server,
        source=source,
        webhook=webhook,
        cluster=cluster,
        storage=storage,
        status_page=status_page,
        alerts=alerts,
        telemetry=telemetry,
    )


def _model_names(data: Mapping[str, Any]) -> list[str]:
    """The model names the document sets, as written (a name's own problem is reported once)."""
    models = data.get("models")
    if not isinstance(models, list):
        return []
    names = (m.get("name") for m in models if isinstance(m, dict))
    return list(dict.fromkeys(name for name in names if isinstance(name, str)))


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

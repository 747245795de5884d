"""A LiteLLM proxy config (``config.yaml``) as a router-health config document.

``model_list`` deployments become ``[[models]]`` and their providers (one
model per ``model_name``); the result is the same document a TOML file gives,
validated by :func:`~service.config.parse_config`. Problems are reported at
the LiteLLM key that caused them (``model_list[3] (gpt-4o).litellm_params.api_base``),
all at once, as one :class:`ConfigError`. What the mapping reads, and what it
ignores, is in docs/litellm.md.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from adapters import ADAPTER_TYPES
from adapters.base import is_wildcard
from adapters.bedrock import DEFAULT_BEDROCK_BASE_URL, bedrock_region
from adapters.modes import is_reasoning_model

from .document import Config
from .litellm_prefixes import CHECKED_MODES, DEFAULT_INTERVAL, NO_PREFIX, PREFIXES, Route
from .litellm_yaml import parse_yaml, read_config_file
from .parse import parse_config
from .values import ConfigError, label

__all__ = [
    "LiteLLMDocument",
    "is_litellm_path",
    "litellm_document",
    "load_litellm_config",
    "parse_litellm_config",
]

#: ``api_key: os.environ/NAME``: LiteLLM's "read it from the environment".
ENV_REFERENCE: Final = "os.environ/"
#: File names taken for LiteLLM configs by ``--config``.
_YAML_SUFFIXES: Final = (".yaml", ".yml")
_OPENAI_HOST: Final = "api.openai.com"
_AWS_KEYS: Final = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
_STRICT_HINT: Final = "--strict refuses a deployment router-health cannot check"
#: LiteLLM's own region variable, read before the ones router-health's Bedrock adapter reads.
_LITELLM_REGION_ENV: Final = "AWS_REGION_NAME"
#: An Azure ``api_base`` naming the deployment: LiteLLM calls it as the client's base URL.
_AZURE_DEPLOYMENT_URL: Final = re.compile(r"(?P<root>.+?)/openai/deployments/(?P<name>[^/?#]+)/?")
#: The modes whose paid probe has an answer budget, which ``reasoning`` sizes.
_REASONING_MODES: Final = ("chat", "completion", "responses")

#: Where a router-health provider key came from, for messages about it.
_ORIGIN_KEYS: Final = {
    "name": "model_info.id",
    "type": "litellm_params.model",
    "reason": "litellm_params.model",
    "probe": "litellm_params.model",
    "model": "litellm_params.model",
    "deployment": "litellm_params.model",
    "base_url": "litellm_params.api_base",
    "api_key": "litellm_params.api_key",
    "api_key_env": "litellm_params.api_key",
    "api_version": "litellm_params.api_version",
    "region": "litellm_params.aws_region_name",
    "project": "litellm_params.vertex_project",
    "location": "litellm_params.vertex_location",
    "credentials_file": "litellm_params.vertex_credentials",
    "aws_access_key_id_env": "litellm_params.aws_access_key_id",
    "aws_secret_access_key_env": "litellm_params.aws_secret_access_key",
    "aws_session_token_env": "litellm_params.aws_session_token",
    "headers": "litellm_params.extra_headers",
    "headers_env": "litellm_params.extra_headers",
    "mode": "model_info.mode",
    "probe_model": "model_info.health_check_model",
    "timeout": "model_info.health_check_timeout",
    "max_tokens": "model_info.health_check_max_tokens",
    "voice": "model_info.health_check_voice",
    "interval": "model_info.disable_background_health_check",
    "reasoning": "model_info.base_model",
}
_CHECKS_ORIGINS: Final = {"interval": "general_settings.health_check_interval"}


@dataclass(frozen=True, slots=True)
class Origin:
    """The ``model_list`` entry one provider entry came from."""

    index: int  # in model_list
    model_name: str

    @property
    def path(self) -> str:
        return f"model_list[{self.index}] ({label(self.model_name)})"


@dataclass(frozen=True, slots=True)
class LiteLLMDocument:
    """A LiteLLM config as a router-health document, and where each provider came from.

    ``document`` is what :func:`~service.config.parse_config` takes; it holds
    literal keys as the file wrote them (``import litellm`` takes them out).
    """

    document: dict[str, Any] = field(repr=False)  # it may hold keys written in the file
    #: (model index, provider index) in ``document`` -> its model_list entry.
    origins: dict[tuple[int, int], Origin] = field(default_factory=dict)

    def explain(self, error: ConfigError) -> ConfigError:
        """``error`` (from parse_config on ``document``) told at the LiteLLM keys."""
        return ConfigError(error.source, [self._at_origin(p) for p in error.problems])

    def _at_origin(self, problem: str) -> str:
        named = re.match(r"models\[(\d+)\]\.name: ", problem)
        if named is not None:  # the model's own name: its first deployment's model_name
            first = self.origins.get((int(named.group(1)), 0))
            if first is not None:
                return f"model_list[{first.index}].model_name: {problem[named.end() :]}"
            return problem
        match = re.match(r"models\[(\d+)\] ", problem)
        if match is None:
            section, dot, rest = problem.partition(".")
            key, colon, message = rest.partition(": ")
            if section == "checks" and dot and colon and key in _CHECKS_ORIGINS:
                return f"{_CHECKS_ORIGINS[key]}: {message}"
            return problem
        i = int(match.group(1))
        models = self.document.get("models", [])
        if i >= len(models):
            return problem
        prefix = f"models[{i}] ({label(models[i]['name'])}).providers["
        if not problem.startswith(prefix):
            return problem
        j_text, bracket, rest = problem[len(prefix) :].partition("]")
        origin = self.origins.get((i, int(j_text))) if j_text.isdigit() and bracket else None
        if origin is None:
            return problem
        if rest.startswith(": "):
            return f"{origin.path}{rest}"
        key_path, colon, message = rest.removeprefix(".").partition(": ")
        key, dot, sub = key_path.partition(".")
        where = _ORIGIN_KEYS.get(key)
        if where is None:  # a key with no LiteLLM counterpart: named as router-health's
            return f"{origin.path} (as {key_path}){colon}{message}"
        return f"{origin.path}.{where}{dot}{sub}{colon}{message}"


def is_litellm_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``--config path`` names a LiteLLM config (``.yaml`` / ``.yml``)."""
    return str(path).lower().endswith(_YAML_SUFFIXES)


def load_litellm_config(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    strict: bool = False,
) -> Config:
    """Read, map and validate a LiteLLM config file. Raises :class:`ConfigError`."""
    source = str(path)
    return parse_litellm_config(read_config_file(path), source=source, env=env, strict=strict)


def parse_litellm_config(
    raw: bytes | str,
    *,
    source: str = "<litellm config>",
    env: Mapping[str, str] | None = None,
    strict: bool = False,
) -> Config:
    """A LiteLLM config's text, mapped and validated. Raises :class:`ConfigError`."""
    env = os.environ if env is None else env
    mapped = litellm_document(parse_yaml(raw, source=source), source=source, env=env, strict=strict)
    try:
        return parse_config(mapped.document, source=source, env=env)
    except ConfigError as exc:
        raise mapped.explain(exc) from None


def litellm_document(
    data: Any,
    *,
    source: str = "<litellm config>",
    env: Mapping[str, str] | None = None,
    strict: bool = False,
) -> LiteLLMDocument:
    """A parsed LiteLLM config (plain data) as a router-health document.

    ``env`` resolves ``os.environ/NAME`` in values that are not secrets
    (``api_base``, ``api_version``...) and picks which of LiteLLM's default
    key variables is set; keys themselves stay references (``api_key_env``).
    Raises :class:`ConfigError` listing every problem in the file's shape.
    """
    reader = _Reader(os.environ if env is None else env, strict)
    mapped = reader.read(data)
    if reader.problems:
        raise ConfigError(source, reader.problems)
    return mapped


# -- reading one file ---------------------------------------------------------------


@dataclass(slots=True)
class _Deployment:
    origin: Origin
    table: dict[str, Any]  # the provider entry, without its name
    given_name: str | None  # model_info.id
    default_name: str


class _Reader:
    def __init__(self, env: Mapping[str, str], strict: bool) -> None:
        self.env = env
        self.strict = strict
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def read(self, data: Any) -> LiteLLMDocument:
        if data is None:
            self.problem("model_list", "the file is empty; expected a LiteLLM config with a model_list")
            return LiteLLMDocument({})
        if not isinstance(data, dict):
            self.problem(
                "the file", f"must be a LiteLLM config (a mapping with model_list), got a {_kind(data)}"
            )
            return LiteLLMDocument({})
        checks = self.general_settings(data.get("general_settings"))
        entries = data.get("model_list")
        if entries is None:
            self.problem(
                "model_list", "required: the list of deployments (model_name + litellm_params)"
            )
            return LiteLLMDocument({})
        if not isinstance(entries, list):
            self.problem("model_list", f"must be a list of deployments, got a {_kind(entries)}")
            return LiteLLMDocument({})
        if not entries:
            self.problem("model_list", "is empty: list at least one deployment")
        deployments = [d for i, e in enumerate(entries) if (d := self.deployment(i, e)) is not None]
        document: dict[str, Any] = {"checks": checks} if checks else {}
        origins: dict[tuple[int, int], Origin] = {}
        groups: dict[str, list[_Deployment]] = {}
        for deployment in deployments:
            groups.setdefault(deployment.origin.model_name, []).append(deployment)
        models = []
        for i, (model_name, members) in enumerate(groups.items()):
            providers = []
            for j, (name, member) in enumerate(zip(_unique_names(members), members, strict=True)):
                providers.append({"name": name, **member.table})
                origins[(i, j)] = member.origin
            models.append({"name": model_name, "providers": providers})
        document["models"] = models
        return LiteLLMDocument(document, origins)

    def general_settings(self, settings: Any) -> dict[str, Any]:
        """``background_health_checks`` / ``health_check_interval`` -> ``[checks] interval``."""
        if settings is None:
            return {}
        if not isinstance(settings, dict):
            self.problem("general_settings", f"must be a mapping, got a {_kind(settings)}")
            return {}
        enabled = settings.get("background_health_checks", False)
        if not isinstance(enabled, bool):
            self.problem(
                "general_settings.background_health_checks",
                f"must be true or false, got {_shown(enabled)}",
            )
            return {}
        if not enabled:
            return {}
        return {"interval": settings.get("health_check_interval", DEFAULT_INTERVAL)}

    def deployment(self, index: int, entry: Any) -> _Deployment | None:
        path = f"model_list[{index}]"
        if not isinstance(entry, dict):
            self.problem(
                path, f"must be a mapping with model_name and litellm_params, got a {_kind(entry)}"
            )
            return None
        model_name = entry.get("model_name")
        if not isinstance(model_name, str) or not model_name.strip():
            got = "nothing" if model_name is None else _shown(model_name)
            self.problem(f"{path}.model_name", f"required: a non-empty string, got {got}")
            return None
        origin = Origin(index, model_name)
        path = origin.path
        params = entry.get("litellm_params")
        if not isinstance(params, dict):
            got = "nothing" if params is None else f"a {_kind(params)}"
            self.problem(
                f"{path}.litellm_params", f"required: a mapping with at least model, got {got}"
            )
            return None
        info = entry.get("model_info", {})
        if info is None:
            info = {}
        if not isinstance(info, dict):
            self.problem(f"{path}.model_info", f"must be a mapping, got a {_kind(info)}")
            return None
        model = params.get("model")
        if not isinstance(model, str) or not model.strip():
            got = "nothing" if model is None else _shown(model)
            self.problem(
                f"{path}.litellm_params.model",
                f"required: provider/model, e.g. openai/gpt-4o, got {got}",
            )
            return None
        before = len(self.problems)
        mapped = _DeploymentReader(self, origin, params, info).read(model)
        if mapped is None or len(self.problems) > before:
            return None
        table, default_name = mapped
        given = info.get("id")
        if isinstance(given, bool) or not isinstance(given, str | int | None):
            self.problem(f"{path}.model_info.id", f"must be a string, got {_shown(given)}")
            return None
        return _Deployment(origin, table, None if given is None else str(given), default_name)

    def environment(self, value: str, path: str) -> str | None:
        """``os.environ/NAME`` resolved (None, reported, when unset); other text as it is."""
        if not value.startswith(ENV_REFERENCE):
            return value
        name = value[len(ENV_REFERENCE) :]
        resolved = self.env.get(name)
        if not resolved:
            self.problem(
                path,
                f"environment variable {label(name)} is not set (or empty); "
                f"export {label(name)}=... before starting",
            )
            return None
        return resolved


class _DeploymentReader:
    """One ``model_list`` entry -> a provider table and its default name."""

    def __init__(
        self, reader: _Reader, origin: Origin, params: Mapping[str, Any], info: Mapping[str, Any]
    ) -> None:
        self.reader = reader
        self.origin = origin
        self.params = params
        self.info = info
        self.unsupported: tuple[str, str] | None = None  # (key path, reason)
        self.region_from_env = False  # then it is not part of the default name
        self.region_missing = False  # a problem unless the deployment is unsupported anyway

    def problem(self, key: str, message: str) -> None:
        self.reader.problem(f"{self.origin.path}.{key}", message)

    def text(self, table: Mapping[str, Any], key: str, where: str) -> str | None:
        """A string value (``os.environ/NAME`` resolved); a YAML date reads as written."""
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, datetime.date):  # api_version: 2024-02-01, unquoted
            return value.isoformat()
        if not isinstance(value, str):
            self.problem(f"{where}.{key}", f"must be a string, got {_shown(value)}")
            return None
        return self.reader.environment(value, f"{self.origin.path}.{where}.{key}")

    def cannot_check(self, key: str, reason: str) -> None:
        if self.unsupported is None:
            self.unsupported = (key, reason)

    def read(self, model: str) -> tuple[dict[str, Any], str] | None:
        prefix, _, rest = model.partition("/") if "/" in model else ("", "", model)
        base_url = self.text(self.params, "api_base", "litellm_params")
        route = PREFIXES.get(prefix or NO_PREFIX)
        if route is None:
            self.cannot_check(
                "litellm_params.model",
                f"no router-health adapter for LiteLLM provider prefix {prefix + '/'!r}",
            )
            return self.unsupported_table(rest, _default_name(prefix, base_url, {}))
        kind = route.type
        if kind == "bedrock":
            rest = rest.removeprefix("converse/").removeprefix("invoke/")
        if base_url is None and route.base_env and self.reader.env.get(route.base_env):
            base_url = self.reader.env[route.base_env]
        deployment = rest
        if base_url is not None:
            base_url, deployment = _root_of(route, kind, base_url, deployment)
        if kind == "openai" and base_url is not None and _host(base_url) != _OPENAI_HOST:
            kind = "openai-compatible"  # LiteLLM's way to any OpenAI-compatible server
        table: dict[str, Any] = {"type": kind}
        if base_url is not None:
            table["base_url"] = base_url
        table["model"] = rest  # a wildcard route (openai/*, claude-3-*): the listed models matching
        if kind == "azure" and is_wildcard(rest):
            self.cannot_check(
                "litellm_params.model",
                "an azure/ wildcard cannot be checked: Azure's model list is the region's "
                "base-model catalogue, not this resource's deployments; name one deployment",
            )
        table.update(self.key(route, kind))
        table.update(self.type_options(kind, route, deployment, base_url))
        table.update(self.health_check(route, kind, table["model"]))
        table.update(self.headers())
        table.update(self.probe(kind, table))
        named = {k: v for k, v in table.items() if not (k == "region" and self.region_from_env)}
        name = _default_name(kind, base_url, named)
        if self.unsupported is not None:
            return self.unsupported_table(rest, name)
        if self.region_missing:
            self.problem(
                "litellm_params.aws_region_name",
                "required: no region in the file, AWS_REGION_NAME, AWS_REGION, "
                "AWS_DEFAULT_REGION or the AWS profile; set aws_region_name: us-east-1 "
                "(LiteLLM would fall back to us-west-2 unasked)",
            )
            return None
        return table, name

    def unsupported_table(self, model: str, name: str) -> tuple[dict[str, Any], str] | None:
        """A deployment router-health cannot check: loaded as such (an error with --strict)."""
        assert self.unsupported is not None
        key, reason = self.unsupported
        if self.reader.strict:
            self.problem(key, f"{reason}; {_STRICT_HINT}")
            return None
        return {"type": "unsupported", "model": model, "reason": reason}, name

    def probe(self, kind: str, table: Mapping[str, Any]) -> dict[str, Any]:
        """A type with no free models list is checked by its 1-token call, as LiteLLM checks it."""
        adapter = ADAPTER_TYPES.get(kind)
        if adapter is None or adapter.lists_models:
            return {}
        if is_wildcard(table["model"]):
            self.cannot_check(
                "litellm_params.model",
                f"type {kind!r} has no models list, so a wildcard route cannot be checked",
            )
        elif table.get("mode") == "image_generation":
            self.cannot_check(
                "model_info.mode",
                f"type {kind!r} has no free probe, and an image is never generated (billed) "
                "to check a deployment unless the config allows it",
            )
        return {"probe": "completion"}

    def key(self, route: Route, kind: str) -> dict[str, Any]:
        """``api_key``: ``os.environ/NAME`` -> ``api_key_env``; literal -> ``api_key``; else LiteLLM's default."""
        value = self.params.get("api_key")
        if value is not None:
            if not isinstance(value, str):  # never shown: it is a key
                self.problem("litellm_params.api_key", f"must be a string, got a {_kind(value)}")
                return {}
            if value.startswith(ENV_REFERENCE):
                return {"api_key_env": value[len(ENV_REFERENCE) :]}
            return {"api_key": value} if value else {}
        set_names = [name for name in route.key_envs if self.reader.env.get(name)]
        if set_names:
            return {"api_key_env": set_names[0]}
        adapter = ADAPTER_TYPES.get(kind)
        required = adapter.key_required if adapter is not None else kind != "openai-compatible"
        if required and route.key_envs:
            return {"api_key_env": route.key_envs[0]}  # parse_config reports it unset
        return {}

    def type_options(
        self, kind: str, route: Route, deployment: str, base_url: str | None
    ) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if kind == "azure":
            options["deployment"] = deployment
        adapter = ADAPTER_TYPES.get(kind)
        if adapter is not None and "api_version" in adapter.option_keys:
            version = self.text(self.params, "api_version", "litellm_params")
            if version is None and route.version_env:
                version = self.reader.env.get(route.version_env) or None
            if version is not None:
                options["api_version"] = version
        if kind == "bedrock":
            options.update(self.region(deployment, base_url))
            for key in _AWS_KEYS:
                value = self.params.get(key)
                if value is None:
                    continue
                if isinstance(value, str) and value.startswith(ENV_REFERENCE):
                    options[f"{key}_env"] = value[len(ENV_REFERENCE) :]
                else:  # never shown: it is a credential
                    self.cannot_check(
                        f"litellm_params.{key}",
                        f"{key} is written in the file; router-health reads AWS credentials "
                        "from the environment: write os.environ/NAME",
                    )
        elif kind == "vertex-ai":
            for litellm_key, key in (("vertex_project", "project"), ("vertex_location", "location")):
                value = self.text(self.params, litellm_key, "litellm_params")
                if value is not None:
                    options[key] = value
            credentials = self.text(self.params, "vertex_credentials", "litellm_params")
            if credentials is not None and credentials.lstrip().startswith("{"):
                self.cannot_check(
                    "litellm_params.vertex_credentials",
                    "vertex_credentials holds the credentials JSON itself; router-health reads "
                    "a service-account file: give its path",
                )
            elif credentials is not None:
                options["credentials_file"] = credentials
        return options

    def region(self, model: str, base_url: str | None) -> dict[str, Any]:
        """The Bedrock region, found where LiteLLM looks, or the adapter's own lookup finds one.

        ``aws_region_name``, a model ARN's region, then ``AWS_REGION_NAME``
        (LiteLLM's variable: router-health does not read it, so its value is
        written out); else the adapter's own lookup (AWS_REGION,
        AWS_DEFAULT_REGION, the api_base host, the AWS profile: in the process
        environment, where the adapter reads them) must find one.
        """
        if "aws_region_name" in self.params:
            region = self.text(self.params, "aws_region_name", "litellm_params")
            return {} if region is None else {"region": region}
        parts = model.split(":")
        if model.startswith("arn:") and len(parts) > 4 and parts[3]:
            return {"region": parts[3]}
        from_env = self.reader.env.get(_LITELLM_REGION_ENV)
        if from_env:
            self.region_from_env = True
            return {"region": from_env}
        found = bedrock_region(None, base_url or DEFAULT_BEDROCK_BASE_URL, os.environ)
        self.region_missing = found is None
        return {}

    def health_check(self, route: Route, kind: str, model: str) -> dict[str, Any]:
        """``model_info``: mode, health_check_model / _timeout / _max_tokens, background opt-out, base_model."""
        values: dict[str, Any] = {}
        mode = self.info.get("mode", route.mode)
        if mode is not None:
            if not isinstance(mode, str):
                self.problem("model_info.mode", f"must be a string, got {_shown(mode)}")
            elif mode not in CHECKED_MODES:
                self.cannot_check(
                    "model_info.mode",
                    f"mode {mode!r} cannot be checked (router-health checks: "
                    f"{', '.join(CHECKED_MODES)})",
                )
            elif mode not in getattr(ADAPTER_TYPES.get(kind), "modes", (mode,)):
                modes = sorted(getattr(ADAPTER_TYPES[kind], "modes", ()))
                self.cannot_check(
                    "model_info.mode",
                    f"type {kind!r} cannot check mode {mode!r} (it checks: {', '.join(modes)})",
                )
            elif mode != "chat":
                values["mode"] = mode
        probe_model = self.info.get("health_check_model")
        if probe_model is not None:
            if isinstance(probe_model, str) and probe_model.strip():
                values["probe_model"] = _unprefixed(probe_model)
            else:
                self.problem(
                    "model_info.health_check_model",
                    f"must be a model name, got {_shown(probe_model)}",
                )
        for litellm_key, key in (
            ("health_check_timeout", "timeout"),
            ("health_check_max_tokens", "max_tokens"),
            ("health_check_voice", "voice"),
        ):
            if litellm_key == "health_check_voice" and values.get("mode") != "audio_speech":
                continue  # LiteLLM reads it for speech deployments alone
            if self.info.get(litellm_key) is not None:
                values[key] = self.info[litellm_key]  # parse_config checks the value
        disabled = self.info.get("disable_background_health_check", False)
        if not isinstance(disabled, bool):
            self.problem(
                "model_info.disable_background_health_check",
                f"must be true or false, got {_shown(disabled)}",
            )
        elif disabled:
            values["interval"] = 0
        base_model = self.info.get("base_model")
        if base_model is not None and not (isinstance(base_model, str) and base_model.strip()):
            self.problem("model_info.base_model", f"must be a model name, got {_shown(base_model)}")
        elif (
            base_model is not None
            and "probe_model" not in values  # the paid probe calls that model, not this one
            and not is_wildcard(model)
            and (mode if isinstance(mode, str) else "chat") in _REASONING_MODES
        ):
            # the model Azure deploys, when the deployment's name does not say (my-o3)
            reasoning = is_reasoning_model(_unprefixed(base_model))
            if reasoning != is_reasoning_model(model):
                values["reasoning"] = reasoning
        return values

    def headers(self) -> dict[str, Any]:
        """``extra_headers`` (or ``headers``): literal values -> headers, os.environ/NAME -> headers_env."""
        literal: dict[str, str] = {}
        from_env: dict[str, str] = {}
        for key in ("headers", "extra_headers"):
            table = self.params.get(key)
            if table is None:
                continue
            if not isinstance(table, dict):
                self.problem(f"litellm_params.{key}", f"must be a mapping, got a {_kind(table)}")
                continue
            for name, value in table.items():
                if not isinstance(name, str) or not isinstance(value, str):  # values never shown
                    self.problem(
                        f"litellm_params.{key}",
                        "header names and values must be strings "
                        f"(got a {_kind(name)} -> a {_kind(value)})",
                    )
                    continue
                if value.startswith(ENV_REFERENCE):
                    from_env[name] = value[len(ENV_REFERENCE) :]
                    literal.pop(name, None)
                else:
                    literal[name] = value
                    from_env.pop(name, None)
        values: dict[str, Any] = {}
        if literal:
            values["headers"] = literal
        if from_env:
            values["headers_env"] = from_env
        return values


# -- names ------------------------------------------------------------------------


def _host(url: str) -> str | None:
    """``host[:port]`` of ``url`` (never its userinfo), or None when it has none."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    return f"{host}:{port}" if port else host


def _unprefixed(model: str) -> str:
    """``model`` without a LiteLLM ``provider/`` prefix (``azure/o3-mini`` -> ``o3-mini``)."""
    head, slash, rest = model.partition("/")
    return rest if slash and head in PREFIXES else model


def _root_of(route: Route, kind: str, base_url: str, deployment: str) -> tuple[str, str]:
    """``api_base`` as the root router-health's paths start from, and the Azure deployment.

    LiteLLM takes an endpoint at the end of ``api_base`` as written instead of
    appending it (Anthropic's ``/v1/messages``, Ollama's ``/api/chat``...), and
    calls an Azure ``api_base`` naming ``/openai/deployments/<name>`` as it is:
    that deployment, whatever the model says.
    """
    trimmed = base_url.rstrip("/")
    for endpoint in route.endpoints:
        if trimmed.endswith(endpoint) and len(trimmed) > len(endpoint):
            return trimmed[: -len(endpoint)], deployment
    if kind == "azure" and (named := _AZURE_DEPLOYMENT_URL.fullmatch(base_url)) is not None:
        return named["root"], named["name"]
    return base_url, deployment


def _default_name(kind: str, base_url: str | None, table: Mapping[str, Any]) -> str:
    """``type``, then ``@`` and where it runs (host, region, project/location), then the deployment."""
    where = _host(base_url) if base_url else None
    if where is None and kind == "bedrock":
        where = table.get("region")
    if where is None and kind == "vertex-ai" and "project" in table:
        where = "/".join(str(table[k]) for k in ("project", "location") if k in table)
    name = f"{kind}@{where}" if where else kind
    if kind == "azure":
        name += f"/{table['deployment']}"
    return name


def _unique_names(members: list[_Deployment]) -> list[str]:
    """One name per deployment of a model, unique, in file order.

    A ``model_info.id`` is kept as written; a default name (or a repeated id)
    gets ``-2``, ``-3``... in the order the deployments appear, so the same
    file always gives the same names. Never taken twice, a suffix tried once
    is never tried again: each base name resumes where it stopped.
    """
    taken = {m.given_name for m in members if m.given_name is not None}
    names: list[str] = []
    seen: set[str] = set()
    next_suffix: dict[str, int] = {}
    for member in members:
        wanted = member.given_name
        if wanted is not None and wanted not in seen:
            names.append(wanted)
            seen.add(wanted)
            continue
        base = wanted if wanted is not None else member.default_name
        n = next_suffix.get(base, 1)
        name = base if n == 1 else f"{base}-{n}"
        while name in seen or (name in taken and name != wanted):
            n += 1
            name = f"{base}-{n}"
        next_suffix[base] = n
        names.append(name)
        seen.add(name)
    return names


def _kind(value: object) -> str:
    """A YAML value's kind, for messages that must not show the value."""
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if value is None:
        return "null"
    return {"str": "string", "int": "number", "float": "number", "bool": "boolean"}.get(
        type(value).__name__, type(value).__name__
    )


def _shown(value: object) -> str:
    """A short value for a message (never used for secrets); containers by kind only."""
    if isinstance(value, dict | list):
        return f"a {_kind(value)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

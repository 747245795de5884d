"""The LiteLLM plugin: a Router that follows router-health, and feeds it its traffic.

One LiteLLM callback (``CustomLogger``) does both halves; docs/litellm.md,
"Feeding LiteLLM back", says how to enable it:

* ``async_filter_deployments``: of the deployments LiteLLM considers for a call,
  those router-health's routable set for the model group excludes are left out.
  Fail-open: with no fresh set (router-health down, slow, stale, or not checking
  that model) LiteLLM's list is returned unchanged, and never emptied.
* ``async_log_success_event`` / ``async_log_failure_event`` (and their sync twins):
  each call's outcome is queued for ``POST /v1/health/observations``.

Deployments are named as router-health names the same ``model_list``
(:func:`service.config.litellm.litellm_document`), and a LiteLLM deployment is
matched to its entry by ``model_info.id`` or by its ``litellm_params``. All I/O
runs on :class:`~.client.RouterHealthClient`'s thread; nothing here waits.

LiteLLM is an optional extra: it is imported only when the callback class is
first asked for, and LiteLLM's loosely typed values stay ``Any`` at that boundary.
"""

from __future__ import annotations

import datetime
import functools
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from adapters.base import FailureKind

from ..config.litellm import ENV_REFERENCE, litellm_document
from ..config.litellm_yaml import parse_yaml, read_config_file
from ..config.values import ConfigError
from .client import ClientSettings, Observation, RouterHealthClient

__all__ = ["CONFIG_ENV", "DeploymentNames", "LiteLLMPlugin", "observation_of"]

logger = logging.getLogger("router_health.integrations")

#: The LiteLLM config whose ``model_list`` names the deployments, when not given.
CONFIG_ENV: Final = "ROUTER_HEALTH_LITELLM_CONFIG"
#: (model group, deployment id) pairs remembered; deployments added at run time are few.
_MAX_LEARNED: Final = 100_000
#: Answers that say the request was wrong, not the deployment: no observation.
_CALLER_ERRORS: Final = frozenset({400, 404, 413, 422})


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str  # router-health's provider name
    given_id: str | None  # model_info.id as written
    # The entry's text litellm_params, as LiteLLM resolves them: what tells apart
    # deployments with no id. Never shown: it may hold a key.
    params: tuple[tuple[str, str], ...] = field(repr=False)


class DeploymentNames:
    """router-health's provider name of each deployment of one LiteLLM ``model_list``."""

    def __init__(self, model_list: Sequence[Any], *, env: Mapping[str, str] | None = None) -> None:
        """Raises :class:`ConfigError` where router-health would refuse the same list."""
        env = os.environ if env is None else env
        mapped = litellm_document({"model_list": list(model_list)}, env=env)
        self._groups: dict[str, list[_Entry]] = {}
        models = mapped.document.get("models", [])
        for (i, j), origin in mapped.origins.items():
            entry = model_list[origin.index]
            info = entry.get("model_info") or {}
            given = None if info.get("id") is None else str(info["id"])
            params = _text_params(entry.get("litellm_params") or {}, env)
            name = models[i]["providers"][j]["name"]
            self._groups.setdefault(origin.model_name, []).append(_Entry(name, given, params))
        self._learned: dict[tuple[str, str], str] = {}

    @classmethod
    def from_file(cls, path: str, *, env: Mapping[str, str] | None = None) -> DeploymentNames:
        """The names of a LiteLLM config file's ``model_list``. Raises :class:`ConfigError`."""
        data = parse_yaml(read_config_file(path), source=path)
        model_list = data.get("model_list") if isinstance(data, dict) else None
        if not isinstance(model_list, list):
            raise ConfigError(path, ["model_list: required, a list of deployments"])
        return cls(model_list, env=env)

    def knows(self, model_group: str) -> bool:
        return model_group in self._groups

    def name(self, model_group: str, deployment: Any) -> str | None:
        """The provider name of a LiteLLM deployment of ``model_group``; None when not one of ours.

        Matched by ``model_info.id`` when the config gives one, else by the
        entry's text ``litellm_params`` (those the deployment lacks are not
        compared); a deployment matching several entries is named by none.
        """
        deployment = _mapping(deployment)
        info = _mapping(deployment.get("model_info"))
        deployment_id = None if info.get("id") is None else str(info["id"])
        if deployment_id is not None:
            learned = self._learned.get((model_group, deployment_id))
            if learned is not None:
                return learned
        entries = self._groups.get(model_group, [])
        by_id = [e.name for e in entries if e.given_id is not None and e.given_id == deployment_id]
        found = by_id[0] if by_id else None
        if found is None:
            params = _mapping(deployment.get("litellm_params"))
            candidates = [
                e.name
                for e in entries
                if e.given_id is None
                and all(params.get(k) is None or str(params[k]) == v for k, v in e.params)
            ]
            found = candidates[0] if len(candidates) == 1 else None
        if found is not None and deployment_id is not None and len(self._learned) < _MAX_LEARNED:
            self._learned[(model_group, deployment_id)] = found
        return found


def _text_params(params: Mapping[str, Any], env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Text values, ``os.environ/NAME`` read from ``env``; one it lacks is not compared
    (LiteLLM may read it from a secret manager instead)."""
    found = []
    for key, value in params.items():
        if isinstance(value, str) and value.startswith(ENV_REFERENCE):
            value = env.get(value[len(ENV_REFERENCE) :]) or None
        if isinstance(value, str):
            found.append((key, value))
    return tuple(found)


def observation_of(
    kwargs: Any, ok: bool, start_time: Any, end_time: Any, names: DeploymentNames
) -> Observation | None:
    """A LiteLLM logging event as an observation; None when it is not one a deployment made.

    Left out: calls outside a Router (no model group), cache hits, deployments
    router-health does not name, and answers that blame the request (400,
    404, 413, 422: a bad prompt says nothing about the deployment's health).
    """
    kwargs = _mapping(kwargs)
    if kwargs.get("cache_hit") is True:
        return None
    logged = _mapping(kwargs.get("standard_logging_object"))
    params = _mapping(kwargs.get("litellm_params"))
    metadata = _mapping(params.get("metadata"))
    group = logged.get("model_group") or metadata.get("model_group")
    deployment_id = (
        logged.get("model_id")
        or kwargs.get("model_id")
        or _mapping(params.get("model_info")).get("id")
    )
    if not isinstance(group, str) or deployment_id is None:
        return None
    hidden = _mapping(logged.get("hidden_params"))
    provider = names.name(
        group,
        {
            "model_info": {"id": deployment_id},
            "litellm_params": {
                "model": hidden.get("litellm_model_name") or params.get("model"),
                "api_base": hidden.get("api_base") or params.get("api_base"),
            },
        },
    )
    if provider is None:
        return None
    status, kind = (None, None) if ok else _failure(kwargs.get("exception"))
    if status in _CALLER_ERRORS:
        return None
    return Observation(
        model=group,
        provider=provider,
        ok=ok,
        status_code=status,
        error_kind=kind,
        latency_ms=_latency_ms(start_time, end_time),
        at=_ended_at(logged.get("endTime"), end_time),
    )


def _failure(exception: Any) -> tuple[int | None, str]:
    """(HTTP status, failure kind) of a LiteLLM exception; the status only if one was answered."""
    if not isinstance(exception, BaseException):
        return None, FailureKind.EXCEPTION.value
    classes = {c.__name__ for c in type(exception).__mro__}
    if classes & {"Timeout", "APITimeoutError", "TimeoutError", "TimeoutException"}:
        return None, FailureKind.TIMEOUT.value
    # LiteLLM reports a refused connection as a 500 whose message is the OpenAI SDK's.
    if "APIConnectionError" in classes or "Connection error" in str(exception):
        return None, FailureKind.CONNECT.value
    status = getattr(exception, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        if status in (401, 403):
            return status, FailureKind.AUTH.value
        if status == 429:
            return status, FailureKind.RATE_LIMITED.value
        return status, FailureKind.HTTP_STATUS.value
    return None, FailureKind.EXCEPTION.value


def _latency_ms(start: Any, end: Any) -> float | None:
    if isinstance(start, datetime.datetime) and isinstance(end, datetime.datetime):
        seconds = (end - start).total_seconds()
    elif isinstance(start, int | float) and isinstance(end, int | float):
        seconds = float(end - start)
    else:
        return None
    return seconds * 1000 if math.isfinite(seconds) and seconds >= 0 else None


def _ended_at(logged: Any, end_time: Any) -> float:
    """Unix seconds: LiteLLM's own (its logging payload's), else its naive local end time's."""
    if isinstance(logged, int | float) and not isinstance(logged, bool) and math.isfinite(logged):
        return float(logged)
    if isinstance(end_time, datetime.datetime):
        return end_time.timestamp()
    return time.time()


def _mapping(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    dump = getattr(value, "model_dump", None)  # a pydantic Deployment
    if callable(dump):
        dumped = dump()
        return dumped if isinstance(dumped, Mapping) else {}
    return {}


class LiteLLMPlugin:
    """The plugin's logic, LiteLLM's base class aside: filter deployments, record outcomes.

    Neither method raises or waits: a failure inside is logged once and the
    call goes on as if the plugin were not there.
    """

    def __init__(
        self,
        client: RouterHealthClient,
        *,
        model_list: Sequence[Any] | None = None,
        config: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self.filtered_out = 0  # deployments left out of LiteLLM's lists
        self.unnamed = 0  # outcomes not sent: no router-health name for their deployment
        self._env = os.environ if env is None else env
        self._model_list = model_list
        self._config = config
        self._names: DeploymentNames | None = None
        self._names_tried = False
        self._names_lock = threading.Lock()
        self._warned: set[str] = set()

    @classmethod
    def from_settings(
        cls,
        *,
        model_list: Sequence[Any] | None = None,
        config: str | None = None,
        env: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> LiteLLMPlugin:
        """Settings given, else from ``ROUTER_HEALTH_*`` (see :class:`~.client.ClientSettings`)."""
        env = os.environ if env is None else env
        client = RouterHealthClient(ClientSettings.from_env(env, **settings))
        if model_list is None and config is None:
            config = env.get(CONFIG_ENV) or None
        plugin = cls(client, model_list=model_list, config=config, env=env)
        if model_list is not None or config is not None:
            plugin.names()  # a config error shows at startup, not at the first call
        return plugin

    def names(self) -> DeploymentNames | None:
        """The deployment names, read once: ``model_list``, ``config``, else the proxy's file."""
        if self._names_tried:
            return self._names
        with self._names_lock:
            if not self._names_tried:
                try:
                    self._names = self._read_names()
                except ConfigError as exc:
                    logger.warning("router-health plugin: cannot name LiteLLM's deployments, so "
                                   "it neither filters nor reports:\n%s", exc)
                self._names_tried = True
        return self._names

    def _read_names(self) -> DeploymentNames | None:
        if self._model_list is not None:
            return DeploymentNames(self._model_list, env=self._env)
        path = self._config or _proxy_config_path()
        if path is None:
            raise ConfigError(
                "router-health plugin",
                [f"no model_list: pass model_list= or config=, or export {CONFIG_ENV}=config.yaml"],
            )
        return DeploymentNames.from_file(path, env=self._env)

    def filter(self, model_group: str, deployments: list[Any]) -> list[Any]:
        """``deployments`` less those router-health excludes; unchanged when it cannot tell."""
        try:
            names = self.names()
            if names is None or not names.knows(model_group) or not deployments:
                return deployments
            named = [(d, names.name(model_group, d)) for d in deployments]  # learns the ids too
            route = self.client.route_set(model_group)
            if route is None or not route.excluded:
                return deployments
            kept = [d for d, name in named if name is None or name not in route.excluded]
            if not kept:  # the route set's panic mode prevents this; a guard all the same
                return deployments
            self.filtered_out += len(deployments) - len(kept)
            return kept
        except Exception:
            self._warn_once("filter", "filtering failed; LiteLLM's own list is used")
            return deployments

    def record(self, kwargs: Any, ok: bool, start_time: Any, end_time: Any) -> None:
        """Queue one call's outcome for router-health (never raises, never waits)."""
        try:
            names = self.names()
            if names is None or self.client.settings.observe_token is None:
                return
            observation = observation_of(kwargs, ok, start_time, end_time, names)
            if observation is None:
                self.unnamed += 1
                return
            self.client.report(observation)
        except Exception:
            self._warn_once("record", "an outcome could not be read; it is not reported")

    def close(self) -> None:
        self.client.close()

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            logger.warning("router-health plugin: %s", message, exc_info=True)


def _proxy_config_path() -> str | None:
    """The config file a running LiteLLM proxy was started with, if this is one."""
    proxy = sys.modules.get("litellm.proxy.proxy_server")
    path = getattr(proxy, "user_config_file_path", None)
    return path if isinstance(path, str) and path else None


# -- the LiteLLM callback: built on first use, so LiteLLM stays an optional extra ----------


@functools.cache
def _callback_class() -> type[Any]:
    try:
        from litellm.integrations.custom_logger import CustomLogger
    except ImportError as exc:
        raise ImportError(
            "router-health's LiteLLM plugin needs LiteLLM: pip install 'router-health[litellm]'"
        ) from exc

    class RouterHealthCallback(CustomLogger):  # type: ignore[misc]  # Any: mypy skips LiteLLM
        """Routes a LiteLLM Router by router-health's routable sets and reports its traffic.

        ``RouterHealthCallback(model_list=..., url=..., observe_token=...)``;
        every setting not given is read from ``ROUTER_HEALTH_<NAME>``.
        """

        def __init__(
            self,
            *,
            model_list: Sequence[Any] | None = None,
            config: str | None = None,
            env: Mapping[str, str] | None = None,
            **settings: Any,
        ) -> None:
            super().__init__()
            self.router_health = LiteLLMPlugin.from_settings(
                model_list=model_list, config=config, env=env, **settings
            )

        async def async_filter_deployments(
            self,
            model: str,
            healthy_deployments: list[Any],
            messages: Any,
            request_kwargs: Any = None,
            parent_otel_span: Any = None,
        ) -> list[Any]:
            return self.router_health.filter(model, healthy_deployments)

        async def async_log_success_event(
            self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            self.router_health.record(kwargs, True, start_time, end_time)

        async def async_log_failure_event(
            self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            self.router_health.record(kwargs, False, start_time, end_time)

        # A sync completion() logs through these instead (an async one never does).
        def log_success_event(
            self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            self.router_health.record(kwargs, True, start_time, end_time)

        def log_failure_event(
            self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            self.router_health.record(kwargs, False, start_time, end_time)

        def close(self) -> None:
            """Send what is queued (one try), then stop the plugin's thread."""
            self.router_health.close()

    RouterHealthCallback.__qualname__ = "RouterHealthCallback"  # as if defined at module level
    return RouterHealthCallback


@functools.cache
def _proxy_callback() -> Any:
    callback: Any = _callback_class()()
    return callback


def __getattr__(name: str) -> Any:
    # ``RouterHealthCallback``: the class, for a Python Router. ``proxy_callback``:
    # one instance configured from the environment, for a proxy's config.yaml
    # (``callbacks: service.integrations.litellm.proxy_callback``).
    if name == "RouterHealthCallback":
        return _callback_class()
    if name == "proxy_callback":
        return _proxy_callback()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

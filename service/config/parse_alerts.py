"""``[[alerts]]`` -> a tuple of :class:`~.alerts.AlertChannelConfig`, every problem reported.

Each entry's problems are reported under ``alerts[i].<key>``; the URL (given
as ``url`` or through ``url_env``) is never echoed, only its scheme. Checked
once the models are read, so ``models`` and ``tags`` can be held against
them: a filter that selects no adapter is a channel that can never speak.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from adapters.base import Secret

from .alerts import (
    APPRISE_MISSING,
    DEFAULT_EVENTS,
    DEFAULT_TIMEOUT,
    AlertChannelConfig,
    alert_problems,
    apprise_available,
    display_alert_url,
)
from .checks import ChecksConfig
from .models import ModelConfig
from .parse_validator import KeyTypes, Validator
from .values import forbidden_target

__all__ = ["MAX_CHANNELS", "parse_alerts"]

#: More channels than this is a config written by a loop, not by a person.
MAX_CHANNELS: Final = 32

_KEYS: KeyTypes = {
    "name": str,
    "on": list,
    "models": list,
    "tags": list,
    "min_duration": (int, float),
    "repeat_every": (int, float),
    "digest": (int, float),
    "title": str,
    "timeout": (int, float),
}
_EXAMPLE = (
    '[[alerts]]\nurl_env = "SLACK_ALERTS_URL"   # e.g. slack://TokenA/TokenB/TokenC\n'
    'on = ["down", "recovered"]'
)


def parse_alerts(
    validator: Validator,
    data: Mapping[str, Any],
    checks: ChecksConfig,
    models: Sequence[ModelConfig],
    model_names: Sequence[str],
) -> tuple[AlertChannelConfig, ...]:
    """Every ``[[alerts]]`` entry; ``model_names`` are the names the document writes."""
    if "alerts" not in data:
        return ()
    entries = data["alerts"]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        validator.problem(
            "alerts", f"must be an array of tables, one per channel, e.g.\n{_EXAMPLE}"
        )
        return ()
    if not entries:
        return ()
    if len(entries) > MAX_CHANNELS:
        validator.problem("alerts", f"at most {MAX_CHANNELS} channels, got {len(entries)}")
        return ()
    before = len(validator.problems)
    if not checks.background_enabled:
        validator.problem(
            "alerts",
            "alerts follow the transitions of background checks: set [checks] interval > 0, "
            "or remove [[alerts]]",
        )
    installed = apprise_available()
    if not installed:
        validator.problem("alerts", APPRISE_MISSING)
    clean = len(validator.problems) == 0  # so "selects no adapter" is not a knock-on error
    channels: list[AlertChannelConfig] = []
    names: dict[str, int] = {}
    for index, entry in enumerate(entries):
        channel = _channel(validator, entry, index, model_names, check_url=installed)
        if channel is None:
            continue
        if channel.name in names:
            validator.problem(
                f"alerts[{index}].name",
                f"{channel.name!r} is already the name of alerts[{names[channel.name]}]: "
                "names label logs and metrics, so give each channel its own",
            )
            continue
        names[channel.name] = index
        if clean and not _selects_any(channel, models):
            among = f"models {list(channel.models)}" if channel.models else "any model"
            validator.problem(
                f"alerts[{index}]",
                f"no adapter of {among} carries every tag of {list(channel.tags)}, so this "
                "channel would never send anything: fix models / tags, or remove the entry",
            )
            continue
        channels.append(channel)
    if len(validator.problems) > before:
        return ()
    return tuple(channels)


def _channel(
    validator: Validator,
    entry: Mapping[str, Any],
    index: int,
    model_names: Sequence[str],
    *,
    check_url: bool,
) -> AlertChannelConfig | None:
    path = f"alerts[{index}]"
    before = len(validator.problems)
    # url and url_env are checked here, not by section(): a wrong type must not echo them.
    values = validator.section(
        {path: {k: v for k, v in entry.items() if k not in ("url", "url_env")}}, path, _KEYS,
    )
    for key in ("url", "url_env"):
        if key in entry and not isinstance(entry[key], str):
            validator.problem(f"{path}.{key}", f"must be a string, got a {type(entry[key]).__name__}")
    if "url" not in entry and "url_env" not in entry:
        validator.problem(
            path,
            "needs url_env (the name of an environment variable holding the channel's Apprise "
            'URL, e.g. url_env = "SLACK_ALERTS_URL") or url',
        )
    found = validator.literal_or_env(
        entry, "url", path, noun="Apprise URL", example="slack://TokenA/TokenB/TokenC",
        otherwise=", or remove this [[alerts]] entry",
    )
    url, url_path = (found[0], found[1]) if found else (None, f"{path}.url")
    options = {
        "name": values.get("name", path),
        "on": values.get("on", list(DEFAULT_EVENTS)),
        "models": values.get("models", []),
        "tags": values.get("tags", []),
        "min_duration": values.get("min_duration", 0.0),
        "repeat_every": values.get("repeat_every", 0.0),
        "digest": values.get("digest", 0.0),
        "title": values.get("title", ""),
        "timeout": values.get("timeout", DEFAULT_TIMEOUT),
    }
    problems = alert_problems(url if url is not None else "", **options, check_url=check_url)
    for key, message in problems.items():
        if key == "url":
            if url is not None:  # else: already told what is missing
                validator.problem(url_path, message)
        else:
            validator.problem(f"{path}.{key}", message)
    unknown = [m for m in options["models"] if isinstance(m, str) and m not in model_names]
    if "models" not in problems and unknown:
        validator.problem(
            f"{path}.models",
            f"{', '.join(map(repr, unknown))} {'is not a' if len(unknown) == 1 else 'are not'} "
            f"configured model{'' if len(unknown) == 1 else 's'}; the models are: "
            + ", ".join(map(repr, model_names)),
        )
    if url is not None and "url" not in problems and not validator.allow_link_local:
        # Not validator.target(): its message shows the path, where Apprise keeps tokens.
        target = forbidden_target(url)
        if target is not None:
            validator.problem(
                url_path,
                f"{target}, got {display_alert_url(url)!r}; refused because a metadata service "
                "hands the machine's cloud credentials to whoever asks: send alerts to the "
                "service's real address, or set [checks] allow_link_local = true if one really "
                "listens there",
            )
    if len(validator.problems) > before or url is None:
        return None
    return AlertChannelConfig(
        url=Secret(url),
        name=options["name"],
        on=tuple(options["on"]),
        models=tuple(options["models"]),
        tags=tuple(options["tags"]),
        min_duration=float(options["min_duration"]),
        repeat_every=float(options["repeat_every"]),
        digest=float(options["digest"]),
        title=options["title"],
        timeout=float(options["timeout"]),
        check_url=False,  # just checked
    )


def _selects_any(channel: AlertChannelConfig, models: Sequence[ModelConfig]) -> bool:
    return any(
        channel.wants(model.name, frozenset(model.effective_tags(provider)))
        for model in models
        for provider in model.providers
    )

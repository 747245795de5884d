"""The validator every config parser shares: it collects problems, and checks generic values.

A parser reports a problem and moves on (``Validator.problem``), so a config
with five mistakes is told all five at once. The checks here are the ones
every table uses: key names and types, seconds, tags, a secret given
literally or through an environment variable, the background schedule,
URLs and names; each table's own rules live with its parser.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from .checks import HISTORY_LENGTH, SCHEDULE_KEYS, TRANSIENT_KINDS
from .values import (
    ENV_NAME,
    MAX_TAGS,
    TAG_ACCEPTED,
    display_url,
    finite,
    forbidden_target,
    label,
    name_problem,
    seconds_problem,
    tag_problem,
    url_problem,
)

__all__ = ["KeyTypes", "Validator", "looks_like_a_secret"]

#: A table's keys -> the TOML type(s) each takes.
KeyTypes = dict[str, type | tuple[type, ...]]

_SCHEDULE_TYPES: KeyTypes = {
    "interval": (int, float),
    "jitter": (int, float),
    "unhealthy_interval": (int, float),
    "healthy_threshold": int,
    "unhealthy_threshold": int,
    "max_age": (int, float),
    "stale_while_revalidate": (int, float),
    "transient": list,
    "transient_limit": int,
    "latency_slo_ms": (int, float),
    "slo_percentile": (int, float),
    "slo_window": int,
    "passive_window": (int, float),
    "passive_error_rate": (int, float),
}
#: Keys whose values are secrets: a message about them never shows the value.
#: (A ``*_env`` key holds a name, but the usual mistake is pasting the secret there.)
_SECRET_KEYS = frozenset(
    {
        "api_key", "auth_token", "observe_token", "token", "url", "redis_url",
        "api_key_env", "auth_token_env", "observe_token_env", "token_env", "redis_url_env",
    }
)


def _type_name(expected: type | tuple[type, ...]) -> str:
    if expected == (int, float):
        return "a number"
    return {bool: "true or false", int: "an integer", str: "a string", list: "a list"}.get(
        expected if isinstance(expected, type) else object, "a value"
    )


def looks_like_a_secret(name: str) -> bool:
    """A "variable name" long and mixed enough to be a pasted key (never shown then).

    Variable names are short words, mostly upper case (``OPENAI_API_KEY``);
    generated keys and tokens are long runs of mixed-case letters and digits.
    """
    return (
        len(name) >= 20
        and any(c.islower() for c in name)
        and any(c.isdigit() for c in name)
        and any(c.isupper() for c in name)
    )


class Validator:
    """The problems found so far, and the checks of values every table uses."""

    def __init__(self, source: str, env: Mapping[str, str]) -> None:
        self.source = source
        self.env = env
        self.problems: list[str] = []
        #: ``[checks] allow_link_local``: read first, it rules every URL after.
        self.allow_link_local = False

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def unknown_keys(self, table: Mapping[str, Any], allowed: set[str], path: str) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else (
                    f"; allowed: {', '.join(sorted(allowed))}"
                )
                shown_key = label(key)  # a key may hold a newline, too
                self.problem(f"{path}.{shown_key}" if path else shown_key, f"unknown key{hint}")

    def typed(
        self, table: Mapping[str, Any], key: str, expected: type | tuple[type, ...], path: str
    ) -> Any:
        value = table[key]
        # bool is an int in Python; a timeout of `true` is still a mistake.
        ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
        if not ok:
            shown = f"a {type(value).__name__}" if key in _SECRET_KEYS else repr(value)
            self.problem(f"{path}.{key}", f"must be {_type_name(expected)}, got {shown}")
            return None
        return value

    def tags(self, table: Mapping[str, Any], path: str) -> tuple[str, ...] | None:
        """``tags = [...]``: () when absent, None (reported) when invalid."""
        if "tags" not in table:
            return ()
        value = table["tags"]
        path = f"{path}.tags"
        if not isinstance(value, list):
            self.problem(path, f"must be {TAG_ACCEPTED}, got a {type(value).__name__}")
            return None
        if len(value) > MAX_TAGS:
            self.problem(path, f"at most {MAX_TAGS} tags, got {len(value)}")
            return None
        for tag in value:
            problem = tag_problem(tag)
            if problem is not None:
                self.problem(path, f"{problem}; expected {TAG_ACCEPTED}")
                return None
        duplicates = sorted({t for t in value if value.count(t) > 1})
        if duplicates:
            self.problem(path, f"duplicate tag(s) {', '.join(map(repr, duplicates))}; list each once")
            return None
        return tuple(value)

    def seconds(self, value: Any, path: str, *, zero_ok: bool = False) -> float | None:
        if value is None:
            return None
        problem = seconds_problem(value, zero_ok=zero_ok)
        if problem is not None:
            self.problem(path, problem)
            return None
        return float(value)

    def literal_or_env(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        *,
        noun: str,
        example: str = "...",
        otherwise: str = "",
    ) -> tuple[str, str, str] | None:
        """A secret given as ``key`` or in the environment variable ``<key>_env`` names.

        Returns (value, the key path it came from, how to name it in a
        message), or None when neither is set or on a problem (reported).
        The value is never echoed: the usual mistake is pasting the secret
        itself into ``<key>_env``.
        """
        env_key = f"{key}_env"
        literal, env_name = table.get(key), table.get(env_key)
        if not isinstance(literal, str | None) or not isinstance(env_name, str | None):
            return None  # already reported as a type problem
        if literal is not None and env_name is not None:
            self.problem(path, f"set {env_key} or {key}, not both")
            return None
        if env_name is not None:
            where = f"{path}.{env_key}"
            if not ENV_NAME.fullmatch(env_name):
                self.problem(
                    where,
                    "is not an environment variable name (letters, digits, _); it looks like "
                    f"a {noun} was pasted here — put the {noun} in the environment and its name "
                    "here",
                )
                return None
            value = self.env.get(env_name)
            if not value:
                if looks_like_a_secret(env_name):
                    self.problem(
                        where,
                        f"names no environment variable that is set (name not shown: it looks "
                        f"like a {noun}); put the {noun} in the environment and its name here",
                    )
                else:
                    self.problem(
                        where,
                        f"environment variable {env_name} is not set (or empty); "
                        f"export {env_name}={example} before starting{otherwise}",
                    )
                return None
            return value, where, f"the {noun} in {env_name}"
        if literal is not None:
            where = f"{path}.{key}"
            if not literal:
                self.problem(where, f"is empty: write the {noun}, or remove {key}")
                return None
            return literal, where, f"the {noun}"
        return None

    def section(
        self,
        data: Mapping[str, Any],
        name: str,
        keys: KeyTypes,
        also_allowed: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        table = data.get(name, {})
        if not isinstance(table, dict):
            self.problem(name, "must be a table, e.g. [" + name + "]")
            return {}
        self.unknown_keys(table, {*keys, *also_allowed}, name)
        values: dict[str, Any] = {}
        for key, expected in keys.items():
            if key in table:
                value = self.typed(table, key, expected, name)
                if value is not None:
                    values[key] = value
        return values

    def schedule(self, table: Mapping[str, Any], path: str) -> dict[str, Any] | None:
        """The schedule keys present in ``table``, validated; None (reported) when invalid."""
        values: dict[str, Any] = {}
        before = len(self.problems)
        for key in SCHEDULE_KEYS:
            if key not in table:
                continue
            value = self.typed(table, key, _SCHEDULE_TYPES[key], path)
            if value is None:
                continue
            where = f"{path}.{key}"
            if key in ("healthy_threshold", "unhealthy_threshold", "slo_window"):
                if value < 1:
                    what = "results in the window" if key == "slo_window" else "consecutive results"
                    self.problem(where, f"must be an integer >= 1 ({what}), got {value}")
                    continue
                if key == "slo_window" and value > HISTORY_LENGTH:
                    self.problem(
                        where,
                        f"must be at most {HISTORY_LENGTH} (the results kept per adapter), got {value}",
                    )
                    continue
            elif key == "transient_limit":
                if value < 0:
                    self.problem(
                        where, f"must be an integer >= 0 (0 = never escalate), got {value}"
                    )
                    continue
            elif key == "transient":
                value = self.transient(value, where)
                if value is None:
                    continue
            elif key in ("jitter", "passive_error_rate"):
                if not (finite(value) and 0 <= value <= 1):
                    what = "of the interval " if key == "jitter" else "of requests "
                    self.problem(where, f"must be a fraction {what}from 0 to 1, got {value!r}")
                    continue
                value = float(value)
            elif key == "slo_percentile":
                if not (finite(value) and 0 < value <= 100):
                    self.problem(where, f"must be a percentile above 0 and up to 100, got {value!r}")
                    continue
                value = float(value)
            elif key == "latency_slo_ms":
                if not (finite(value) and value > 0):
                    self.problem(
                        where, f"must be a finite number of milliseconds > 0, got {value!r}"
                    )
                    continue
                value = float(value)
            else:
                zero_ok = key in ("interval", "stale_while_revalidate")
                value = self.seconds(value, where, zero_ok=zero_ok)
                if value is None:
                    continue
            values[key] = value
        return None if len(self.problems) > before else values

    def transient(self, value: list[Any], path: str) -> tuple[str, ...] | None:
        accepted = f"a list of {' and/or '.join(map(repr, TRANSIENT_KINDS))}"
        bad = [v for v in value if v not in TRANSIENT_KINDS]
        if bad:
            self.problem(path, f"unknown failure kind {bad[0]!r}; expected {accepted}")
            return None
        if len(set(value)) != len(value):
            self.problem(path, f"list each kind once; expected {accepted}")
            return None
        return tuple(value)

    def base_url(self, value: str, path: str, *, what: str) -> str | None:
        problem = url_problem(value)
        if problem:
            self.problem(path, f"{problem}, got {display_url(value)!r}")
            return None
        return value if self.target(value, path, what=what) else None

    def target(self, url: str, path: str, *, what: str) -> bool:
        """False (reported) when ``url`` is a metadata or link-local address not allowed."""
        problem = None if self.allow_link_local else forbidden_target(url)
        if problem is None:
            return True
        self.problem(
            path,
            f"{problem}, got {display_url(url)!r}; refused because a metadata service hands "
            f"the machine's cloud credentials to whoever asks: {what} at its real address, "
            "or set [checks] allow_link_local = true if one really listens there",
        )
        return False

    def name(self, value: str, path: str) -> bool:
        """False (reported) when ``value`` has control, format or bidi characters."""
        problem = name_problem(value)
        if problem is None:
            return True
        self.problem(path, problem)
        return False


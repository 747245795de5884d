"""``[status_page]``: the public page at ``GET /status`` and the badges at ``/badge/{model}.svg``.

Both are public (no token, whatever ``[server] auth_token`` says), so the
config says which models they show: a model left out of ``models`` is absent
from the page and its badge answers 404, as if it did not exist. On by
default: the page only tells what a load balancer may already ask
(``/v1/health/``'s summary), and its history (the uptime bars, incidents)
needs ``[storage]``; without storage it says so and shows the current status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .parse_validator import KeyTypes, Validator
from .values import name_problem

__all__ = [
    "DEFAULT_TITLE",
    "MAX_INCIDENT_DAYS",
    "MAX_TITLE_CHARS",
    "StatusPageConfig",
    "parse_status_page",
    "status_page_problems",
]

DEFAULT_TITLE: Final = "Service status"
#: The page's title is a heading, not a paragraph.
MAX_TITLE_CHARS: Final = 200
#: Incidents come from the transitions storage keeps (``rollup_retention``,
#: 90 days by default); a year is the longest list that still reads as "recent".
MAX_INCIDENT_DAYS: Final = 365

_KEYS: KeyTypes = {"enabled": bool, "title": str, "models": list, "incident_days": int}


def status_page_problems(
    title: object, models: object, incident_days: object, known: Sequence[str] | None = None
) -> dict[str, str]:
    """What is wrong with these ``[status_page]`` values: key -> message (empty when all fine).

    ``known``: the configured model names, when they are known (``models``
    must name some of them).
    """
    problems: dict[str, str] = {}
    if not isinstance(title, str):
        problems["title"] = f"must be a string, got {type(title).__name__}"
    elif not title.strip():
        problems["title"] = f'is empty: write the page\'s heading, e.g. "{DEFAULT_TITLE}"'
    elif len(title) > MAX_TITLE_CHARS:
        problems["title"] = f"must be at most {MAX_TITLE_CHARS} characters, got {len(title)}"
    elif (problem := name_problem(title)) is not None:
        problems["title"] = problem
    if isinstance(incident_days, bool) or not isinstance(incident_days, int):
        problems["incident_days"] = (
            f"must be a whole number of days, got {type(incident_days).__name__}"
        )
    elif not 1 <= incident_days <= MAX_INCIDENT_DAYS:
        problems["incident_days"] = (
            f"must be from 1 to {MAX_INCIDENT_DAYS} days, got {incident_days}"
        )
    if models is not None:
        problem = _models_problem(models, known)
        if problem is not None:
            problems["models"] = problem
    return problems


def _models_problem(models: object, known: Sequence[str] | None) -> str | None:
    if not isinstance(models, list | tuple):
        return f"must be a list of model names, got {type(models).__name__}"
    if not models:
        return "is empty: list the models to show, remove models to show every one, or set " \
            "enabled = false"
    for name in models:
        if not isinstance(name, str):
            return f"must be a list of model names (strings), got {name!r}"
    duplicates = sorted({name for name in models if models.count(name) > 1})
    if duplicates:
        return f"lists {', '.join(map(repr, duplicates))} more than once; list each model once"
    if known is not None:
        unknown = [name for name in models if name not in known]
        if unknown:
            return (
                f"{', '.join(map(repr, unknown))} {'is not a' if len(unknown) == 1 else 'are not'}"
                f" configured model{'' if len(unknown) == 1 else 's'}; the models are: "
                + ", ".join(map(repr, known))
            )
    return None


@dataclass(frozen=True, slots=True)
class StatusPageConfig:
    """``[status_page]``: what ``GET /status`` and ``GET /badge/{model}.svg`` show."""

    enabled: bool = True
    title: str = DEFAULT_TITLE
    #: The models shown, in this order; None: every configured model, in config order.
    models: tuple[str, ...] | None = None
    incident_days: int = 14  # incidents that started this many days ago or later are listed

    def __post_init__(self) -> None:
        models = None if self.models is None else list(self.models)
        problems = status_page_problems(self.title, models, self.incident_days)
        if problems:
            raise ValueError(
                "; ".join(f"status_page {key} {message}" for key, message in problems.items())
            )

    def shown(self, configured: Sequence[str]) -> tuple[str, ...]:
        """The models the page shows, given the configured ones (names no longer there left out)."""
        if self.models is None:
            return tuple(configured)
        present = set(configured)
        return tuple(name for name in self.models if name in present)


def parse_status_page(
    validator: Validator, data: Mapping[str, Any], models: Sequence[str]
) -> StatusPageConfig:
    """``[status_page]`` (on by default); ``models`` are the configured model names."""
    if "status_page" not in data:
        return StatusPageConfig()
    values = validator.section(data, "status_page", _KEYS)
    if not isinstance(data["status_page"], dict):
        return StatusPageConfig()
    before = len(validator.problems)
    defaults = StatusPageConfig()
    problems = status_page_problems(
        values.get("title", defaults.title),
        values.get("models"),
        values.get("incident_days", defaults.incident_days),
        known=models,
    )
    for key, message in problems.items():
        validator.problem(f"status_page.{key}", message)
    if len(validator.problems) > before:
        return StatusPageConfig()
    if "models" in values:
        values["models"] = tuple(values["models"])
    return StatusPageConfig(**values)

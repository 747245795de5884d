"""``[storage]``: where results and transitions are kept across restarts (SQLite).

On by default wherever background checks run (they are what it stores):
``enabled`` is None ("auto") unless set; ``enabled = false`` turns it off,
``enabled = true`` without background checks is a config error.
``path = ":memory:"`` keeps everything in the process only. A path that
cannot be written never stops the service: checks go on, ``/readyz`` and
``/metrics`` say storage is failing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from .values import seconds_problem

__all__ = ["MEMORY", "StorageConfig", "default_storage_path", "storage_problems"]

#: A database that lives in the process only (gone at exit).
MEMORY: Final = ":memory:"


def default_storage_path() -> str:
    """``$XDG_STATE_HOME/router-health/health.db``, else ``~/.local/state/router-health/health.db``."""
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(state_home) / "router-health" / "health.db")


def storage_problems(
    path: object, raw_retention: object, rollup_retention: object,
    flush_interval: object, max_pending: object,
) -> dict[str, str]:
    """What is wrong with these ``[storage]`` values: key -> message (empty when all fine)."""
    problems: dict[str, str] = {}
    if not isinstance(path, str) or not path or "\x00" in path:
        problems["path"] = f'must be a file path or ":memory:", got {path!r}'
    for key, value in (
        ("raw_retention", raw_retention),
        ("rollup_retention", rollup_retention),
        ("flush_interval", flush_interval),
    ):
        problem = seconds_problem(value)
        if problem is not None:
            problems[key] = problem
    if isinstance(max_pending, bool) or not isinstance(max_pending, int):
        problems["max_pending"] = f"must be an integer, got {type(max_pending).__name__}"
    elif max_pending < 1:
        problems["max_pending"] = f"must be at least 1, got {max_pending}"
    if not problems and rollup_retention < raw_retention:  # type: ignore[operator]
        problems["rollup_retention"] = (
            f"must be at least raw_retention ({raw_retention:g} s): rollups replace the raw "
            f"results once those are pruned, got {rollup_retention:g}"
        )
    return problems


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """``[storage]``: the SQLite database results and transitions are written to."""

    enabled: bool | None = None  # None: on exactly when background checks run
    path: str = field(default_factory=default_storage_path)  # or MEMORY
    raw_retention: float = 48 * 3600.0  # seconds raw results are kept
    rollup_retention: float = 90 * 86400.0  # seconds minute/hour rollups are kept
    flush_interval: float = 1.0  # seconds between two write transactions
    max_pending: int = 10_000  # rows waiting to be written at most; more are dropped, counted

    def active(self, background: bool) -> bool:
        """Whether storage runs, given whether background checks do."""
        return background if self.enabled is None else self.enabled and background

    def __post_init__(self) -> None:
        problems = storage_problems(
            self.path, self.raw_retention, self.rollup_retention,
            self.flush_interval, self.max_pending,
        )
        if problems:
            raise ValueError(
                "; ".join(f"storage {key} {message}" for key, message in problems.items())
            )

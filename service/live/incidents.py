"""Incidents from transitions: :func:`incidents_of`.

Pure (no sqlite, no trio), tested against hand-written transition lists;
:meth:`~service.live.storage.Storage.incidents` reads the transitions.

Per model, an incident starts when one of its adapters' reported level goes
down and ends when none of the adapters that went down during it is still
down (so while it is open, every adapter going down joins it). It is
*major* if at some moment every checked provider of the model (a
configured one whose level is known from a transition, and not
``unsupported``: such a provider is never checked) was down at once, else
*partial*. Its failures are the failure kinds of the transitions into
down. A restart publishes no transition (the state is restored from
storage), so an incident open across one continues until its adapters
recover. Adapters no longer configured are left out.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from .uptime import Incident

__all__ = ["Change", "incidents_of"]


@dataclass(frozen=True, slots=True)
class Change:
    """One adapter's reported level changed at ``at`` (unix seconds)."""

    provider: str
    at: float
    down: bool  # the new level is down (unhealthy or timeout)
    failure: str | None = None  # the failure kind of the result that made the change
    checked: bool = True  # False: the new level is unsupported (the provider is never checked)


@dataclass(slots=True)
class _Open:
    started_at: float
    adapters: set[str]
    failures: set[str]
    major: bool


def incidents_of(
    model: str, changes: Iterable[Change], configured: Collection[str], *, now: float
) -> list[Incident]:
    """The incidents of ``model`` from its adapters' ``changes`` (any order), oldest first.

    ``configured``: its providers today; changes of others are left out.
    """
    found: list[Incident] = []
    down: set[str] = set()
    known: set[str] = set()
    current: _Open | None = None
    for change in sorted(changes, key=lambda c: c.at):
        if change.provider not in configured:
            continue
        if change.checked:
            known.add(change.provider)
        else:
            known.discard(change.provider)
        if change.down and change.checked:
            down.add(change.provider)
            if current is None:
                current = _Open(change.at, set(), set(), False)
            current.adapters.add(change.provider)
            if change.failure is not None:
                current.failures.add(change.failure)
        else:
            down.discard(change.provider)
            if current is not None and not down & current.adapters:
                found.append(_closed(model, current, change.at, now))
                current = None
        if current is not None and down >= known:  # known shrinks too: not only on a down
            current.major = True
    if current is not None:
        found.append(_closed(model, current, None, now))
    return found


def _closed(model: str, incident: _Open, ended_at: float | None, now: float) -> Incident:
    end = now if ended_at is None else ended_at
    return Incident(
        model=model,
        started_at=incident.started_at,
        ended_at=ended_at,
        duration_seconds=max(0.0, end - incident.started_at),
        severity="major" if incident.major else "partial",
        failures=tuple(sorted(incident.failures)),
        adapters=tuple(sorted(incident.adapters)),
    )

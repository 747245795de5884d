"""Which transitions become alerts, and when: de-flapping, reminders and digests, per channel.

:class:`ChannelRules` is bookkeeping only: it is handed every transition a
channel wants and the time (the notifier passes Trio's clock, so MockClock
tests drive it), and hands back :class:`Batch` es, each one message to send.
Nothing here sleeps, sends or logs.

Per adapter a channel follows at most one *spell* of trouble:

* **down** (the adapter's reported level is down): announced once it has
  lasted ``min_duration`` (event ``down``); then, while it lasts, a
  ``still_down`` reminder every ``repeat_every`` seconds (0 = none). Ending
  before ``min_duration`` it was a flap: nothing at all is sent;
* **degraded** (only when the channel is ``on`` it): announced the same way
  (event ``degraded``), never repeated.

An announced spell that ends with the adapter up again (healthy, or degraded
after being down) gives a ``recovered`` event carrying the spell's duration;
a degraded spell that turns into a down one just ends (the down spell takes
over, with its own ``min_duration``). Events whose kind the channel is not
``on`` are not made (``still_down`` goes with ``down``), but spells are still
followed, so ``on = ["recovered"]`` hears only of recoveries from announced outages.

Across a restart (storage restores each adapter's last verdict, silently)
the notifier hands the restored spells to :meth:`ChannelRules.resume`, with
the time each began: the spell goes on as if the process had never stopped,
except that one already past ``min_duration`` is taken as announced (see there).

With ``digest`` > 0 the first event opens a window of that many seconds and
everything made until it closes goes out as one batch (the first
:data:`MAX_DIGEST_EVENTS`, then a count of the rest); with 0 every event is a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Final

from ..config.alerts import AlertChannelConfig
from ..engine.report import ProbeResult, ProbeStatus
from .state import Transition, level

__all__ = ["EVENT_KINDS", "MAX_DIGEST_EVENTS", "AlertEvent", "Batch", "ChannelRules"]

#: Every kind of event, and the ``on`` entry that asks for it.
EVENT_KINDS: Final = {
    "down": "down",
    "still_down": "down",
    "recovered": "recovered",
    "degraded": "degraded",
}
#: Events one digest lists at most; the rest are counted.
MAX_DIGEST_EVENTS: Final = 1000

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """Something a channel is told about one adapter."""

    kind: str  # a key of EVENT_KINDS
    model: str
    provider: str
    status: ProbeStatus  # the adapter's reported status when the event was made
    spell: str  # "down" or "degraded": what the adapter was (recovered: what it recovered from)
    started_at: float  # unix time the spell began (the transition's result)
    at: float  # unix time of the event
    duration: float  # seconds from started_at to at
    failure: str | None = None  # the failure kind that started the spell
    error: str | None = None  # what the result (or the latency SLO) said, redacted


@dataclass(frozen=True, slots=True)
class Batch:
    """The events of one message, oldest first; ``omitted`` more were left out of a digest."""

    events: tuple[AlertEvent, ...]
    omitted: int = 0


@dataclass(slots=True)
class _Spell:
    kind: str  # "down" or "degraded"
    started: float  # clock
    started_at: float  # unix
    status: ProbeStatus
    failure: str | None
    error: str | None
    due: float  # clock: when it is announced, then when the next reminder is; inf: never
    announced: bool = False

    def event(self, kind: str, now: float, status: ProbeStatus | None = None) -> AlertEvent:
        return AlertEvent(
            kind=kind,
            model="",
            provider="",
            status=self.status if status is None else status,
            spell=self.kind,
            started_at=self.started_at,
            at=self.started_at + (now - self.started),
            duration=max(now - self.started, 0.0),
            failure=self.failure,
            error=self.error,
        )


@dataclass(slots=True)
class ChannelRules:
    """One channel's spells, open digest and batches ready to send (see the module doc)."""

    config: AlertChannelConfig
    _spells: dict[Key, _Spell] = field(default_factory=dict)
    _digest: list[AlertEvent] = field(default_factory=list)
    _digest_omitted: int = 0
    _digest_closes: float = math.inf
    _ready: list[Batch] = field(default_factory=list)

    @property
    def follows_down(self) -> bool:
        return "down" in self.config.on or "recovered" in self.config.on

    def transition(self, transition: Transition, now: float, note: str | None = None) -> None:
        """Take in one of the channel's transitions at ``now`` (``note``: why it is degraded)."""
        key = (transition.model, transition.provider)
        new = level(transition.current)
        spell = self._spells.get(key)
        if spell is not None and spell.kind == new:
            return
        result = transition.result
        if spell is not None:
            del self._spells[key]
            if spell.announced and new != "down" and (spell.kind == "down" or new == "healthy"):
                self._emit(key, spell.event("recovered", now, transition.current), now)
        if self._follows(new):
            error = result.error
            if note is not None:
                error = note if error is None else f"{error}; {note}"
            self._spells[key] = _Spell(
                kind=new,
                started=now,
                started_at=result.checked_at,
                status=transition.current,
                failure=None if result.failure is None else result.failure.value,
                error=error,
                due=now + self.config.min_duration,
            )
            if self.config.min_duration == 0:
                self.advance(now)

    def resume(
        self, key: Key, status: ProbeStatus, result: ProbeResult, started: float,
        started_at: float, now: float,
    ) -> bool:
        """Follow a spell already under way at start (restored after a restart); whether it does.

        ``status``: the adapter's restored reported status; ``result``: its
        restored verdict; ``started`` / ``started_at``: when the spell began
        (clock / unix), before this process started. A spell younger than
        ``min_duration`` is announced when it reaches it, as if the process
        had never stopped. An older one is taken as announced before the
        restart (the old process may or may not have: a duplicate page on
        every rolling deploy would be worse than a missed one): nothing is
        sent now, its reminders keep their schedule from ``started`` and its
        end sends ``recovered`` with the whole duration.
        """
        kind = level(status)
        if key in self._spells or not self._follows(kind):
            return False
        spell = _Spell(
            kind=kind,
            started=started,
            started_at=started_at,
            status=status,
            failure=None if result.failure is None else result.failure.value,
            error=result.error,
            due=started + self.config.min_duration,
        )
        if spell.due <= now:
            spell.announced = True
            if self._reminds(spell):
                every = self.config.repeat_every
                spell.due += (math.floor((now - spell.due) / every) + 1) * every
            else:
                spell.due = math.inf
        self._spells[key] = spell
        return True

    def _follows(self, kind: str) -> bool:
        return (kind == "down" and self.follows_down) or (
            kind == "degraded" and "degraded" in self.config.on
        )

    def _reminds(self, spell: _Spell) -> bool:
        return spell.kind == "down" and self.config.repeat_every > 0 and "down" in self.config.on

    def advance(self, now: float) -> None:
        """Announce spells that lasted ``min_duration``, remind, close a digest that is due."""
        due = sorted(
            ((spell.due, key) for key, spell in self._spells.items() if spell.due <= now),
        )
        for _, key in due:
            spell = self._spells[key]
            if not spell.announced:
                spell.announced = True
                self._emit(key, spell.event(spell.kind, now), now)
            else:
                self._emit(key, spell.event("still_down", now), now)
            spell.due = now + self.config.repeat_every if self._reminds(spell) else math.inf
        if self._digest_closes <= now:
            self._close_digest()

    def next_due(self) -> float:
        """The clock time :meth:`advance` has something to do (inf: nothing is scheduled)."""
        spells = min((spell.due for spell in self._spells.values()), default=math.inf)
        return min(spells, self._digest_closes)

    def close(self) -> None:
        """At shutdown: the open digest is ready now; spells not yet announced never will be."""
        if self._digest or self._digest_omitted:
            self._close_digest()

    def take(self) -> list[Batch]:
        """The batches ready to send (each one message), oldest first; they are handed over."""
        ready, self._ready = self._ready, []
        return ready

    @property
    def followed(self) -> int:
        """Adapters in a spell now (announced or not)."""
        return len(self._spells)

    def _emit(self, key: Key, event: AlertEvent, now: float) -> None:
        if EVENT_KINDS[event.kind] not in self.config.on:
            return
        event = replace(event, model=key[0], provider=key[1])
        if self.config.digest <= 0:
            self._ready.append(Batch((event,)))
            return
        if len(self._digest) < MAX_DIGEST_EVENTS:
            self._digest.append(event)
        else:
            self._digest_omitted += 1
        if self._digest_closes == math.inf:  # the window opens with its first event
            self._digest_closes = now + self.config.digest

    def _close_digest(self) -> None:
        self._ready.append(Batch(tuple(self._digest), self._digest_omitted))
        self._digest, self._digest_omitted, self._digest_closes = [], 0, math.inf

"""What an alert says: a :class:`~.alerts_rules.Batch` as a title, a plain-text body and a severity.

Written for a person reading a phone notification: the title says what
happened to which adapter (``gpt-4 / openai is down``), the body how long and
why; a digest's title counts what happened and its body has one line per
event. Times are UTC; durations read ``45s``, ``2m 30s``, ``1h 5m``, ``2d 3h``.
Error texts come from results, which are redacted where they are made; they
are cut here to one line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from adapters.base import scrub

from .alerts_rules import AlertEvent, Batch

__all__ = ["MAX_LINES", "AlertMessage", "duration_text", "render"]

#: Lines one digest's body lists at most; the rest are counted.
MAX_LINES: Final = 50
#: Longest error text quoted.
_MAX_ERROR: Final = 300
#: Apprise's notify types, worst first.
_SEVERITY: Final = {"down": "failure", "still_down": "failure", "degraded": "warning",
                    "recovered": "success"}
_ORDER: Final = ("failure", "warning", "success")
_TITLE_WORDS: Final = {"down": "down", "still_down": "still down", "degraded": "degraded",
                       "recovered": "recovered"}


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """One message for one channel."""

    title: str
    body: str
    severity: str  # Apprise's notify type: "failure", "warning" or "success"
    events: int  # events it tells of (a digest's omitted ones included)


def duration_text(seconds: float) -> str:
    """``seconds`` for a person: ``4.2s``, ``45s``, ``2m 30s``, ``1h 5m``, ``2d 3h``."""
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    if not minutes:
        return f"{secs}s"
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes}m {secs}s"
    days, hours = divmod(hours, 24)
    if not days:
        return f"{hours}h {minutes}m"
    return f"{days}d {hours}h"


def _when(unix: float) -> str:
    return datetime.fromtimestamp(unix, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _clock(unix: float) -> str:
    return datetime.fromtimestamp(unix, tz=UTC).strftime("%H:%M:%S")


def _adapter(event: AlertEvent) -> str:
    return f"{event.model} / {event.provider}"


def _why(event: AlertEvent) -> str:
    """``unhealthy (http_status): HTTP 503: ...``: the status and what the result said."""
    status = event.status.value
    reason = f"{status} ({event.failure})" if event.failure else status
    if event.error:
        reason += ": " + scrub(event.error, limit=_MAX_ERROR)
    return reason


def _single(event: AlertEvent) -> tuple[str, str]:
    name = _adapter(event)
    since = f"since {_when(event.started_at)}"
    took = duration_text(event.duration)
    if event.kind == "recovered":
        return (
            f"{name} recovered",
            f"{name} is {event.status.value} again after {took} {event.spell} "
            f"(from {_when(event.started_at)} to {_clock(event.at)} UTC).",
        )
    verb = "is still down" if event.kind == "still_down" else f"is {event.spell}"
    if event.duration < 1:  # told at once (no min_duration): no "for 0.0s"
        state = f"{name} went {event.spell} at {_when(event.started_at)}."
    else:
        state = f"{name} has been {event.spell} for {took} ({since})."
    return f"{name} {verb}", f"{state}\nLast result: {_why(event)}"



def _line(event: AlertEvent) -> str:
    name = _adapter(event)
    took = duration_text(event.duration)
    if event.kind == "recovered":
        return f"RECOVERED {name}: {event.status.value} again after {took} {event.spell}"
    label = "STILL DOWN" if event.kind == "still_down" else event.kind.upper()
    lasted = f" for {took}" if event.duration >= 1 else ""
    return (
        f"{label} {name}: {event.spell}{lasted} since {_clock(event.started_at)} UTC, "
        f"{_why(event)}"
    )


def render(batch: Batch, *, prefix: str = "") -> AlertMessage:
    """The message for ``batch``; ``prefix`` (the channel's ``title``) starts its title."""
    events = batch.events
    severity = min((_SEVERITY[e.kind] for e in events), key=_ORDER.index, default="success")
    if len(events) == 1 and not batch.omitted:
        title, body = _single(events[0])
    else:
        counts = Counter(e.kind for e in events)
        title = ", ".join(
            f"{counts[kind]} {_TITLE_WORDS[kind]}" for kind in _TITLE_WORDS if counts[kind]
        )
        lines = [_line(e) for e in events[:MAX_LINES]]
        more = len(events) - len(lines) + batch.omitted
        if more:
            lines.append(f"... and {more} more")
        if batch.omitted:
            title += f" and {batch.omitted} more"
        body = "\n".join(lines)
    if prefix:
        title = f"{prefix} {title}"
    return AlertMessage(title, body, severity, len(events) + batch.omitted)

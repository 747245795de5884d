"""The public status page (``GET /status``), rendered on the server from plain values.

Pure functions over :class:`StatusView` (built by :mod:`.routes_status` from
the live state and storage's :class:`~service.live.uptime.DayUptime` /
:class:`~service.live.uptime.Incident` values), so the page is tested on
hand-built data and needs no script in the browser: it works with
JavaScript off and under a policy that allows only its own stylesheet.

What a public page may say is decided here: a status per model, uptime, and
when incidents started and how long they lasted. Never an error text, a
failure kind, a provider's name or URL: those are details, behind the token
on the API. Every piece of text is escaped (model names and the title are
user config).
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from ..live.uptime import DayUptime, Incident, Uptime

__all__ = [
    "HISTORY_DAYS",
    "MAX_INCIDENTS",
    "UPTIME_DAYS",
    "History",
    "ModelRow",
    "PublicStatus",
    "StatusView",
    "format_duration",
    "format_percent",
    "render_status_page",
    "uptime_level",
]

PublicStatus = Literal["up", "degraded", "down", "unknown"]
HistoryState = Literal["on", "off", "failing"]

#: Days in each model's uptime bar (one cell per UTC day).
HISTORY_DAYS: Final = 90
#: Days the uptime percentage next to each model covers.
UPTIME_DAYS: Final = 30
#: Incidents listed at most (newest first); the page says how many more there were.
MAX_INCIDENTS: Final = 50

_STATUS_TEXT: Final[dict[str, str]] = {
    "up": "Operational",
    "degraded": "Degraded",
    "down": "Down",
    "unknown": "Unknown",
}
_SEVERITY_TEXT: Final[dict[str, str]] = {"major": "Major outage", "partial": "Partial outage"}
_HISTORY_TEXT: Final[dict[str, str]] = {
    "off": "History is off: this service keeps no uptime history, so only the current "
    "status is shown.",
    "failing": "History is unavailable right now: only the current status is shown.",
}


@dataclass(frozen=True, slots=True)
class History:
    """What storage knows about the shown models, read at ``read_at`` (unix)."""

    read_at: float
    days: dict[str, list[DayUptime]] = field(default_factory=dict)  # model -> oldest first
    month: dict[str, Uptime] = field(default_factory=dict)  # model -> last UPTIME_DAYS
    incidents: list[Incident] = field(default_factory=list)  # newest first, shown models only


@dataclass(frozen=True, slots=True)
class ModelRow:
    """One model's line on the page."""

    name: str
    status: PublicStatus
    month: Uptime | None = None  # uptime over the last UPTIME_DAYS; None without history
    days: Sequence[DayUptime] = ()  # the bar, oldest first; empty without history


@dataclass(frozen=True, slots=True)
class StatusView:
    """Everything the page shows."""

    title: str
    now: float  # unix
    rows: Sequence[ModelRow]
    incident_days: int
    history: HistoryState = "on"
    incidents: Sequence[Incident] = ()  # newest first


def uptime_level(ratio: float | None) -> str:
    """A bar cell's colour class: ``none`` (nothing covered), ``ok``, ``minor``, ``partial``, ``major``."""
    if ratio is None:
        return "none"
    if ratio >= 0.999:
        return "ok"
    if ratio >= 0.99:
        return "minor"
    if ratio >= 0.95:
        return "partial"
    return "major"


def format_percent(ratio: float) -> str:
    """``99.95%``: rounded down to hundredths, so any downtime never shows as 100%."""
    hundredths = math.floor(ratio * 10_000 + 1e-6)  # 1e-6: 0.9995 * 10_000 is 9994.999...
    if hundredths >= 10_000:
        return "100%" if ratio >= 1 else "99.99%"
    return f"{max(hundredths, 0) / 100:.2f}%"


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``1 h 12 min``, ``3 d 4 h``: two units at most."""
    total = max(int(seconds), 0)
    if total < 60:
        return f"{total} s"
    minutes = total // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _date(at: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at))


def _time(at: float) -> str:
    """A ``<time>`` element: machine-readable ISO 8601, shown as ``2025-05-01 13:04 UTC``."""
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    shown = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))
    return f'<time datetime="{iso}">{shown}</time>'


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def overall(rows: Sequence[ModelRow]) -> tuple[str, str]:
    """The page's banner: (status, sentence)."""
    statuses = [row.status for row in rows]
    if statuses and all(s == "up" for s in statuses):
        return "up", "All systems operational"
    if statuses and all(s == "down" for s in statuses):
        return "down", "Major outage"
    if "down" in statuses:
        return "down", "Partial outage"
    if "degraded" in statuses:
        return "degraded", "Degraded performance"
    if not statuses:
        return "unknown", "No models are shown on this page"
    return "unknown", "Status not known yet"


def _cell(day: DayUptime) -> str:
    ratio = day.uptime.ratio
    text = f"{_date(day.start)}: " + ("no data" if ratio is None else f"{format_percent(ratio)} up")
    return (
        f'<span class="day" data-level="{uptime_level(ratio)}" role="img" '
        f'aria-label="{text}" title="{text}"></span>'
    )


def _row(row: ModelRow, history: HistoryState) -> str:
    name = _e(row.name)
    status = _STATUS_TEXT[row.status]
    parts = [
        f'<li class="model" data-model="{name}" data-status="{row.status}">',
        '<div class="model-head">',
        f'<h3 class="model-name">{name}</h3>',
        f'<span class="status" data-status="{row.status}">'
        f'<span class="dot" aria-hidden="true"></span>{status}</span>',
    ]
    if history == "on":
        ratio = None if row.month is None else row.month.ratio
        uptime = "no data" if ratio is None else f"{format_percent(ratio)} uptime"
        parts.append(f'<span class="uptime">{uptime} <span class="muted">'
                     f"(last {UPTIME_DAYS} days)</span></span>")
    parts.append("</div>")
    if history == "on" and row.days:
        days = len(row.days)
        parts.append(
            f'<div class="bar" role="group" aria-label="Daily uptime of {name}, '
            f'last {days} days (UTC)">'
        )
        parts.extend(_cell(day) for day in row.days)
        parts.append("</div>")
        parts.append(
            f'<div class="bar-legend" aria-hidden="true"><span>{days} days ago</span>'
            "<span>today</span></div>"
        )
    parts.append("</li>")
    return "".join(parts)


def _incidents(view: StatusView) -> str:
    days = view.incident_days
    span = "day" if days == 1 else f"{days} days"
    head = f'<section class="incidents" id="incidents" aria-labelledby="incidents-title">' \
        f'<h2 id="incidents-title">Incidents, last {span}</h2>'
    if not view.incidents:
        return f'{head}<p class="muted" id="no-incidents">No incidents in the last {span}.</p>' \
            "</section>"
    shown = view.incidents[:MAX_INCIDENTS]
    rows = []
    for incident in shown:
        state = "open" if incident.ended_at is None else "resolved"
        severity = incident.severity if incident.severity in _SEVERITY_TEXT else "partial"
        rows.append(
            f'<tr data-model="{_e(incident.model)}" data-state="{state}" '
            f'data-severity="{severity}">'
            f'<td>{_e(incident.model)}</td><td>{_time(incident.started_at)}</td>'
            f"<td>{format_duration(incident.duration_seconds)}</td>"
            f'<td><span class="state" data-state="{state}">'
            f'{"Ongoing" if state == "open" else "Resolved"}</span></td>'
            f'<td><span class="severity" data-severity="{severity}">'
            f"{_SEVERITY_TEXT[severity]}</span></td></tr>"
        )
    more = len(view.incidents) - len(shown)
    note = f'<p class="muted">And {more} earlier.</p>' if more > 0 else ""
    return (
        f'{head}<table class="incidents-table"><thead><tr><th scope="col">Model</th>'
        '<th scope="col">Started</th><th scope="col">Duration</th><th scope="col">Status</th>'
        '<th scope="col">Severity</th></tr></thead><tbody>'
        + "".join(rows)
        + f"</tbody></table>{note}</section>"
    )


def render_status_page(view: StatusView) -> str:
    """The whole page as HTML text."""
    title = _e(view.title)
    status, sentence = overall(view.rows)
    legend = ""
    if view.history == "on":
        legend = (
            '<ul class="legend" aria-label="Legend">'
            '<li data-level="ok"><span class="swatch"></span>99.9% or more</li>'
            '<li data-level="minor"><span class="swatch"></span>99% or more</li>'
            '<li data-level="partial"><span class="swatch"></span>95% or more</li>'
            '<li data-level="major"><span class="swatch"></span>below 95%</li>'
            '<li data-level="none"><span class="swatch"></span>no data</li></ul>'
        )
    note = ""
    if view.history != "on":
        note = f'<p class="history-note" id="history-{view.history}">' \
            f"{_HISTORY_TEXT[view.history]}</p>"
    rows = "".join(_row(row, view.history) for row in view.rows)
    body = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title>",
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">',
        '<link rel="stylesheet" href="/static/status.css">',
        "</head><body>",
        f'<header class="top"><h1>{title}</h1>',
        f'<p id="overall" class="overall" data-status="{status}" role="status">'
        f'<span class="dot" aria-hidden="true"></span>{sentence}</p>',
        f'<p class="muted updated">Updated {_time(view.now)}</p></header>',
        "<main>",
        note,
        '<section aria-labelledby="models-title"><div class="section-head">'
        f'<h2 id="models-title">Models</h2>{legend}</div>',
        f'<ul class="models">{rows}</ul></section>',
        _incidents(view) if view.history == "on" else "",
        "</main>",
        '<footer class="muted">Checked by router-health.</footer>',
        "</body></html>",
        "",
    ]
    return "\n".join(part for part in body if part)

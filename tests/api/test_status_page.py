"""The public status page (``GET /status``): what it shows, and what it never shows.

The rendering (service/api/status_page.py) is checked on hand-built uptime
and incidents; the route against a real service with ``[storage]`` in a
SQLite file under tmp_path (its history written by the background checks,
nothing mocked), with the token on (the page stays public), a provider
failing with a telling error text (never on the page), a model left out by
``[status_page] models`` (absent), and with storage off (current status
and a line saying history is off).
"""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import pytest

from service.api.status_page import (
    ModelRow,
    StatusView,
    format_duration,
    format_percent,
    render_status_page,
    uptime_level,
)
from service.live.uptime import DayUptime, Incident, Uptime

DAY = 86_400.0
MIDNIGHT = 1_700_006_400.0  # 2023-11-15 00:00 UTC


class Page(HTMLParser):
    """The page's elements (tag, attributes), its text, and whether every tag closed."""

    VOID: ClassVar = frozenset({"meta", "link", "br", "img", "input"})

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.open: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (tag, self.open[-3:])
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str]]:
        return [
            a for t, a in self.elements
            if (tag is None or t == tag)
            and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def with_class(self, name: str) -> list[dict[str, str]]:
        return [a for _, a in self.elements if name in a.get("class", "").split()]


def days(ratios: list[float | None]) -> list[DayUptime]:
    """Consecutive days ending the day of MIDNIGHT; None: nothing covered."""
    start = MIDNIGHT - (len(ratios) - 1) * DAY
    return [
        DayUptime(start + i * DAY, Uptime(0, 0, DAY) if r is None else Uptime(r * DAY, DAY, DAY))
        for i, r in enumerate(ratios)
    ]


def view(**changes: Any) -> StatusView:
    rows = [
        ModelRow("gpt-4", "up", Uptime(9_995, 10_000, 10_000), days([None] * 88 + [1.0, 0.9995])),
        ModelRow("claude-3-haiku", "down", Uptime(90, 100, 100), days([0.97, 0.5, 0.992])),
    ]
    values: dict[str, Any] = {
        "title": "Acme status", "now": MIDNIGHT + 3600, "rows": rows, "incident_days": 14,
    }
    values.update(changes)
    return StatusView(**values)


def test_each_model_has_its_status_30_day_uptime_and_a_cell_per_day() -> None:
    page = Page(render_status_page(view()))
    assert page.open == []
    models = page.with_class("model")
    assert [(m["data-model"], m["data-status"]) for m in models] == [
        ("gpt-4", "up"), ("claude-3-haiku", "down"),
    ]
    text = "".join(page.text)
    assert "99.95% uptime" in text and "90.00% uptime" in text
    assert "Operational" in text and "Down" in text
    cells = page.with_class("day")
    assert len(cells) == 90 + 3
    assert cells[0]["title"] == "2023-08-18: no data"
    assert cells[0]["data-level"] == "none"
    assert cells[89]["title"] == "2023-11-15: 99.95% up"
    assert cells[89]["data-level"] == "ok"
    assert [c["data-level"] for c in cells[90:]] == ["partial", "major", "minor"]
    for cell in cells:  # a text alternative for the colour, with the date
        assert re.fullmatch(r"\d{4}-\d\d-\d\d: (no data|\d+(\.\d\d)?% up)", cell["title"])
        assert cell["aria-label"] == cell["title"]


def test_the_banner_sums_up_the_models() -> None:
    def banner(*statuses: str) -> str:
        rows = [ModelRow(f"m{i}", s) for i, s in enumerate(statuses)]  # type: ignore[arg-type]
        return Page(render_status_page(view(rows=rows))).find("p", id="overall")[0]["data-status"]

    assert banner("up", "up") == "up"
    assert banner("up", "degraded") == "degraded"
    assert banner("up", "down") == "down"
    assert banner("down", "down") == "down"
    assert banner("up", "unknown") == "unknown"


def test_model_names_and_the_title_are_escaped() -> None:
    hostile = '<script>alert(1)</script>"onmouseover="x'
    rows = [ModelRow(hostile, "up", Uptime(1, 1, 1), days([1.0]))]
    incidents = [Incident(hostile, MIDNIGHT, None, 60, "major", (), ())]
    html = render_status_page(view(title=hostile, rows=rows, incidents=incidents))
    assert "<script" not in html and '"onmouseover' not in html
    page = Page(html)
    assert page.with_class("model")[0]["data-model"] == hostile  # the same text, escaped
    assert "".join(page.text).count(hostile) >= 3  # title, heading, model, incident


def test_incidents_show_when_and_how_long_but_no_details() -> None:
    incidents = [
        Incident("claude-3-haiku", MIDNIGHT - 7200, None, 7_380, "major",
                 ("http_5xx",), ("anthropic-secret-provider",)),
        Incident("gpt-4", MIDNIGHT - 5 * DAY, MIDNIGHT - 5 * DAY + 45, 45, "partial",
                 ("timeout",), ("openai",)),
    ]
    html = render_status_page(view(incidents=incidents))
    page = Page(html)
    rows = page.find("tr", data_model="claude-3-haiku") + page.find("tr", data_model="gpt-4")
    assert [(r["data-state"], r["data-severity"]) for r in rows] == [
        ("open", "major"), ("resolved", "partial"),
    ]
    text = "".join(page.text)
    assert "2023-11-14 22:00 UTC" in text and "2 h 3 min" in text and "45 s" in text
    assert "Ongoing" in text and "Resolved" in text
    for detail in ("anthropic-secret-provider", "openai", "http_5xx", "timeout"):
        assert detail not in html


def test_no_incidents_says_so() -> None:
    page = Page(render_status_page(view(incident_days=1)))
    assert "No incidents in the last day." in "".join(page.text)


def test_without_history_the_page_says_so_and_shows_the_current_status() -> None:
    rows = [ModelRow("gpt-4", "degraded")]
    html = render_status_page(view(rows=rows, history="off"))
    page = Page(html)
    assert page.find("p", id="history-off")
    assert page.with_class("model")[0]["data-status"] == "degraded"
    assert not page.with_class("day") and not page.find(id="incidents")
    assert "uptime" not in "".join(page.text).lower().replace("uptime history", "")


def test_the_page_loads_only_its_own_stylesheet_and_icon() -> None:
    page = Page(render_status_page(view()))
    assert not page.find("script") and not page.find("style")
    links = sorted(a["href"] for t, a in page.elements if t == "link")
    assert links == ["/static/favicon.svg", "/static/status.css"]
    assert not any("style" in a for _, a in page.elements)  # no inline style=


@pytest.mark.parametrize(
    ("ratio", "shown", "level"),
    [
        (1.0, "100%", "ok"),
        (0.99999, "99.99%", "ok"),  # never rounded up to 100%
        (0.9995, "99.95%", "ok"),
        (0.999, "99.90%", "ok"),
        (0.99, "99.00%", "minor"),
        (0.9899, "98.99%", "partial"),
        (0.95, "95.00%", "partial"),
        (0.5, "50.00%", "major"),
        (0.0, "0.00%", "major"),
    ],
)
def test_percentages_round_down_and_pick_their_colour(ratio: float, shown: str, level: str) -> None:
    assert format_percent(ratio) == shown
    assert uptime_level(ratio) == level


def test_nothing_covered_is_grey() -> None:
    assert uptime_level(None) == "none"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0 s"), (59.9, "59 s"), (60, "1 min"), (3599, "59 min"), (3600, "1 h"),
     (3660, "1 h 1 min"), (86_400, "1 d"), (90_000, "1 d 1 h")],
)
def test_durations_read_in_two_units_at_most(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_the_updated_time_is_utc() -> None:
    page = Page(render_status_page(view(now=MIDNIGHT + 3723)))
    times = page.find("time")
    assert times[0]["datetime"] == "2023-11-15T01:02:03Z"
    assert time.gmtime(MIDNIGHT).tm_hour == 0


_ = Path  # the served tests below use tmp_path

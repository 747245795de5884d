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
import trio

from service.api.app import EXTENSION_KEY
from service.api.headers import STATUS_PAGE_POLICY
from service.api.status_page import (
    ModelRow,
    StatusView,
    format_duration,
    format_percent,
    render_status_page,
    uptime_level,
)
from service.live.uptime import DayUptime, Incident, Uptime
from service.testing.simulator import Behavior
from tests.support import eventually
from tests.support.served import GUARD, MODELS, PROVIDERS, Service, running_service, simulated_fleet

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
        self.ids: list[str | None] = []  # the id of each open element
        self.texts: dict[str, list[str]] = {}  # id -> the text inside
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.elements.append((tag, values))
        if tag not in self.VOID:
            self.open.append(tag)
            self.ids.append(values.get("id"))

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (tag, self.open[-3:])
        self.open.pop()
        self.ids.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for element_id in filter(None, self.ids):
            self.texts.setdefault(element_id, []).append(data)

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str]]:
        return [
            a for t, a in self.elements
            if (tag is None or t == tag)
            and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def find_text(self, element_id: str) -> list[str]:
        """The text inside the element with this id (no nesting of the same tag inside)."""
        return self.texts.get(element_id, [])

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
                 ("http_status",), ("anthropic-secret-provider",)),
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
    for detail in ("anthropic-secret-provider", "openai", "http_status", "timeout"):
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


def test_a_history_that_cannot_be_read_is_said_so() -> None:
    page = Page(render_status_page(view(rows=[ModelRow("gpt-4", "up")], history="failing")))
    assert "unavailable right now" in "".join(page.find_text("history-failing"))
    assert page.with_class("model")[0]["data-status"] == "up"
    assert not page.with_class("day") and not page.find(id="incidents")


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



# -- served: a real service, its history in SQLite --------------------------------------

TOKEN = "rhtesttoken-status-0123456789"
ADAPTERS = sum(len(providers) for providers in MODELS.values())
#: One background round at start, then none while the test runs.
CHECKS = {"interval": 3600, "unhealthy_interval": 3600, "jitter": 0}
#: What the failing provider answers: the page must never show it.
ERROR_TEXT = "upstream exploded near secret-detail-4711"


def sections(database: Path | None, **status_page: Any) -> dict[str, dict[str, Any]]:
    storage = (
        {"enabled": False} if database is None
        else {"enabled": True, "path": str(database), "flush_interval": 0.05}
    )
    return {"storage": storage, "status_page": status_page}


async def stored_first_round(service: Service) -> None:
    """Wait until the first round's results and transitions are in the database."""
    storage = service.app.extensions[EXTENSION_KEY].storage
    await eventually(lambda: storage.stats()["writes"] >= 2 * ADAPTERS, within=GUARD)


async def page_of(service: Service, **headers: str) -> tuple[str, Page]:
    response = await service.client.get("/status", headers=headers)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == STATUS_PAGE_POLICY
    assert response.headers["cache-control"] == "no-store"
    return response.text, Page(response.text)


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


async def test_the_page_is_public_and_shows_every_model_with_its_history(tmp_path: Path) -> None:
    async with running_service(
        checks=CHECKS, server={"auth_token": TOKEN},
        sections=sections(tmp_path / "health.db", title="Acme AI status"),
    ) as service:
        await stored_first_round(service)
        html, page = await page_of(service)  # no token, auth on
    assert page.find("title") and "Acme AI status" in "".join(page.text)
    assert page.find("p", id="overall")[0]["data-status"] == "up"
    models = page.with_class("model")
    assert [m["data-model"] for m in models] == list(MODELS)
    assert {m["data-status"] for m in models} == {"up"}
    cells = page.with_class("day")
    assert len(cells) == 90 * len(MODELS)
    for bar_end in range(89, len(cells), 90):  # today: checked, all up
        assert cells[bar_end]["title"] == f"{today()}: 100% up"
        assert cells[bar_end]["data-level"] == "ok"
    assert {c["data-level"] for c in cells[:89]} == {"none"}  # nothing before today
    assert "".join(page.text).count("100% uptime") == len(MODELS)
    assert page.find("p", id="no-incidents")
    for secret in (TOKEN, "sk-sim-openai", "sk-sim-anthropic", service.sim.base_url("openai"),
                   "127.0.0.1", *PROVIDERS):
        assert secret not in html, "the page shows a detail or a secret"


async def test_a_failing_model_shows_down_with_an_incident_but_no_error_text(
    tmp_path: Path,
) -> None:
    fleet = simulated_fleet()
    for provider in fleet:
        if provider.name == "anthropic":
            provider.behavior = Behavior(latency=0.0, mode="body", status=500, body=ERROR_TEXT)
    async with running_service(
        checks=CHECKS, providers=fleet, server={"auth_token": TOKEN},
        sections=sections(tmp_path / "health.db"),
    ) as service:
        await stored_first_round(service)
        granted = {"Authorization": f"Bearer {TOKEN}"}
        details = (await service.client.get("/v1/health/", headers=granted)).json()
        error = details["details"]["claude-3-haiku"]["anthropic"]["error"]
        assert "secret-detail-4711" in error  # the API's details do carry it
        html, page = await page_of(service, **granted)  # the token changes nothing here
    rows = {m["data-model"]: m["data-status"] for m in page.with_class("model")}
    assert rows == {"gpt-4": "up", "claude-3-haiku": "down", "llama3:latest": "up"}
    assert page.find("p", id="overall")[0]["data-status"] == "down"
    claude = page.with_class("day")[90 + 89]
    assert (claude["title"], claude["data-level"]) == (f"{today()}: 0.00% up", "major")
    incidents = page.find("tr", data_model="claude-3-haiku")
    assert [(i["data-state"], i["data-severity"]) for i in incidents] == [("open", "major")]
    assert not page.find("tr", data_model="gpt-4")
    for detail in ("secret-detail-4711", "exploded", "HTTP 500", "http_status", "anthropic"):
        assert detail not in html, detail


async def test_models_left_out_by_the_config_are_absent(tmp_path: Path) -> None:
    async with running_service(
        checks=CHECKS, sections=sections(tmp_path / "health.db", models=["llama3:latest"]),
    ) as service:
        await stored_first_round(service)
        html, page = await page_of(service)
    assert [m["data-model"] for m in page.with_class("model")] == ["llama3:latest"]
    assert "gpt-4" not in html and "claude-3-haiku" not in html
    assert len(page.with_class("day")) == 90


async def test_with_storage_off_the_page_shows_the_current_status_and_says_history_is_off() -> None:
    async with running_service(checks=CHECKS, sections=sections(None)) as service:
        state = service.app.extensions[EXTENSION_KEY]
        assert state.storage is None
        with trio.fail_after(GUARD):
            await state.health.changes.wait_value(lambda n: n >= ADAPTERS)
        _, page = await page_of(service)
    assert page.find("p", id="history-off")
    assert {m["data-status"] for m in page.with_class("model")} == {"up"}
    assert not page.with_class("day") and not page.find(id="incidents")


async def test_without_background_checks_the_status_is_unknown_and_nothing_is_probed() -> None:
    async with running_service() as service:
        _, page = await page_of(service)
        assert service.sim.total_stats().completed == 0
    assert {m["data-status"] for m in page.with_class("model")} == {"unknown"}
    assert page.find("p", id="history-off")


async def test_a_disabled_page_is_not_found() -> None:
    async with running_service(sections={"status_page": {"enabled": False}}) as service:
        response = await service.client.get("/status")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"

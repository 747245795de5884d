"""The status page and the dashboard's uptime in headless Chromium, against a real service.

The service's SQLite file is first filled with 88 days of verdicts for the
default fleet (a check every 30 minutes, through the real storage: a
HealthState recording hand-built results), with outages at hand-picked
times, so that the page shows every colour of its bars and a list of
incidents whose cells and durations are computed here by hand. Then the
service starts on that file, and Chromium loads ``/status``: the bars
render with a size, nothing breaks the page's policy, the console stays
clean. Playwright's sync API runs in a worker thread, as in the dashboard's
tests; every wait is for a condition.

The screenshot is an artifact (.test-artifacts/, not tracked); with
``UPDATE_SCREENSHOT=1`` it replaces docs/status.png and the served badge
docs/status-badge.svg, which docs/status-page.md shows.

Without Chromium or the playwright package the browser tests are skipped
locally and fail under ``CI=true``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
import trio.lowlevel

from adapters.base import FailureKind
from service.api.app import EXTENSION_KEY
from service.config import CheckSchedule, StorageConfig
from service.engine.report import ProbeStatus
from service.live.state import HealthState
from service.live.storage import open_storage
from service.testing.simulator import Behavior
from tests.support import ROOT, eventually
from tests.support.browser import CHROMIUM, require_browser
from tests.support.fakes import probe_result
from tests.support.served import GUARD, MODELS, Service, running_service, simulated_fleet

UPDATE = os.environ.get("UPDATE_SCREENSHOT") == "1"
SCREENSHOT = (ROOT / "docs" if UPDATE else ROOT / ".test-artifacts") / "status.png"
BADGE = ROOT / "docs" / "status-badge.svg"
#: milliseconds: bounds a regression only (each wait ends when its condition holds)
WAIT = 30_000
#: seconds: a whole browser test, against a hang only
BROWSER_GUARD = 120
VIEWPORT = {"width": 1100, "height": 900}
ADAPTERS = sum(len(providers) for providers in MODELS.values())
#: One background round at start, then none while the test runs.
CHECKS = {"interval": 3600, "unhealthy_interval": 3600, "jitter": 0}

DAY = 86_400
EVERY = 1_800  # seconds between two seeded checks
MINUTE = 60
#: (provider, days before today, hour of the day (UTC), minutes down). Each outage
#: starts with a failing check and ends with a healthy one, at exactly these times.
OUTAGES = [
    ("anthropic", 72, 9, 360),  # 75.00%: major
    ("anthropic", 41, 14, 45),  # 96.87%: partial
    ("anthropic", 20, 3, 10),  # 99.30%: minor
    ("anthropic", 6, 11, 130),  # an incident in the list: 2 h 10 min, major
    ("openai", 5, 8, 240),  # gpt-4's backup stays up: the model too; a partial incident
    ("openai", 33, 2, 50),  # both of gpt-4's providers down together: 96.52%
    ("openai-backup", 33, 2, 50),
    ("ollama", 55, 16, 20),  # 98.61%: partial
    ("ollama", 12, 10, 8),  # 99.44%: minor; an incident in the list: 8 min, major
]
#: days of history per model (the rest of the 90-day bar is grey: nothing covered)
HISTORY = {"gpt-4": 88, "claude-3-haiku": 88, "llama3:latest": 75}

T = TypeVar("T")


def midnight(now: float) -> float:
    return now - now % DAY


def timeline(model: str, provider: str, now: float) -> list[tuple[float, bool]]:
    """(time, up) of every seeded check of one adapter, in time order."""
    today = midnight(now)
    outages = [
        (today - days * DAY + hour * 3600, today - days * DAY + hour * 3600 + minutes * MINUTE)
        for name, days, hour, minutes in OUTAGES
        if name == provider
    ]
    checks: dict[float, bool] = {}
    at = today - HISTORY[model] * DAY
    while at < now - 120:
        checks[at] = not any(start <= at < end for start, end in outages)
        at += EVERY
    for start, end in outages:
        checks[start], checks[end] = False, True
    return sorted(checks.items())


async def seed(database: Path, now: float) -> None:
    """The checks of :func:`timeline`, through the real storage, into ``database``."""
    schedule = CheckSchedule(interval=EVERY)
    health = HealthState(lambda model, provider: schedule)
    config = StorageConfig(enabled=True, path=str(database), flush_interval=0.05)
    known = {(model, provider) for model, providers in MODELS.items() for provider in providers}
    checks = sorted(
        (at, up, model, provider)
        for model, providers in MODELS.items()
        for provider in providers
        for at, up in timeline(model, provider, now)
    )
    async with open_storage(config, health, known=known, hold_limit=EVERY * 1.5,
                            wall_clock=lambda: now) as storage:
        for count, (at, up, model, provider) in enumerate(checks, 1):
            health.record(probe_result(
                ProbeStatus.HEALTHY if up else ProbeStatus.UNHEALTHY,
                model=model, provider=provider, checked_at=at,
                failure=None if up else FailureKind.HTTP_STATUS,
                error=None if up else "HTTP 500: seeded outage",
            ))
            await trio.lowlevel.checkpoint()  # the transitions' forwarder reads them
            if count % 2_000 == 0:
                assert await storage.flush()
        health.close()
    assert storage.stats()["dropped"] == 0


@pytest.fixture
def browser() -> None:
    """Checked before any server starts."""
    require_browser("the status page's browser tests")


async def in_browser(
    service: Service, path: str, script: Callable[[Any], T]
) -> tuple[T, dict[str, list[str]]]:
    """Run ``script(page)`` on ``path``; its result and every error the page reported."""
    from playwright.sync_api import sync_playwright

    def run() -> tuple[T, dict[str, list[str]]]:
        found: dict[str, list[str]] = {"errors": [], "console": [], "violations": []}
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = chromium.new_page(viewport=VIEWPORT)
                page.set_default_timeout(WAIT)
                page.add_init_script(
                    "window.__violations = [];"
                    "document.addEventListener('securitypolicyviolation', e =>"
                    " window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
                )
                page.on("pageerror", lambda error: found["errors"].append(str(error)))
                page.on(
                    "console",
                    lambda message: found["console"].append(
                        f"{message.text} ({message.location.get('url', '')})"
                    )
                    if message.type in ("error", "warning")
                    else None,
                )
                page.goto(service.url + path)
                result = script(page)
                found["violations"] = page.evaluate("window.__violations")
            finally:
                chromium.close()
        return result, found

    return await trio.to_thread.run_sync(run)


def cell_titles(page: Any, model: str) -> list[str]:
    return list(page.eval_on_selector_all(
        f'li.model[data-model="{model}"] .day', "cells => cells.map(c => c.title)"
    ))


def day_title(days_ago: int, percent: str, now: float) -> str:
    date = time.strftime("%Y-%m-%d", time.gmtime(midnight(now) - days_ago * DAY))
    return f"{date}: {percent}"


@pytest.mark.usefixtures("browser")
async def test_the_status_page_draws_90_days_of_history_in_chromium(tmp_path: Path) -> None:
    database = tmp_path / "health.db"
    now = time.time()
    await seed(database, now)
    sections = {"storage": {"enabled": True, "path": str(database), "flush_interval": 0.05},
                "status_page": {"title": "Example AI gateway status"}}
    async with running_service(checks=CHECKS, sections=sections, guard=BROWSER_GUARD) as service:
        storage = service.app.extensions[EXTENSION_KEY].storage
        await eventually(lambda: storage.stats()["writes"] >= ADAPTERS, within=GUARD)

        def script(page: Any) -> dict[str, Any]:
            page.wait_for_selector("li.model .bar .day")
            seen: dict[str, Any] = {
                "title": page.title(),
                "models": page.eval_on_selector_all(
                    "li.model", "rows => rows.map(r => [r.dataset.model, r.dataset.status])"
                ),
                "sizes": page.eval_on_selector_all(
                    ".day", "cells => cells.map(c => { const r = c.getBoundingClientRect();"
                    " return [r.width, r.height]; })"
                ),
                "layout": page.evaluate(
                    "getComputedStyle(document.querySelector('.bar')).display"
                ),
                "colours": page.evaluate(
                    """() => Object.fromEntries(['ok', 'minor', 'partial', 'major', 'none'].map(
                        level => [level, getComputedStyle(
                            document.querySelector(`.day[data-level="${level}"]`)
                        ).backgroundColor]))"""
                ),
                "cells": {model: cell_titles(page, model) for model in MODELS},
                "incidents": page.eval_on_selector_all(
                    "#incidents tbody tr",
                    "rows => rows.map(r => [...r.cells].map(c => c.textContent))",
                ),
            }
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            # Badges as a README shows them, the 404's too: every <img> draws something.
            page.evaluate(
                """() => { for (const name of ['gpt-4', 'nope']) {
                    const img = document.createElement('img');
                    img.src = `/badge/${name}.svg`; img.className = 'badge-check';
                    document.body.append(img); } }"""
            )
            page.wait_for_function(
                "() => [...document.querySelectorAll('img.badge-check')].every(i => i.complete)"
            )
            seen["badges"] = page.eval_on_selector_all(
                "img.badge-check", "images => images.map(i => [i.naturalWidth, i.naturalHeight])"
            )
            return seen

        seen, found = await in_browser(service, "/status", script)
        if UPDATE:
            BADGE.write_text((await service.client.get("/badge/claude-3-haiku.svg")).text)

    assert found["errors"] == [] and found["violations"] == []
    # the one 404 is the unknown model's badge, loaded on purpose
    assert [m for m in found["console"] if "/badge/nope.svg" not in m] == []
    assert seen["title"] == "Example AI gateway status"
    assert seen["models"] == [[model, "up"] for model in MODELS]
    assert seen["layout"] == "flex"  # the stylesheet applied
    assert len(seen["sizes"]) == 90 * len(MODELS)
    assert all(width > 0 and height > 0 for width, height in seen["sizes"]), seen["sizes"][:5]
    assert len(set(seen["colours"].values())) == 5, seen["colours"]  # one colour per level
    gpt, claude, llama = (seen["cells"][model] for model in MODELS)
    # index 89 - n: n days ago; each percentage by hand from OUTAGES (down minutes of 1440)
    assert claude[89 - 72] == day_title(72, "75.00% up", now)
    assert claude[89 - 41] == day_title(41, "96.87% up", now)
    assert claude[89 - 20] == day_title(20, "99.30% up", now)
    assert gpt[89 - 5] == day_title(5, "100% up", now)  # the backup served
    assert gpt[89 - 33] == day_title(33, "96.52% up", now)
    assert llama[89 - 55] == day_title(55, "98.61% up", now)
    assert llama[89 - 12] == day_title(12, "99.44% up", now)
    assert llama[89 - 80] == day_title(80, "no data", now)  # before its history began
    incidents = [(model, duration, state, severity)
                 for model, _, duration, state, severity in seen["incidents"]]
    assert incidents == [  # newest first
        ("gpt-4", "4 h", "Resolved", "Partial outage"),
        ("claude-3-haiku", "2 h 10 min", "Resolved", "Major outage"),
        ("llama3:latest", "8 min", "Resolved", "Major outage"),
    ]
    assert [height for _, height in seen["badges"]] == [20, 20]
    assert all(width > 0 for width, _ in seen["badges"])
    assert SCREENSHOT.stat().st_size > 10_000


@pytest.mark.usefixtures("browser")
async def test_the_dashboard_shows_each_adapters_uptime_over_24_hours(tmp_path: Path) -> None:
    fleet = simulated_fleet()
    for provider in fleet:
        if provider.name == "anthropic":
            provider.behavior = Behavior(latency=0.0, mode="status", status=500)
    sections = {"storage": {"enabled": True, "path": str(tmp_path / "health.db"),
                            "flush_interval": 0.05}}
    async with running_service(
        checks=CHECKS, providers=fleet, sections=sections, guard=BROWSER_GUARD
    ) as service:
        storage = service.app.extensions[EXTENSION_KEY].storage
        await eventually(lambda: storage.stats()["writes"] >= 2 * ADAPTERS, within=GUARD)

        def script(page: Any) -> dict[str, str]:
            page.wait_for_selector('.cell[data-provider="anthropic"] .uptime[data-uptime]')
            page.wait_for_function("() => document.querySelectorAll("
                                   "'.cell .uptime[data-uptime]').length === 4")
            return dict(page.eval_on_selector_all(
                ".cell", "cells => cells.map(c => [c.dataset.provider,"
                " c.querySelector('.uptime').textContent])"
            ))

        uptimes, found = await in_browser(service, "/", script)
    assert found["errors"] == [] and found["violations"] == []
    assert uptimes == {"openai": "100% (24h)", "openai-backup": "100% (24h)",
                       "anthropic": "0.00% (24h)", "ollama": "100% (24h)"}


@pytest.mark.usefixtures("browser")
async def test_with_storage_off_the_dashboard_shows_no_uptime() -> None:
    sections = {"storage": {"enabled": False}}
    async with running_service(checks=CHECKS, sections=sections, guard=BROWSER_GUARD) as service:

        def script(page: Any) -> list[str]:
            page.wait_for_selector('#stream-state[data-state="live"]')
            page.wait_for_function("() => document.querySelectorAll("
                                   "'.cell[data-status=\"healthy\"]').length === 4")
            return list(page.eval_on_selector_all(
                ".cell .uptime", "spans => spans.map(s => s.textContent)"
            ))

        uptimes, found = await in_browser(service, "/", script)
    assert found["errors"] == [] and found["violations"] == []
    assert uptimes == [""] * ADAPTERS

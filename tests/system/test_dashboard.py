"""The dashboard (``GET /``, service/api/static): a headless Chromium against a real server.

Playwright's sync API drives Debian's Chromium (``/usr/bin/chromium``) in a
worker thread (``trio.to_thread.run_sync``) while the simulator and hypercorn
keep running in the Trio loop; the browser thread changes the simulator
through ``trio.from_thread.run_sync``. Every wait is a Playwright wait on
the page's ``data-*`` hooks, never a sleep.

Without Chromium or the playwright package the browser tests are skipped
locally and fail under ``CI=true``.

The auth test's token must never reach the test output (CI greps for it):
it is only referred to by name, never printed, never in an assertion that
could show its value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from tests.support import ROOT
from tests.support.browser import CHROMIUM, require_browser
from tests.support.served import MODELS, Service, raw_get, running_service

#: The test's screenshot is an artifact (.test-artifacts/, not tracked); with
#: UPDATE_SCREENSHOT=1 it replaces the README's benchmarks/dashboard.png.
SCREENSHOT = (
    ROOT / "benchmarks" / "dashboard.png"
    if os.environ.get("UPDATE_SCREENSHOT") == "1"
    else ROOT / ".test-artifacts" / "dashboard.png"
)
TOKEN = "rhtesttoken-dashboard-0123456789"
#: milliseconds: only bounds a regression (each wait ends when its condition
#: holds, well under a second unloaded); Chromium on a busy 2-core machine is slow.
WAIT = 30_000
#: seconds: a whole browser test (several such waits), against a hang only
BROWSER_GUARD = 120
VIEWPORT = {"width": 1280, "height": 800}

T = TypeVar("T")

ADAPTERS = [(model, provider) for model, providers in MODELS.items() for provider in providers]


def _css(value: str) -> str:
    """``value`` as a double-quoted CSS attribute value."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cell(model: str, provider: str, status: str | None = None) -> str:
    selector = f".cell[data-model={_css(model)}][data-provider={_css(provider)}]"
    return selector if status is None else f"{selector}[data-status={_css(status)}]"


@pytest.fixture
def browser() -> None:
    """Checked before any server starts."""
    require_browser()


async def in_browser(service: Service, script: Callable[[Any], T]) -> T:
    """Run ``script(page)`` with ``page`` open on the dashboard, in a worker thread."""
    from playwright.sync_api import sync_playwright

    def run() -> T:
        errors: list[str] = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(WAIT)
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.goto(service.url + "/")
                result = script(page)
            finally:
                browser.close()
        assert errors == [], "JavaScript errors on the page"
        return result

    return await trio.to_thread.run_sync(run)


def wait_for_fleet(page: Any, status: str) -> None:
    for model, provider in ADAPTERS:
        page.wait_for_selector(cell(model, provider, status))
    assert page.locator(".cell").count() == len(ADAPTERS)


@pytest.mark.usefixtures("browser")
async def test_a_broken_provider_turns_red_and_back_without_a_reload() -> None:
    checks = {"interval": 0.3, "jitter": 0, "unhealthy_interval": 0.3}
    async with running_service(checks=checks, guard=BROWSER_GUARD) as service:
        # some latency spread, so the charts (and the README's screenshot) show a line
        for name, latency in [("openai", 0.03), ("openai-backup", 0.06), ("anthropic", 0.045),
                              ("ollama", 0.015)]:
            service.sim.set_behavior(name, latency=latency, jitter=latency / 2)

        def script(page: Any) -> None:
            assert page.title() == "router-health dashboard"
            wait_for_fleet(page, "healthy")
            page.wait_for_selector('#stream-state[data-state="live"]')
            page.wait_for_selector('#overall[data-status="healthy"]')
            assert page.text_content("#meta-source") is not None
            navigations: list[str] = []
            page.on("framenavigated", lambda frame: navigations.append(frame.url))

            trio.from_thread.run_sync(
                lambda: service.sim.set_behavior("anthropic", mode="status", status=500)
            )
            broken = page.wait_for_selector(cell("claude-3-haiku", "anthropic", "unhealthy"))
            assert broken is not None
            assert "unhealthy" in (broken.text_content() or "")  # the colour's text alternative
            assert "HTTP 500" in (broken.text_content() or "")
            page.wait_for_selector('#overall[data-status="degraded"]')
            page.wait_for_selector('tr[data-model="claude-3-haiku"][data-status="unhealthy"]')
            for model, provider in ADAPTERS:  # the others stay green
                if provider != "anthropic":
                    assert page.locator(cell(model, provider, "healthy")).count() == 1

            # the README's screenshot: some history, a red cell, the comparison drawn
            anthropic = cell("claude-3-haiku", "anthropic")
            page.wait_for_function(
                """(sel) => document.querySelectorAll(
                    sel + ' svg.spark circle[data-status="unhealthy"]').length >= 3""",
                arg=anthropic,
            )
            page.locator("#measure").click()
            page.wait_for_selector("#perf-speedup")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))

            trio.from_thread.run_sync(lambda: service.sim.set_behavior("anthropic", mode="ok"))
            page.wait_for_selector(cell("claude-3-haiku", "anthropic", "healthy"))
            page.wait_for_selector('#overall[data-status="healthy"]')
            # the chart keeps the red points and adds green ones after them
            page.wait_for_function(
                """(sel) => {
                    const points = [...document.querySelectorAll(sel + ' svg.spark circle')];
                    const lastRed = points.findLastIndex(p => p.dataset.status === 'unhealthy');
                    return lastRed >= 0 && points.length - 1 - lastRed >= 3;
                }""",
                arg=anthropic,
            )
            latency = page.text_content(f"{anthropic} .latency") or ""
            assert re.fullmatch(r"[\d.]+ ms", latency), latency
            assert navigations == [], "the page reloaded"

        await in_browser(service, script)
    assert SCREENSHOT.stat().st_size > 10_000


@pytest.mark.usefixtures("browser")
async def test_a_live_run_fills_the_grid_and_the_button_draws_the_comparison() -> None:
    async with running_service(guard=BROWSER_GUARD) as service:
        for name in ("openai", "openai-backup", "anthropic", "ollama"):
            service.sim.set_behavior(name, latency=0.05)

        def script(page: Any) -> None:
            wait_for_fleet(page, "healthy")
            source = page.text_content("#meta-source") or ""
            assert source.startswith("live"), source
            assert page.locator('.cell[data-latency=""]').count() == 0
            button = page.locator("#measure")
            page.evaluate(  # remember whether the button was disabled while it ran
                """() => {
                    const b = document.getElementById('measure');
                    window.sawDisabled = false;
                    new MutationObserver(() => { window.sawDisabled ||= b.disabled; })
                        .observe(b, {attributes: true});
                }"""
            )
            button.click()
            page.wait_for_selector('#perf-chart svg rect.bar[data-series="concurrent"]')
            assert page.locator('#perf-chart svg rect.bar[data-series="sequential"]').count() == 1
            speedup = page.text_content("#perf-speedup") or ""
            assert re.match(r"Speedup: [\d.]+\u00d7", speedup), speedup
            assert page.locator("#perf-breakdown svg rect.bar").count() == 4
            assert button.is_enabled()
            assert page.evaluate("() => window.sawDisabled") is True
            assert page.locator("#error").is_hidden()
            # the sequential bar is the longer one: four 50 ms probes in a row
            widths = page.eval_on_selector_all(
                "#perf-chart rect.bar", "bars => bars.map(b => Number(b.getAttribute('width')))"
            )
            assert widths[1] > widths[0], widths

        await in_browser(service, script)


@pytest.mark.usefixtures("browser")
async def test_the_page_asks_for_the_token_and_then_shows_everything() -> None:
    async with running_service(server={"auth_token": TOKEN}, guard=BROWSER_GUARD) as service:

        def enter(page: Any, value: str) -> None:
            try:
                page.locator("#token").fill(value)
                page.locator("#auth-submit").click()
            except Exception:
                # Playwright's messages can quote what was typed: keep the token out
                raise AssertionError("could not enter a token in the page") from None

        def script(page: Any) -> None:
            page.wait_for_selector("#auth", state="visible")
            assert page.locator('#stream-state[data-state="off"]').count() == 1
            enter(page, "wrong-token-0123456789")
            page.wait_for_selector("#auth-message:has-text('not accepted')")
            assert page.locator("#auth").is_visible()

            enter(page, TOKEN)
            page.wait_for_selector("#auth", state="hidden")
            wait_for_fleet(page, "healthy")
            page.wait_for_selector('#stream-state[data-state="live"]')
            for model, provider in ADAPTERS:  # details (latencies) need the token
                latency = page.get_attribute(cell(model, provider), "data-latency")
                assert latency, (model, provider)
            leaked = page.evaluate(
                "t => document.documentElement.outerHTML.includes(t)", TOKEN
            )
            assert not leaked, "the token is in the page"
            kept = page.evaluate("() => sessionStorage.length")
            assert kept == 1

        await in_browser(service, script)


async def test_the_files_are_served_by_the_app_with_no_cdn() -> None:
    async with running_service() as service:
        page = await service.client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        html = page.text
        assert "<title>router-health dashboard</title>" in html
        assert not re.search(r"https?://", html), "the page references an outside URL"
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert set(assets) == {"/static/dashboard.js", "/static/dashboard.css",
                               "/static/favicon.svg"}
        types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        for asset in assets:
            response = await service.client.get(asset)
            assert response.status_code == 200, asset
            assert response.headers["content-type"].startswith(types[Path(asset).suffix]), asset
        script = (await service.client.get("/static/dashboard.js")).text
        assert "innerHTML" not in script and "alert(" not in script

        for target in ("/static/../app.py", "/static/..%2Fapp.py", "/static/nope.js",
                       "/static/.hidden.js", "/static/app.py"):
            with trio.fail_after(5):
                answer = await raw_get(service, target.encode())
            kind = answer.headers.get(b"content-type", b"").decode()
            assert (answer.status, kind) == (404, "application/json"), target
            assert b'"error"' in answer.body, target

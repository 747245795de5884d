"""Every answer carries the browser hardening headers; the pages work under a strict CSP.

Issue 13, finding 11 (first half): the dashboard (``/``), ``/docs``,
``/static/*`` and every JSON answer sent no ``Content-Security-Policy``, no
``X-Frame-Options``/``frame-ancestors``, no ``X-Content-Type-Options:
nosniff`` and no ``Referrer-Policy``. The pages have no CDN, no inline script
and no inline style, so their policy allows only this origin's own files;
everything else (JSON, scripts, stylesheets, the icon) gets a policy that
allows nothing at all, should a browser ever render it. Headless Chromium
then loads both pages and reports any policy violation.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import trio

from tests.support.browser import CHROMIUM, require_browser
from tests.support.served import GUARD, raw_get, running_service

TOKEN = "rhtesttoken-headers-0123456789"

#: Every kind of answer: pages, static files, JSON (2xx, 4xx, 404, 405), text, the stream.
TARGETS: list[tuple[str, str, int]] = [
    ("GET", "/", 200),
    ("GET", "/docs", 200),
    ("GET", "/static/dashboard.js", 200),
    ("GET", "/static/dashboard.css", 200),
    ("GET", "/static/favicon.svg", 200),
    ("GET", "/static/nope.js", 404),
    ("GET", "/livez", 200),
    ("HEAD", "/livez", 200),
    ("GET", "/readyz", 200),
    ("GET", "/openapi.json", 200),
    ("GET", "/v1/health/", 200),
    ("GET", "/v1/health/models/gpt-4", 200),
    ("GET", "/v1/health/models/nope", 404),
    ("GET", "/v1/health/?timeout=abc", 400),
    ("GET", "/v1/health/performance", 401),
    ("GET", "/metrics", 401),
    ("POST", "/livez", 405),
    ("GET", "/nothing/here", 404),
]

PAGES = {"/", "/docs"}


def directives(policy: str) -> dict[str, str]:
    parsed = {}
    for part in policy.split(";"):
        name, _, value = part.strip().partition(" ")
        if name:
            parsed[name] = value.strip()
    return parsed


def check_headers(path: str, headers: httpx.Headers) -> None:
    assert headers.get("x-content-type-options") == "nosniff", path
    assert headers.get("referrer-policy") == "no-referrer", path
    assert headers.get("x-frame-options") == "DENY", path
    policy = directives(headers.get("content-security-policy", ""))
    assert policy.get("frame-ancestors") == "'none'", (path, policy)
    assert policy.get("default-src") == "'none'", (path, policy)
    assert policy.get("base-uri") == "'none'", (path, policy)
    assert policy.get("form-action") == "'none'", (path, policy)
    text = " ".join(policy.values())
    assert "unsafe" not in text and "*" not in text and "http" not in text, (path, policy)
    if path in PAGES:
        for kind in ("script-src", "style-src", "img-src", "connect-src"):
            assert policy.get(kind) == "'self'", (path, kind, policy)
    else:
        assert set(policy) == {"default-src", "frame-ancestors", "base-uri", "form-action"}, path


async def test_every_kind_of_answer_carries_the_hardening_headers() -> None:
    async with running_service(server={"auth_token": TOKEN}) as service:
        for method, path, status in TARGETS:
            response = await service.client.request(method, path)
            assert response.status_code == status, (method, path, response.text[:200])
            check_headers(path, response.headers)
        # The event stream's headers, without reading its endless body.
        granted = {"Authorization": f"Bearer {TOKEN}"}
        async with service.client.stream("GET", "/v1/health/stream", headers=granted) as stream:
            assert stream.status_code == 200
            check_headers("/v1/health/stream", stream.headers)


async def test_a_path_sent_byte_for_byte_gets_them_too() -> None:
    async with running_service() as service:
        with trio.fail_after(GUARD):
            answer = await raw_get(service, b"/static/..%2Fapp.py")
    assert answer.status == 404
    headers = httpx.Headers({k.decode(): v.decode() for k, v in answer.headers.items()})
    check_headers("/static/..%2Fapp.py", headers)


def test_the_pages_have_no_inline_script_style_or_handler() -> None:
    from service.api.routes_ops import _STATIC_DIR

    for page in ("dashboard.html", "docs.html"):
        html = (_STATIC_DIR / page).read_text(encoding="utf-8")
        assert "<style" not in html, page
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), page  # only src= scripts
        assert not re.search(r"\son[a-z]+\s*=", html), page  # no onclick= and the like
        assert not re.search(r"\sstyle\s*=", html), page


def _violations(url: str) -> dict[str, Any]:
    """Load both pages in Chromium; every CSP violation and page error they cause."""
    from playwright.sync_api import sync_playwright

    found: dict[str, Any] = {"violations": [], "errors": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)  # bounds a hang: Chromium is slow on a busy machine
            page.add_init_script(
                "window.__violations = [];"
                "document.addEventListener('securitypolicyviolation', e =>"
                " window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
            )
            page.on("pageerror", lambda error: found["errors"].append(str(error)))
            page.on(
                "console",
                lambda message: found["errors"].append(message.text)
                if "Content Security Policy" in message.text
                else None,
            )
            page.goto(url + "/")
            page.wait_for_selector(".cell[data-status='healthy']")  # the script ran and fetched
            found["dashboard_layout"] = page.evaluate(
                "getComputedStyle(document.querySelector('.cell-head')).display"
            )
            found["violations"] += page.evaluate("window.__violations")
            page.goto(url + "/docs")
            page.wait_for_selector("section.op")  # the script ran and fetched /openapi.json
            found["docs_layout"] = page.evaluate(
                "getComputedStyle(document.querySelector('.layout')).display"
            )
            found["violations"] += page.evaluate("window.__violations")
        finally:
            browser.close()
    return found


async def test_the_dashboard_and_docs_work_under_their_policy_in_chromium() -> None:
    require_browser("the security headers test (the pages under their CSP in Chromium)")
    async with running_service(guard=120) as service:
        found = await trio.to_thread.run_sync(_violations, service.url)
    assert found["violations"] == []
    assert found["errors"] == []
    # Both stylesheets applied (without them these are "block").
    assert (found["dashboard_layout"], found["docs_layout"]) == ("flex", "grid")

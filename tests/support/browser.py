"""The headless browser: Debian's Chromium, driven by Playwright's sync API."""

from __future__ import annotations

import os

import pytest

CHROMIUM = "/usr/bin/chromium"


def require_browser(tests: str = "the dashboard tests") -> None:
    """Skip without Chromium or playwright; fail instead under ``CI=true`` (CI must run ``tests``)."""
    problems = []
    if not os.access(CHROMIUM, os.X_OK):
        problems.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright package is missing (pip install playwright)")
    if problems:
        reason = "no headless browser: " + "; ".join(problems)
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} — CI must run {tests}")
        pytest.skip(f"{reason} — {tests} not run (CI installs both and fails instead)")

"""Badges (``GET /badge/{model}.svg``): valid SVG 1.1, sized from their text, public.

Every badge is parsed with ``xml.etree`` (well-formed, the SVG namespace,
width and height, the texts) and validated against the SVG 1.1 DTD (lxml,
with the DTD from Debian's w3c-sgml-lib: nothing fetched). Without lxml or
the DTD the validation is skipped locally and fails under ``CI=true``.
The served badges come from a real service with ``[storage]`` in tmp_path.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import trio

from service.api.app import EXTENSION_KEY
from service.api.badge import HEIGHT, MAX_LABEL_CHARS, status_badge, text_width, unknown_badge
from tests.support import eventually
from tests.support.served import GUARD, MODELS, Service, running_service

SVG = "{http://www.w3.org/2000/svg}"
SVG11_DTD = Path("/usr/share/xml/w3c-sgml-lib/schema/dtd/REC-SVG11-20110816/svg11.dtd")


@cache
def svg11_dtd() -> Any:
    """The SVG 1.1 DTD, parsed; skip without it (fail under CI, which installs it)."""
    problems = []
    if not SVG11_DTD.is_file():
        problems.append(f"{SVG11_DTD} is missing (apt-get install w3c-sgml-lib)")
    try:
        from lxml import etree
    except ImportError:
        problems.append("the lxml package is missing (pip install lxml)")
    if problems:
        reason = "no SVG 1.1 validator: " + "; ".join(problems)
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} — CI must validate the badges")
        pytest.skip(reason)
    return etree.DTD(str(SVG11_DTD))


def validate(svg: str) -> None:
    """Valid SVG 1.1: the DTD's elements, attributes and content models."""
    from lxml import etree

    dtd = svg11_dtd()
    document = etree.fromstring(svg.encode("utf-8"))
    assert dtd.validate(document), dtd.error_log.filter_from_errors()


def parse(svg: str) -> ET.Element:
    """Well-formed SVG: the root is ``<svg>`` in the SVG namespace, version 1.1."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("version") == "1.1"
    return root


def size(root: ET.Element) -> tuple[float, float]:
    width, height = float(root.get("width", "")), float(root.get("height", ""))
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    return width, height


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def boxes(root: ET.Element) -> list[float]:
    """The label's and the message's background widths."""
    rects = [r for r in root.iter(f"{SVG}rect") if r.get("fill", "").startswith("#")]
    return [float(r.get("width", "")) for r in rects if r.get("rx") is None]


def test_a_badge_is_valid_svg_1_1_with_the_status_and_uptime() -> None:
    svg = status_badge("gpt-4", "up", 0.99951)
    validate(svg)
    root = parse(svg)
    width, height = size(root)
    assert height == HEIGHT
    assert texts(root) == ["gpt-4", "gpt-4", "up 99.95%", "up 99.95%"]  # text and its shadow
    assert root.findtext(f"{SVG}title") == "gpt-4: up 99.95%"
    label, message = boxes(root)
    assert label + message == pytest.approx(width, abs=0.11)


def test_the_widths_come_from_the_text() -> None:
    short, long = parse(status_badge("a", "up", None)), parse(status_badge("a" * 30, "up", None))
    assert size(long)[0] - size(short)[0] == pytest.approx(text_width("a" * 29), abs=0.2)
    for root in (short, long):
        for text in root.iter(f"{SVG}text"):
            assert float(text.get("textLength", "")) == pytest.approx(
                text_width(text.text or ""), abs=0.06
            )
    assert text_width("W") > text_width("i")
    assert text_width("模型") > text_width("ab")  # full-width characters are wide


@pytest.mark.parametrize(
    ("status", "ratio", "message", "colour"),
    [
        ("up", 1.0, "up 100%", "#44cc11"),
        ("degraded", 0.9912, "degraded 99.12%", "#dfb317"),
        ("down", 0.5, "down 50.00%", "#e05d44"),
        ("unknown", None, "unknown", "#9f9f9f"),
        ("up", None, "up", "#44cc11"),  # no history: the status alone
    ],
)
def test_each_status_has_its_colour(
    status: Any, ratio: float | None, message: str, colour: str
) -> None:
    svg = status_badge("gpt-4", status, ratio)
    validate(svg)
    root = parse(svg)
    assert texts(root)[2] == message
    fills = [r.get("fill") for r in root.iter(f"{SVG}rect")]
    assert colour in fills


def test_names_are_escaped_and_long_ones_cut() -> None:
    hostile = '</text><script>alert(1)</script>&"\'\uffff'
    svg = status_badge(hostile, "up", None)
    validate(svg)
    assert "<script" not in svg
    assert texts(parse(svg))[0] == hostile.replace("\uffff", "\ufffd")
    long = parse(status_badge("m" * 200, "up", None))
    label = texts(long)[0]
    assert len(label) == MAX_LABEL_CHARS and label.endswith("\u2026")


def test_the_unknown_badge_is_valid_too() -> None:
    svg = unknown_badge()
    validate(svg)
    assert texts(parse(svg)) == ["status", "status", "unknown", "unknown"]


# -- served: a real service, its history in SQLite --------------------------------------

TOKEN = "rhtesttoken-badge-0123456789"
ADAPTERS = sum(len(providers) for providers in MODELS.values())
CHECKS = {"interval": 3600, "unhealthy_interval": 3600, "jitter": 0}


def storage(database: Path | None) -> dict[str, Any]:
    if database is None:
        return {"enabled": False}
    return {"enabled": True, "path": str(database), "flush_interval": 0.05}


async def badge_of(service: Service, path: str, status: int = 200) -> ET.Element:
    response = await service.client.get(path)
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.headers["cache-control"] == "max-age=60"
    assert response.headers["x-content-type-options"] == "nosniff"
    validate(response.text)
    return parse(response.text)


async def test_a_served_badge_is_public_and_shows_status_and_30_day_uptime(
    tmp_path: Path,
) -> None:
    async with running_service(
        checks=CHECKS, server={"auth_token": TOKEN},
        sections={"storage": storage(tmp_path / "health.db")},
    ) as service:
        written = service.app.extensions[EXTENSION_KEY].storage
        await eventually(lambda: written.stats()["writes"] >= 2 * ADAPTERS, within=GUARD)
        root = await badge_of(service, "/badge/gpt-4.svg")  # no token, auth on
        assert texts(root)[::2] == ["gpt-4", "up 100%"]
        head = await service.client.head("/badge/gpt-4.svg")
        assert (head.status_code, head.content) == (200, b"")


async def test_an_unknown_or_unlisted_model_gets_a_404_badge_an_img_can_show() -> None:
    async with running_service(
        checks=CHECKS, sections={"status_page": {"models": ["gpt-4"]}}
    ) as service:
        for path in ("/badge/nope.svg", "/badge/claude-3-haiku.svg", "/badge/gpt-4/.svg",
                     "/badge/gpt-4.svg.svg"):
            root = await badge_of(service, path, 404)
            assert texts(root)[::2] == ["status", "unknown"], path


async def test_a_model_name_with_a_slash_and_markup_is_served_escaped() -> None:
    name = "team/gpt-4 <b>&"
    async with running_service(
        checks=CHECKS, models={name: ("openai",)}, sections={"storage": storage(None)}
    ) as service:
        state = service.app.extensions[EXTENSION_KEY]
        with trio.fail_after(GUARD):
            await state.health.changes.wait_value(lambda n: n >= 1)
        root = await badge_of(service, "/badge/team/gpt-4%20%3Cb%3E%26.svg")
    assert texts(root)[0] == name
    assert texts(root)[2] in ("up", "down")  # storage off: the status alone


async def test_a_badge_without_storage_shows_the_status_alone() -> None:
    async with running_service(checks=CHECKS, sections={"storage": storage(None)}) as service:
        state = service.app.extensions[EXTENSION_KEY]
        with trio.fail_after(GUARD):
            await state.health.changes.wait_value(lambda n: n >= ADAPTERS)
        root = await badge_of(service, "/badge/llama3:latest.svg")
    assert texts(root)[::2] == ["llama3:latest", "up"]


async def test_badges_of_a_disabled_page_are_unknown() -> None:
    async with running_service(sections={"status_page": {"enabled": False}}) as service:
        root = await badge_of(service, "/badge/gpt-4.svg", 404)
    assert texts(root)[::2] == ["status", "unknown"]

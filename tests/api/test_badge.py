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

from service.api.badge import HEIGHT, MAX_LABEL_CHARS, status_badge, text_width, unknown_badge

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

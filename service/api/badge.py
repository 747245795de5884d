"""Status badges (``GET /badge/{model}.svg``): a model's status and 30-day uptime as SVG 1.1.

The look of the usual README badges ("gpt-4 | up 99.95%"): a grey label and
a coloured message, 20 px high. There is no font to measure with on the
server, so each text's width comes from Verdana's advance widths at 11 px
(the font badges are drawn in; DejaVu Sans, its stand-in on Linux, is close),
and ``textLength`` makes a browser draw the text at exactly that width,
whichever font it picks. Pure: text in, SVG text out; every piece of text is
escaped (a model name is user config). Valid against the SVG 1.1 DTD
(``tests/api/test_badge.py``), so no ``role``/``aria-*``: the ``<title>`` is
the badge's text alternative.
"""

from __future__ import annotations

import html
import re
from typing import Final

from .status_page import PublicStatus, format_percent

__all__ = [
    "COLOURS",
    "HEIGHT",
    "MAX_LABEL_CHARS",
    "badge_svg",
    "status_badge",
    "text_width",
    "unknown_badge",
]

HEIGHT: Final = 20
#: Pixels of padding on each side of a text.
PADDING: Final = 6
#: A longer model name is cut (with an ellipsis): a badge is a line in a README.
MAX_LABEL_CHARS: Final = 48
#: Message background per status (the colours README badges use).
COLOURS: Final[dict[str, str]] = {
    "up": "#44cc11",
    "degraded": "#dfb317",
    "down": "#e05d44",
    "unknown": "#9f9f9f",
}
_LABEL_COLOUR: Final = "#555555"

#: Verdana's advance widths (units of 1/2048 em) for the printable ASCII characters, from space.
_ASCII_WIDTHS: Final = (
    720, 823, 1048, 1802, 1419, 2461, 1622, 614, 1024, 1024, 1419, 1802, 823, 1024, 823, 1024,
    1419, 1419, 1419, 1419, 1419, 1419, 1419, 1419, 1419, 1419, 1024, 1024, 1802, 1802, 1802,
    1225, 2040, 1401, 1405, 1432, 1577, 1294, 1178, 1571, 1540, 866, 1025, 1413, 1151, 1727,
    1532, 1606, 1235, 1606, 1423, 1403, 1250, 1522, 1401, 2023, 1405, 1250, 1403, 1024, 1024,
    1024, 1802, 1419, 1419, 1229, 1276, 1067, 1276, 1220, 720, 1276, 1296, 562, 705, 1198, 562,
    1992, 1296, 1243, 1276, 1276, 874, 1067, 807, 1296, 1198, 1675, 1198, 1198, 1051, 1454, 1024,
    1454, 1802,
)
_FONT_SIZE: Final = 11
_UNITS_PER_EM: Final = 2048
#: Anything outside ASCII: a wide glyph (CJK is a full em; most others are narrower).
_WIDE: Final = 2048
_OTHER: Final = 1400


def text_width(text: str) -> float:
    """``text``'s width in pixels at 11 px Verdana (an estimate beyond ASCII, erring wide)."""
    units = 0
    for char in text:
        code = ord(char)
        if 32 <= code < 127:
            units += _ASCII_WIDTHS[code - 32]
        elif code >= 0x1100:  # Hangul, CJK, and later blocks: mostly full-width
            units += _WIDE
        else:
            units += _OTHER
    return units * _FONT_SIZE / _UNITS_PER_EM


#: What XML 1.0 cannot carry at all, escaped or not (config names have no control
#: characters, but a noncharacter such as U+FFFF would still make the SVG ill-formed).
_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _label(text: str) -> str:
    text = _NOT_XML.sub("\ufffd", text)
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "\u2026"


def _number(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def badge_svg(label: str, message: str, colour: str) -> str:
    """A two-part badge: ``label`` on grey, ``message`` on ``colour`` (a ``#rrggbb``)."""
    label = _label(label)
    label_text = text_width(label)
    message_text = text_width(message)
    label_box = round(label_text + 2 * PADDING, 1)
    message_box = round(message_text + 2 * PADDING, 1)
    width = round(label_box + message_box, 1)
    title = html.escape(f"{label}: {message}", quote=True)
    label_e, message_e = html.escape(label, quote=True), html.escape(message, quote=True)
    w, lw, mw = _number(width), _number(label_box), _number(message_box)

    def text(content: str, middle: float, length: float) -> str:
        x, length_s = _number(round(middle, 1)), _number(round(length, 1))
        common = f'x="{x}" textLength="{length_s}" lengthAdjust="spacingAndGlyphs"'
        return (
            f'<text {common} y="15" fill="#010101" fill-opacity=".3">{content}</text>'
            f'<text {common} y="14">{content}</text>'
        )

    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{w}" height="{HEIGHT}" '
        f'viewBox="0 0 {w} {HEIGHT}">'
        f"<title>{title}</title>"
        '<linearGradient id="shine" x2="0" y2="100%">'
        '<stop offset="0" stop-color="#bbbbbb" stop-opacity=".1"/>'
        '<stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="round"><rect width="{w}" height="{HEIGHT}" rx="3" fill="#ffffff"/>'
        "</clipPath>"
        '<g clip-path="url(#round)">'
        f'<rect width="{lw}" height="{HEIGHT}" fill="{_LABEL_COLOUR}"/>'
        f'<rect x="{lw}" width="{mw}" height="{HEIGHT}" fill="{colour}"/>'
        f'<rect width="{w}" height="{HEIGHT}" fill="url(#shine)"/></g>'
        '<g fill="#ffffff" text-anchor="middle" '
        f'font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="{_FONT_SIZE}">'
        + text(label_e, label_box / 2, label_text)
        + text(message_e, label_box + message_box / 2, message_text)
        + "</g></svg>\n"
    )


def status_badge(model: str, status: PublicStatus, month_ratio: float | None) -> str:
    """``model | up 99.95%``: the status, and the 30-day uptime when there is some."""
    message = status if month_ratio is None else f"{status} {format_percent(month_ratio)}"
    return badge_svg(model, message, COLOURS[status])


def unknown_badge() -> str:
    """The 404's badge: an ``<img>`` shows it where a JSON error would be a broken image."""
    return badge_svg("status", "unknown", COLOURS["unknown"])

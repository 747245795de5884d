"""Checks of one value, shared by every settings type and parser.

One rule per kind of value ("a finite number of seconds", "a tag", "an
http(s) URL", "a token"), so a message says the same thing wherever the value
is written: a config file, a settings object built in code, a query string.
"""

from __future__ import annotations

import ipaddress
import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from adapters.base import redact

__all__ = [
    "ALLOW_LINK_LOCAL",
    "ENV_NAME",
    "MAX_TAGS",
    "TAG_ACCEPTED",
    "TAG_PATTERN",
    "TOKEN_CHARS",
    "ConfigError",
    "check_seconds",
    "display_url",
    "finite",
    "forbidden_target",
    "has_control",
    "label",
    "name_problem",
    "raise_problems",
    "seconds_problem",
    "shown",
    "tag_problem",
    "url_problem",
]

#: A tag: letters, digits and ``_ . : -`` (Kubernetes-label-like), non-empty.
TAG_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:-]+")
#: At most this many tags on one model or provider entry (and in one filter).
MAX_TAGS: Final = 32
TAG_ACCEPTED: Final = (
    f"a list of at most {MAX_TAGS} distinct non-empty strings of letters, digits and _ . : -, "
    'e.g. ["prod", "eu"]'
)
#: An environment variable's name.
ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: A key or token: visible ASCII, no spaces (it travels in a header).
TOKEN_CHARS: Final = re.compile(r"[\x21-\x7e]+")


class ConfigError(ValueError):
    """An invalid configuration; ``str()`` is the user-facing message."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {p}" for p in problems]
        super().__init__("\n".join(lines))


def finite(value: float) -> bool:
    """``math.isfinite``, but False (not OverflowError) for an int too large for a float.

    TOML and JSON both accept integers of any size; comparing one with a float
    limit would otherwise raise instead of reporting a bad value.
    """
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def seconds_problem(value: object, *, zero_ok: bool = False) -> str | None:
    """Why ``value`` is not a duration in seconds, or None when it is one.

    A duration is a finite int or float, > 0 (or >= 0 where 0 means "off").
    ``True`` is not a duration, although Python counts it as the int 1.
    """
    rule = ">= 0 (0 = off)" if zero_ok else "> 0"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a finite number of seconds {rule}, got {value!r}"
    if not finite(value) or value < 0 or (value == 0 and not zero_ok):
        return f"must be a finite number of seconds {rule}, got {value!r}"
    return None


def check_seconds(name: str, value: object, *, zero_ok: bool = False) -> float:
    """``value`` as float seconds; ``ValueError("<name> must be ...")`` when it is not one."""
    problem = seconds_problem(value, zero_ok=zero_ok)
    if problem is not None:
        raise ValueError(f"{name} {problem}")
    assert isinstance(value, int | float)
    return float(value)


def tag_problem(tag: object) -> str | None:
    """Why ``tag`` is not a valid tag, or None when it is (config and filters share it)."""
    if not isinstance(tag, str):
        return f"a tag must be a string, got {type(tag).__name__}"
    if not TAG_PATTERN.fullmatch(tag):
        shown = tag if len(tag) <= 40 else tag[:40] + "..."
        return f"{shown!r} is not a valid tag (letters, digits and _ . : - only, non-empty)"
    return None


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an http(s) base URL, or None (keys never go in a URL).

    The message never quotes the URL: callers add :func:`display_url`.
    """
    if not url.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    if any(c.isspace() for c in url) or has_control(url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a valid URL (check the brackets around an IPv6 address)"
    try:
        parts.port  # noqa: B018  # raises ValueError for a port out of range
    except ValueError:
        return "has a bad port (after the host's ':', a number from 1 to 65535)"
    if "@" in parts.netloc:
        return (
            "must not carry user:password@ (it is never sent: probes authenticate with the "
            "provider's key, so put the key in the environment and name the variable in "
            "api_key_env, or set api_key); write the URL without it"
        )
    if not parts.hostname:
        return "has no host name"
    if parts.query or parts.fragment:
        return "must not have a query or fragment (keys go in api_key_env, never in the URL)"
    return None


# -- showing URLs and names in messages ---------------------------------------------

#: Longest URL shown in a message.
_MAX_SHOWN_URL: Final = 200
_SCHEME_PREFIX: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:/+")
_AUTHORITY_END: Final = re.compile(r"[/?#]")


def display_url(url: str) -> str:
    """``url`` as ``scheme://host[:port]/path``: never its userinfo, query or fragment.

    Safe for mistyped URLs too (``https:/user:pass@host``, ``user:pass@host``,
    a password with ``/`` or ``?`` in it): where the userinfo would end is
    unclear there, so everything up to the last ``@`` is left out and shown as
    ``…@``. A port that is not a number (often a pasted secret) is left out too.
    """
    if not isinstance(url, str):
        return f"<{type(url).__name__}>"
    match = _SCHEME_PREFIX.match(url)
    prefix = match.group() if match else ""
    rest = url[len(prefix) :]
    end = _AUTHORITY_END.search(rest)
    authority, tail = (rest[: end.start()], rest[end.start() :]) if end else (rest, "")
    if "@" in tail:
        # An "@" after the host: a password with "/", "?" or "#" in it, or an
        # "@" in the path or query. Either way, show only what follows it.
        shown_url = prefix + "…@" + _before_query(rest.rpartition("@")[2])
    else:
        at, host = authority.rpartition("@")[1:]
        well_formed = _WELL_FORMED_PREFIX.fullmatch(prefix) is not None
        path = _before_query(tail) if tail.startswith("/") else ""
        shown_url = prefix + ("…@" if at and not well_formed else "") + _without_bad_port(host)
        shown_url += path
    if len(shown_url) > _MAX_SHOWN_URL:
        shown_url = shown_url[: _MAX_SHOWN_URL - 1] + "…"
    return redact(shown_url)


_WELL_FORMED_PREFIX: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")


def _before_query(text: str) -> str:
    return re.split(r"[?#]", text, maxsplit=1)[0]


def _without_bad_port(host: str) -> str:
    """``host[:port]``, with a port that is not a number (often a pasted secret) as ``:…``."""
    if "," in host:  # a list of host:port (a sentinel URL), checked where it is parsed
        return host
    if host.startswith("["):  # an IPv6 literal, then maybe :port
        literal, bracket, port = host.partition("]")
        name, port = literal + bracket, port.removeprefix(":")
    else:
        name, _, port = host.partition(":")
    return host if not port or port.isdigit() else f"{name}:…"


def _is_control(char: str) -> bool:
    """Control, format (bidi overrides and isolates, zero-width...), line/paragraph separators."""
    return unicodedata.category(char) in _CONTROL_CATEGORIES


def has_control(text: str) -> bool:
    """Whether ``text`` has a control, format, bidi or line/paragraph separator character."""
    return any(_is_control(c) for c in text)


_CONTROL_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
#: Longest name shown in a message.
_MAX_SHOWN_NAME: Final = 60


def shown(value: str) -> str:
    """``value`` quoted for a message: control and bidi characters escaped, long ones cut."""
    cut = value if len(value) <= _MAX_SHOWN_NAME else value[:_MAX_SHOWN_NAME] + "..."
    return "'" + _escaped(cut).replace("'", "\\'") + "'"


def label(value: str) -> str:
    """``value`` as a part of a key path: as written when printable, quoted and escaped if not."""
    return value if value.isprintable() else shown(value)


_SHORT_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(value: str) -> str:
    out: list[str] = []
    for char in value:
        if char == "\\":
            out.append("\\\\")
        elif char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif _is_control(char) or (not char.isprintable() and char != " "):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                       else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot be a name, or None.

    Names end up in log lines, the ``check`` table, metric labels and
    headers: a newline would forge a log line, a NUL reach ``/metrics`` raw, a
    bidi override reorder what an operator reads. So no control or format
    character (Unicode Cc, Cf: bidi overrides and isolates, zero-width
    characters) and no line or paragraph separator; any other text is fine.
    """
    bad = [(i, c) for i, c in enumerate(value) if _is_control(c)]
    if not bad:
        return None
    position, char = bad[0]
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return (
        f"{shown(value)} contains {_describe_char(char)} at position {position + 1}{more}; "
        "names appear in log lines, tables and metrics, so control, format and bidi "
        "characters are refused: remove it"
    )


_CONTROL_NAMES: Final = {
    "\x00": "NUL",
    "\t": "TAB",
    "\n": "LINE FEED",
    "\r": "CARRIAGE RETURN",
    "\x1b": "ESCAPE",
    "\x7f": "DELETE",
    "\x85": "NEXT LINE",
}


def _describe_char(char: str) -> str:
    name = unicodedata.name(char, "")
    if not name:
        name = _CONTROL_NAMES.get(char, "a control character")
    return f"U+{ord(char):04X} ({name})"


# -- link-local and cloud metadata targets -------------------------------------------

#: Where clouds serve instance metadata and credentials, outside link-local ranges too.
METADATA_ADDRESSES: Final = {
    ipaddress.ip_address("169.254.169.254"): "AWS, GCP, Azure, OpenStack... instance metadata",
    ipaddress.ip_address("169.254.170.2"): "AWS ECS task credentials",
    ipaddress.ip_address("fd00:ec2::254"): "AWS instance metadata over IPv6",
    ipaddress.ip_address("100.100.100.200"): "Alibaba Cloud instance metadata",
    ipaddress.ip_address("168.63.129.16"): "Azure WireServer",
}
LINK_LOCAL: Final = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
)
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
#: The ``[checks]`` key that lets a base URL or the webhook point at such an address.
ALLOW_LINK_LOCAL: Final = "allow_link_local"
_INET_PART: Final = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address the C resolver reads in ``host``, in any of its spellings.

    ``getaddrinfo`` takes 1 to 4 dot-separated numbers, each decimal, ``0x``
    hex or ``0`` octal, the last one filling the remaining bytes:
    ``2852039166``, ``0xa9fea9fe``, ``0251.0376.0251.0376`` and
    ``169.254.43518`` all name 169.254.169.254.
    """
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_INET_PART.fullmatch(p) for p in parts):
        return None
    values = [
        int(p[2:] or "0", 16) if p[:2].lower() == "0x" else int(p, 8 if p[0] == "0" else 10)
        for p in parts
    ]
    *leading, last = values
    if any(v > 255 for v in leading) or last >= 256 ** (4 - len(leading)):
        return None
    number = 0
    for value in leading:
        number = number << 8 | value
    return ipaddress.IPv4Address(number << 8 * (4 - len(leading)) | last)


def _address_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address a literal ``host`` names (IPv4 in an IPv6 one unwrapped), else None."""
    host = host.strip("[]").removesuffix(".").lower()
    if ":" in host:
        try:
            address = ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return None
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if int(address) >> 32 == 0 and int(address) > 0xFFFF:  # IPv4-compatible ::a.b.c.d
            return ipaddress.IPv4Address(int(address))
        return address
    return _inet_aton(host)


def forbidden_target(url: str) -> str | None:
    """Why ``url``'s host is a cloud metadata or link-local address, or None.

    Literal addresses only, in every spelling a resolver accepts; a *name*
    that resolves there is not seen (that needs a check at connect time).
    Private ranges (10/8, 172.16/12, 192.168/16, 127/8, fc00::/7 but for the
    metadata address) are fine: model servers live there.
    """
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host:
        return None
    address = _address_of(host)
    if address is None:
        return None
    spelled = "" if str(address) == host.strip("[]").lower() else f" (written {host})"
    if address in METADATA_ADDRESSES:
        what = METADATA_ADDRESSES[address]
        return f"points at {address}{spelled}, a cloud metadata address ({what})"
    for network in LINK_LOCAL:
        if address in network:
            return (
                f"points at {address}{spelled}, a link-local address ({network}), where cloud "
                "metadata services listen"
            )
    return None


def raise_problems(section: str, problems: Mapping[str, str]) -> None:
    """A ``ValueError`` naming every problem (key -> message) of a ``[section]`` value, if any."""
    if problems:
        raise ValueError("; ".join(f"{section} {key} {message}" for key, message in problems.items()))

"""``[[alerts]]``: channels that tell people when adapters go down and come back, through Apprise.

Each entry is one channel: an Apprise URL (Slack, Teams, Discord, PagerDuty,
e-mail, Telegram, Feishu, DingTalk, ntfy, Gotify, a generic ``json://``
POST...), which transitions it wants (``on``), which adapters (``models``,
``tags``), and how it keeps quiet: ``min_duration`` (an adapter must stay
down that long before anyone hears of it), ``repeat_every`` (a reminder while
it stays down), ``digest`` (everything within a window in one message).

Apprise is an optional dependency (``pip install 'router-health[alerts]'``):
it is imported only when a config has ``[[alerts]]``, and a URL is checked
with Apprise itself when the config loads, so a typo in a scheme or a
missing token is a config error, not a silent channel.

The URL is a secret (it carries the tokens): nothing here shows more of it
than its scheme (``slack://…``), and :meth:`AlertChannelConfig.secrets` lists
every part of it that text leaving the process must mask.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from adapters.base import Secret, scrub

from .values import (
    MAX_TAGS,
    has_control,
    name_problem,
    raise_problems,
    seconds_problem,
    tag_problem,
)

__all__ = [
    "ALERT_EVENTS",
    "APPRISE_MISSING",
    "DEFAULT_EVENTS",
    "AlertChannelConfig",
    "alert_problems",
    "alert_url_secrets",
    "apprise_available",
    "apprise_url_problem",
    "display_alert_url",
]

#: What a channel may be told about: an adapter down (after ``min_duration``),
#: back up after an announced outage, or degraded (still serving, but slow or failing some).
ALERT_EVENTS: Final = ("down", "recovered", "degraded")
DEFAULT_EVENTS: Final = ("down", "recovered")
APPRISE_MISSING: Final = (
    "[[alerts]] sends through the Apprise library, which is not installed: "
    "pip install 'router-health[alerts]' (or remove [[alerts]])"
)
APPRISE_SERVICES: Final = "https://github.com/caronc/apprise/wiki"
#: Longest ``title`` prefix and channel ``name``.
MAX_TITLE_CHARS: Final = 100
MAX_NAME_CHARS: Final = 64
#: A digest longer than this would hold a down alert back by as much.
MAX_DIGEST: Final = 3600.0
#: One message's deadline may not be longer than this.
MAX_TIMEOUT: Final = 300.0
DEFAULT_TIMEOUT: Final = 15.0

_SCHEME: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
#: Where a URL's parts end: what is between two of these may be a token.
_SEPARATORS: Final = re.compile(r"[/?&#@:=,;+]")
#: Parts shorter than this are not masked: "a" or "no" masked everywhere would garble every line.
_MIN_SECRET_CHARS: Final = 3


def display_alert_url(url: str) -> str:
    """``url`` as ``scheme://…``: Apprise URLs carry tokens in every part but the scheme."""
    match = _SCHEME.match(url) if isinstance(url, str) else None
    return f"{match.group(1).lower()}://…" if match else "…"


def alert_url_secrets(url: str, min_chars: int = _MIN_SECRET_CHARS) -> list[str]:
    """Every part of ``url`` that may be a token, longest first (as written and %-decoded).

    Apprise puts tokens in the host (``slack://TokenA/...``, ``tgram://bot_token/``),
    the path (``gotify://host/token``, an ntfy topic), the userinfo and the
    query: all of it is masked, but a host name with a dot (or ``localhost``),
    a port, query keys and very short parts, which are not secrets and would
    garble every line they appear in (``min_chars``: the shortest part masked).
    """
    match = _SCHEME.match(url)
    rest = url[match.end() :] if match else url
    # Not ``rest`` whole: redact() also masks a secret's first characters before a
    # cut, and "127.0.0.1:8080/..." would take every "127.0.0.1:8080" with it.
    found = {url}
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        query_keys = {pair.split("=", 1)[0] for pair in parts.query.split("&")}
    except ValueError:
        host, query_keys = "", set()
    public = {host, "localhost"} if "." in host or host == "localhost" else set()
    for piece in _SEPARATORS.split(rest):
        for text in {piece, unquote(piece)}:
            if len(text) < min_chars or text.isdigit() or text in public:
                continue
            if text in query_keys:
                continue
            found.add(text)
    return sorted(found, key=len, reverse=True)


def apprise_available() -> bool:
    """Whether the Apprise library can be imported (the ``alerts`` extra)."""
    try:
        import apprise  # noqa: F401
    except ImportError:
        return False
    return True


class _Silence(logging.Filter):
    """Drops every record: Apprise logs what it could not parse, URL and all."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextlib.contextmanager
def _apprise_silenced() -> Iterator[None]:
    silence = _Silence()
    apprise_logger = logging.getLogger("apprise")
    apprise_logger.addFilter(silence)
    try:
        yield
    finally:
        apprise_logger.removeFilter(silence)


def apprise_url_problem(url: str) -> str | None:
    """Why Apprise cannot send to ``url``, or None when it can. Needs Apprise installed.

    The message never quotes the URL (callers add :func:`display_alert_url`);
    what Apprise says about it is masked first.
    """
    import apprise
    from apprise.manager_plugins import NotificationManager

    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    manager: Any = NotificationManager  # a singleton of every plugin (untyped)
    plugins = manager()
    with _apprise_silenced():
        try:
            plugin = apprise.Apprise.instantiate(url, suppress_exceptions=False)
        except Exception as exc:  # the plugin's own check of its tokens
            said = scrub(str(exc) or type(exc).__name__, alert_url_secrets(url), limit=160)
            guide = getattr(plugins[scheme], "setup_url", None) if scheme in plugins else None
            return (
                f"is not a usable {scheme}:// URL: Apprise says {said!r}; "
                f"see {guide or APPRISE_SERVICES} for its form"
            )
    if plugin is not None:
        return None
    if scheme in plugins:
        service = plugins[scheme]
        if not service.enabled:
            needs = (getattr(service, "requirements", None) or {}).get("packages_required")
            extra = f" (it needs {needs!r} installed)" if needs else ""
            return f"uses {scheme}://, which Apprise cannot send to on this system{extra}"
        return (
            f"is not a {service.service_name} URL Apprise can read; see "
            f"{getattr(service, 'setup_url', None) or APPRISE_SERVICES} for its form"
        )
    if scheme in ("http", "https"):
        return (
            "is an http(s) URL no Apprise service recognises: for a generic JSON POST "
            "write json:// (or jsons://) instead of http:// (https://), e.g. "
            "json://alerts.example/hook; for Slack, Discord, Teams... use the "
            f"service's own scheme (see {APPRISE_SERVICES})"
        )
    known = [str(s) for s in plugins.schemas(include_disabled=False)]
    close = difflib.get_close_matches(scheme, known, n=3)
    hint = f"did you mean {', '.join(f'{c}://' for c in close)}? " if close else ""
    return (
        f"has a scheme Apprise does not know ({scheme + '://' if scheme else 'none'}); "
        f"{hint}the services and their URLs: {APPRISE_SERVICES}"
    )


def alert_problems(
    url: object,
    *,
    name: object = "alerts",
    on: object = DEFAULT_EVENTS,
    models: object = (),
    tags: object = (),
    min_duration: object = 0.0,
    repeat_every: object = 0.0,
    digest: object = 0.0,
    title: object = "",
    timeout: object = DEFAULT_TIMEOUT,
    check_url: bool = True,
) -> dict[str, str]:
    """What is wrong with these ``[[alerts]]`` values: key -> message (empty when all fine).

    ``check_url``: ask Apprise whether it can send to ``url`` (it must be
    installed then). Messages never show more of the URL than its scheme.
    """
    problems: dict[str, str] = {}
    if not isinstance(url, str):
        problems["url"] = f"must be a string, got {type(url).__name__}"
    else:
        problem = _url_problem(url, check_url)
        if problem is not None:
            problems["url"] = f"{problem}, got {display_alert_url(url)!r}"
    if not isinstance(name, str):
        problems["name"] = f"must be a string, got {type(name).__name__}"
    elif not name.strip():
        problems["name"] = 'is empty: write a label for logs and metrics, e.g. "ops-slack"'
    elif len(name) > MAX_NAME_CHARS:
        problems["name"] = f"must be at most {MAX_NAME_CHARS} characters, got {len(name)}"
    elif (problem := name_problem(name)) is not None:
        problems["name"] = problem
    if (problem := _events_problem(on)) is not None:
        problems["on"] = problem
    if (problem := _list_problem(models, "model names")) is not None:
        problems["models"] = problem
    if (problem := _tags_problem(tags)) is not None:
        problems["tags"] = problem
    for key, value in (
        ("min_duration", min_duration), ("repeat_every", repeat_every), ("digest", digest),
    ):
        problem = seconds_problem(value, zero_ok=True)
        if problem is not None:
            problems[key] = problem
    if "digest" not in problems and isinstance(digest, int | float) and digest > MAX_DIGEST:
        problems["digest"] = (
            f"must be at most {MAX_DIGEST:g} seconds (a digest holds every alert back until "
            f"it closes), got {digest!r}"
        )
    problem = seconds_problem(timeout, zero_ok=False)
    if problem is None and isinstance(timeout, int | float) and timeout > MAX_TIMEOUT:
        problem = f"must be at most {MAX_TIMEOUT:g} seconds, got {timeout!r}"
    if problem is not None:
        problems["timeout"] = problem
    if not isinstance(title, str):
        problems["title"] = f"must be a string, got {type(title).__name__}"
    elif len(title) > MAX_TITLE_CHARS:
        problems["title"] = f"must be at most {MAX_TITLE_CHARS} characters, got {len(title)}"
    elif (problem := name_problem(title)) is not None:
        problems["title"] = problem
    return problems


def _url_problem(url: str, check_url: bool) -> str | None:
    if not url:
        return "is empty: write the channel's Apprise URL, e.g. slack://TokenA/TokenB/TokenC"
    if any(c.isspace() for c in url) or has_control(url):
        return "must not contain spaces or control characters"
    if not _SCHEME.match(url):
        return (
            "must be an Apprise URL, scheme://..., e.g. slack://TokenA/TokenB/TokenC, "
            "ntfy://ntfy.example/topic or json://alerts.example/hook"
        )
    if not check_url:
        return None
    if not apprise_available():
        return APPRISE_MISSING
    return apprise_url_problem(url)


def _events_problem(on: object) -> str | None:
    accepted = f"a non-empty list of {', '.join(map(repr, ALERT_EVENTS))}"
    if not isinstance(on, list | tuple):
        return f"must be {accepted}, got {type(on).__name__}"
    if not on:
        return f"is empty: a channel told nothing is no channel; expected {accepted}"
    for event in on:
        if event not in ALERT_EVENTS:
            close = difflib.get_close_matches(str(event), ALERT_EVENTS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"unknown event {event!r}{hint}; expected {accepted}"
    if len(set(on)) != len(on):
        return f"lists an event more than once; expected {accepted}"
    return None


def _list_problem(values: object, what: str) -> str | None:
    if not isinstance(values, list | tuple):
        return f"must be a list of {what}, got {type(values).__name__}"
    for value in values:
        if not isinstance(value, str) or not value:
            return f"must be a list of {what} (non-empty strings), got {value!r}"
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        return f"lists {', '.join(map(repr, duplicates))} more than once; list each once"
    return None


def _tags_problem(tags: object) -> str | None:
    if not isinstance(tags, list | tuple):
        return f"must be a list of tags, got {type(tags).__name__}"
    if len(tags) > MAX_TAGS:
        return f"at most {MAX_TAGS} tags, got {len(tags)}"
    for tag in tags:
        problem = tag_problem(tag)
        if problem is not None:
            return problem
    return _list_problem(tags, "tags")


@dataclass(frozen=True, slots=True)
class AlertChannelConfig:
    """One ``[[alerts]]`` entry: where alerts go, about what, and how often.

    ``url`` (an Apprise URL) is a :class:`Secret`; ``repr`` shows only its scheme.
    """

    url: Secret = field(repr=False)
    name: str = "alerts"  # a label for logs and metrics
    on: tuple[str, ...] = DEFAULT_EVENTS
    models: tuple[str, ...] = ()  # only these models' adapters; () = every model
    tags: tuple[str, ...] = ()  # only adapters carrying all of these tags
    min_duration: float = 0.0  # seconds down (or degraded) before it is announced
    repeat_every: float = 0.0  # seconds between "still down" reminders; 0 = none
    digest: float = 0.0  # seconds events are gathered into one message; 0 = one each
    title: str = ""  # prefix of every message's title
    timeout: float = DEFAULT_TIMEOUT  # one message's deadline; a hung send is abandoned
    check_url: bool = field(default=True, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.url, Secret):
            raise TypeError(
                f"alert url must be a Secret, got {type(self.url).__name__} "
                "(wrap it: Secret('slack://...'))"
            )
        problems = alert_problems(
            self.url.reveal(), name=self.name, on=self.on, models=self.models, tags=self.tags,
            min_duration=self.min_duration, repeat_every=self.repeat_every, digest=self.digest,
            title=self.title, timeout=self.timeout, check_url=self.check_url,
        )
        raise_problems("alerts", problems)

    def __repr__(self) -> str:  # dataclass keeps a __repr__ defined here
        return (
            f"AlertChannelConfig(url={self.display_url!r}, name={self.name!r}, on={self.on!r}, "
            f"models={self.models!r}, tags={self.tags!r}, min_duration={self.min_duration!r}, "
            f"repeat_every={self.repeat_every!r}, digest={self.digest!r}, title={self.title!r}, "
            f"timeout={self.timeout!r})"
        )

    @property
    def display_url(self) -> str:
        """``scheme://…``: all of the URL a log line or message may show."""
        return display_alert_url(self.url.reveal())

    def secrets(self, min_chars: int = _MIN_SECRET_CHARS) -> list[Secret | str]:
        """Everything to mask in text about this channel: the URL, and its parts of ``min_chars``."""
        return [self.url, *alert_url_secrets(self.url.reveal(), min_chars)]

    def wants(self, model: str, tags: frozenset[str]) -> bool:
        """Whether this channel hears about ``model``'s adapter carrying ``tags``."""
        return (not self.models or model in self.models) and set(self.tags) <= tags

"""``[webhook]``: where status transitions are POSTed, and how often.

The URL may carry credentials (userinfo, query string): nothing here ever
shows them (:func:`display_url`, :meth:`WebhookConfig.secrets`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from adapters.base import Secret

from .values import display_url, has_control, raise_problems, seconds_problem

__all__ = ["WebhookConfig", "display_url", "webhook_problems"]


def _url_secrets(url: str) -> list[str]:
    """The parts of ``url`` that may be secret, as written and as httpx re-encodes them."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    userinfo, at, _ = parts.netloc.rpartition("@")
    queries = [parts.query]
    if at:
        found += [userinfo, *userinfo.split(":", 1)]
    try:
        parsed = httpx.URL(url)
        queries.append(parsed.query.decode("ascii", "replace"))
        if parsed.userinfo:
            encoded = parsed.userinfo.decode("ascii", "replace")
            found += [encoded, *encoded.split(":", 1)]
    except (httpx.InvalidURL, ValueError, TypeError):
        pass
    for query in queries:
        if not query:
            continue
        found.append(query)
        for pair in query.split("&"):
            found += pair.split("=", 1)[1:]
    if parts.fragment:
        found.append(parts.fragment)
    # Longest first: a value that contains another is replaced whole.
    return sorted({s for s in found if s}, key=len, reverse=True)


def webhook_problems(
    url: object,
    min_interval: object = 10.0,
    timeout: object = 5.0,
    max_pending: object = 1000,
    retries: object = 2,
) -> dict[str, str]:
    """What is wrong with these ``[webhook]`` values: key -> message (empty when all fine).

    Messages follow the config parser's phrasing (``"must be ..., got ..."``)
    and never quote the URL's userinfo or query string.
    """
    problems: dict[str, str] = {}
    if not isinstance(url, str):
        problems["url"] = f"must be a string, got {type(url).__name__}"
    else:
        problem = _url_problem(url)
        if problem:
            problems["url"] = f"{problem}, got {display_url(url)!r}"
    for key, value, zero_ok in (("min_interval", min_interval, True), ("timeout", timeout, False)):
        problem = seconds_problem(value, zero_ok=zero_ok)
        if problem is not None:
            problems[key] = problem
    for key, value, low in (("max_pending", max_pending, 1), ("retries", retries, 0)):
        if isinstance(value, bool) or not isinstance(value, int):
            problems[key] = f"must be an integer, got {type(value).__name__}"
        elif value < low:
            problems[key] = f"must be at least {low}, got {value}"
    return problems


def _url_problem(url: str) -> str | None:
    if not url.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    if any(c.isspace() for c in url) or has_control(url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a port out of range
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL):
        return (
            "is not a valid URL (check the port, and write / ? # @ in a password "
            "as %2F %3F %23 %40)"
        )
    if not parts.hostname:
        return "has no host name"
    if parts.fragment:
        return "must not have a #fragment (it is never sent)"
    return None


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """``[webhook]``: where and how often transitions are POSTed.

    ``url`` may carry credentials in its userinfo (sent as Basic auth when no
    ``token`` is set) or its query string; neither is ever shown. ``token``
    is sent as ``Authorization: Bearer <token>`` (and then wins over userinfo).
    """

    url: str
    min_interval: float = 10.0  # seconds between the starts of two POSTs
    timeout: float = 5.0  # one POST's whole deadline (connect, send, answer)
    token: Secret | None = field(default=None, repr=False)
    max_pending: int = 1000  # transitions waiting at most; the oldest go first
    retries: int = 2  # failed attempts retried before a delivery counts as failed

    def __post_init__(self) -> None:
        if self.token is not None and not isinstance(self.token, Secret):
            raise TypeError(
                f"webhook token must be a Secret or None, got {type(self.token).__name__}"
            )
        problems = webhook_problems(
            self.url, self.min_interval, self.timeout, self.max_pending, self.retries
        )
        raise_problems("webhook", problems)

    def __repr__(self) -> str:  # dataclass keeps a __repr__ defined here
        return (
            f"WebhookConfig(url={display_url(self.url)!r}, min_interval={self.min_interval!r}, "
            f"timeout={self.timeout!r}, max_pending={self.max_pending!r}, "
            f"retries={self.retries!r})"
        )

    def secrets(self) -> list[Secret | str]:
        """Everything to mask in text about this webhook (token, URL credentials, query)."""
        found: list[Secret | str] = [] if self.token is None else [self.token]
        return [*found, *_url_secrets(self.url)]

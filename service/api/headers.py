"""Browser hardening on every answer: CSP, framing, sniffing, referrers; and no caching.

The service is mostly read by programs, but a browser may open any of its
URLs (the dashboard at ``/``, the reference at ``/docs``, a JSON answer a
link points at). Every answer therefore says:

* ``Content-Security-Policy``: the two pages (the dashboard and ``/docs``)
  load only this origin's own script, stylesheet and icon and fetch only
  from this origin — they have no CDN, no inline script or style and no
  inline handler (``tests/api/test_security_headers.py`` checks the files);
  every other answer (JSON, the event stream, the scripts, stylesheets and
  the icon themselves) allows nothing at all, should a browser ever render
  it. Both forbid framing (``frame-ancestors 'none'``), ``<base>`` and form
  submissions.
* ``X-Frame-Options: DENY``: framing, for browsers without CSP level 2.
* ``X-Content-Type-Options: nosniff``: a JSON or text answer is never run as
  script or rendered as HTML, whatever it contains (a model name, an
  upstream's error text).
* ``Referrer-Policy: no-referrer``: URLs (with their query) never leave in a
  ``Referer`` header.
* ``Cache-Control: no-store`` (a health answer is only true when it is made;
  a badge, :data:`OWN_CACHING`, keeps its own short ``max-age``) and
  ``Vary: Accept`` (JSON or health+json).
* The public status page (``/status``) has no script at all: its policy
  (:data:`STATUS_PAGE_POLICY`) allows its stylesheet and icon only.
"""

from __future__ import annotations

from typing import Final

from quart import Response, request

__all__ = ["OWN_CACHING", "PAGES", "PAGE_POLICY", "POLICY", "STATUS_PAGE_POLICY", "harden"]

#: Directives both policies share: no framing, no <base>, no form submission.
_COMMON: Final = "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#: Everything that is not a page: nothing may load or run.
POLICY: Final = f"default-src 'none'; {_COMMON}"
#: The dashboard and /docs: this origin's own files and API, nothing else.
PAGE_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    f"connect-src 'self'; {_COMMON}"
)
#: The endpoints that answer an HTML page.
PAGES: Final = frozenset({"dashboard", "docs"})
#: The public status page (``GET /status``): rendered on the server, no script,
#: nothing fetched; only its own stylesheet and icon.
STATUS_PAGE_POLICY: Final = f"default-src 'none'; style-src 'self'; img-src 'self'; {_COMMON}"
#: Endpoints that set their own Cache-Control (a badge may be cached a minute).
OWN_CACHING: Final = frozenset({"badge"})

_HEADERS: Final = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


async def harden(response: Response) -> Response:
    """The ``after_request`` hook: the headers above on ``response``."""
    headers = response.headers
    cache_control = headers.get("Cache-Control")
    headers.update(_HEADERS)
    if request.endpoint in OWN_CACHING and cache_control:
        headers["Cache-Control"] = cache_control
    if request.endpoint == "status_page":
        headers["Content-Security-Policy"] = STATUS_PAGE_POLICY
    else:
        headers["Content-Security-Policy"] = PAGE_POLICY if request.endpoint in PAGES else POLICY
    response.vary.add("Accept")  # JSON or health+json, by Accept
    return response

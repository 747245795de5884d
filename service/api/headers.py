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
* ``Cache-Control: no-store`` (a health answer is only true when it is made)
  and ``Vary: Accept`` (JSON or health+json).
"""

from __future__ import annotations

from typing import Final

from quart import Response, request

__all__ = ["PAGES", "PAGE_POLICY", "POLICY", "harden"]

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

_HEADERS: Final = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


async def harden(response: Response) -> Response:
    """The ``after_request`` hook: the headers above on ``response``."""
    headers = response.headers
    headers.update(_HEADERS)
    headers["Content-Security-Policy"] = PAGE_POLICY if request.endpoint in PAGES else POLICY
    response.vary.add("Accept")  # JSON or health+json, by Accept
    return response

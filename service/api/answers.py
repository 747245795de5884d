"""Answers from the live state, serialised once per state change instead of once per request.

With background checks on, a check route answers from memory — and then the
cost of an answer is all in building it: the plan for the selection, a
report of every adapter, the dictionaries, the JSON. A health API is called
by every load balancer, probe and dashboard, with the same few URLs, while
the state changes a few times a minute. So the first answer to a request is
made the usual way and, when it came from the state, kept as text; until the
state changes, an identical request (same route, query string, ``Accept``,
and access level) gets that text back.

Two values in a JSON answer are not the same from one request to the next:
the report's ``timestamp`` (now) and each result's ``age_s`` (now minus when
it was recorded). The kept text has holes for them, filled in per request;
health+json has none. An answer is kept only while nothing about it can
change without the state changing: served from the state (not ``fresh``,
nothing stale), no ``[cluster]`` (whose status is in the body), and only
until the first of its results passes ``max_age`` (from then on the usual
path serves it stale and refreshes it). At most :data:`CAPACITY` answers are
kept, the least recently used going first, and all of them are dropped when
the state changes.

An answer with an ``ETag`` (``GET /v1/route/{model}``) is kept the same way,
and a request whose ``If-None-Match`` matches it gets its 304 from here too:
the kept headers without the representation's ``Content-Type`` and
``Content-Length``, and no body (the route answers its own 304s alike).

A kept answer is sent before Quart is involved at all (:meth:`StateAnswers.lookup`,
called by the app's ASGI entry point): the status, the headers the usual path
sent (the ``after_request`` ones included) and the body, as bytes. The usual
path stays the reference: an answer from here is byte for byte what it would
have made at that moment, headers included (``tests/api/test_state_answers.py``).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import trio
from quart import Response, current_app, request
from quart.utils import encode_headers

from ..engine.manager import AdapterManager
from ..engine.report import HealthReport, ModelReport
from ..live.route import etag_matches
from ..live.state import HealthState
from .auth import Access, BearerAuth

__all__ = ["CAPACITY", "NOT_MODIFIED_DROPS", "StateAnswers"]

#: Answers kept at most (one per distinct request: route, query, Accept, access).
CAPACITY: Final = 128
#: The headers of a 200 a 304 leaves out (RFC 9110 15.4.5: no representation metadata).
NOT_MODIFIED_DROPS: Final = frozenset({b"content-type", b"content-length"})
#: Paths of constant answers kept at most (``/livez`` and its spellings).
_MAX_CONSTANT: Final = 8

#: Stand-ins for the per-request values while the text is made: negative (no real
#: age or time is), large enough that rounding to 3 digits keeps them, and so
#: far from any real value that their text cannot occur elsewhere in a body.
_TIMESTAMP: Final = -8.123456789e17
_AGE_BASE: Final = -9.123456789e17
_AGE_STEP: Final = float(2**20)  # far above the spacing of floats around 1e18


class ServiceState(Protocol):
    """What of the app's state (:class:`service.api.state.ServiceState`) this module reads."""

    @property
    def health(self) -> HealthState | None: ...
    @property
    def cluster(self) -> object | None: ...
    @property
    def manager(self) -> AdapterManager: ...
    @property
    def auth(self) -> BearerAuth: ...


#: What a kept answer is sent as: status, headers (Content-Length included), body.
Sent = tuple[int, list[tuple[bytes, bytes]], bytes]


@dataclass(frozen=True, slots=True)
class _Kept:
    version: int  # the state's ``changes`` when it was made
    expires: float  # Trio clock: when its first result passes max_age
    status: int
    headers: tuple[tuple[bytes, bytes], ...]  # all but Content-Length, as the usual path sent them
    length_at: int  # where Content-Length goes among them
    parts: tuple[str, ...]  # the text around the holes
    holes: tuple[float | None, ...]  # None: now (wall clock); else when a result was recorded
    etag: str | None = None  # the answer's ETag: a matching If-None-Match gets a 304
    not_modified: tuple[tuple[bytes, bytes], ...] = ()  # the 304's headers

    def body(self) -> bytes:
        if not self.holes:
            return self.parts[0].encode("ascii")
        now, wall = trio.current_time(), time.time()
        text = [self.parts[0]]
        for hole, part in zip(self.holes, self.parts[1:], strict=True):
            value = wall if hole is None else max(now - hole, 0.0)
            text.append(repr(round(value, 3)))
            text.append(part)
        return "".join(text).encode("ascii")


Render = Callable[[HealthReport], Response]


class StateAnswers:
    """The kept answers of one app (see the module doc)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._kept: OrderedDict[Hashable, _Kept] = OrderedDict()
        self._paths: set[object] = set()  # paths with a kept answer (or that had one)
        # Answers that never change (``/livez``), by path: kept whatever the state does.
        self._constant: dict[object, Sent] = {}
        self._version = -1
        self.hits = 0
        self.kept = 0

    def __repr__(self) -> str:
        return f"StateAnswers(kept={len(self._kept)}, hits={self.hits})"

    def __len__(self) -> int:
        return len(self._kept)

    def clear(self) -> None:
        """Forget every kept answer (the next request for each goes the usual way)."""
        self._kept.clear()
        self._paths.clear()

    @staticmethod
    def _usable(state: ServiceState) -> HealthState | None:
        if state.health is None or state.cluster is not None or not state.manager.is_open:
            return None
        return state.health

    def lookup(self, state: ServiceState, scope: Mapping[str, Any]) -> Sent | None:
        """The kept answer to the request ``scope`` (ASGI), if there is one still true; else None.

        Only a ``GET`` or ``HEAD`` without a body; a request with a wrong token
        always goes the usual way (its 401).
        """
        path = scope.get("path")
        if scope.get("method") not in ("GET", "HEAD"):
            return None
        constant = self._constant.get(path)
        if constant is not None and not _has_body(scope):
            self.hits += 1
            status, headers, body = constant
            return status, list(headers), body
        if path not in self._paths:
            return None
        health = self._usable(state)
        if health is None or _has_body(scope):
            return None  # a body to read: the usual path
        accept: list[bytes] = []
        authorization: list[str] = []
        if_none_match: list[str] = []
        for name, value in scope.get("headers", ()):
            if name == b"accept":
                accept.append(value)
            elif name == b"authorization":
                authorization.append(value.decode("latin-1"))
            elif name == b"if-none-match":
                if_none_match.append(value.decode("latin-1"))
        access = state.auth.check(authorization)
        if access is Access.DENIED:
            return None
        version = health.changes.value
        if version != self._version:
            self.clear()  # the state moved: every kept answer may be wrong
            self._version = version
            return None
        key = (scope.get("path"), scope.get("root_path"), scope.get("query_string"),
               tuple(accept), access)
        kept = self._kept.get(key)
        if kept is None:
            return None
        if trio.current_time() >= kept.expires:
            del self._kept[key]
            return None
        self._kept.move_to_end(key)
        self.hits += 1
        if kept.etag is not None and etag_matches(if_none_match, kept.etag):
            return 304, list(kept.not_modified), b""
        body = kept.body()
        headers = list(kept.headers)
        headers.insert(kept.length_at, (b"content-length", str(len(body)).encode("ascii")))
        return kept.status, headers, body

    async def keep_constant(self, render: Callable[[], Response]) -> None:
        """Keep ``render()``'s answer for the current path for good: it never changes."""
        if request.method not in ("GET", "HEAD") or len(self._constant) >= _MAX_CONSTANT:
            return
        response = await current_app.process_response(render())
        if not isinstance(response, Response):
            return
        body = await response.get_data()
        if isinstance(body, str):
            body = body.encode()
        self._constant[request.scope.get("path")] = (
            response.status_code, encode_headers(response.headers), body
        )

    async def keep(
        self, state: ServiceState, access: Access, report: HealthReport, render: Render
    ) -> None:
        """Keep the answer ``render(report)`` makes, if ``report`` is one to keep.

        ``render`` is the route's own view (report -> response); it is called
        once more, on the report with stand-ins for its per-request values.
        """
        health = self._usable(state)
        if (
            health is None
            or access is Access.DENIED
            or report.extra.get("source") != "background"
            or report.extra.get("stale")
        ):
            return
        version = health.changes.value
        expires, recorded = _expiry(health, report)
        if expires is None or trio.current_time() >= expires:
            return
        marked, holes = _marked(report, recorded)
        # The app's after_request hooks too: the kept headers are all it would send.
        response = await current_app.process_response(render(marked))
        if not isinstance(response, Response):
            return
        text = await response.get_data(as_text=True)
        split = _split(text, holes)
        if split is None or version != health.changes.value or not text.isascii():
            return  # a stand-in's text is also in a name, or the state moved meanwhile
        parts, order = split
        if version != self._version:
            self.clear()
            self._version = version
        scope = request.scope
        accept = tuple(value for name, value in scope["headers"] if name == b"accept")
        key = (scope.get("path"), scope.get("root_path"), scope.get("query_string"), accept,
               access)
        headers = encode_headers(response.headers)
        names = [name for name, _ in headers]
        length_at = names.index(b"content-length") if b"content-length" in names else len(names)
        self._paths.add(key[0])
        self._kept[key] = _Kept(
            version=version,
            expires=expires,
            status=response.status_code,
            headers=tuple(h for h in headers if h[0] != b"content-length"),
            length_at=length_at,
            parts=parts,
            holes=order,
            etag=response.headers.get("ETag"),
            not_modified=tuple(h for h in headers if h[0] not in NOT_MODIFIED_DROPS),
        )
        self.kept += 1
        while len(self._kept) > self.capacity:
            self._kept.popitem(last=False)


def _has_body(scope: Mapping[str, Any]) -> bool:
    """Whether the request ``scope`` announces a body (then it goes the usual way)."""
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False


def _expiry(
    health: HealthState, report: HealthReport
) -> tuple[float | None, dict[tuple[str, str], float]]:
    """When the first of ``report``'s results passes its max_age; when each was recorded."""
    recorded: dict[tuple[str, str], float] = {}
    expires = float("inf")
    for result in report.results():
        current = health.get(result.model, result.provider)
        if current is None or current.latest.checked_at != result.checked_at:
            return None, {}  # not the state's result after all
        recorded[(result.model, result.provider)] = current.at
        max_age = health.schedule_for(result.model, result.provider).served_max_age
        expires = min(expires, current.at + max_age)
    return expires, recorded


def _marked(
    report: HealthReport, recorded: dict[tuple[str, str], float]
) -> tuple[HealthReport, dict[str, float | None]]:
    """``report`` with stand-ins for ``timestamp`` and every age, and what each stands for."""
    holes: dict[str, float | None] = {repr(round(_TIMESTAMP, 3)): None}
    models: dict[str, ModelReport] = {}
    number = 0
    for name, model in report.models.items():
        results = {}
        for provider, result in model.results.items():
            stand_in = _AGE_BASE - number * _AGE_STEP
            number += 1
            holes[repr(round(stand_in, 3))] = recorded[(result.model, result.provider)]
            results[provider] = dataclasses.replace(result, cached_age=stand_in)
        models[name] = ModelReport(name, results)
    return dataclasses.replace(report, timestamp=_TIMESTAMP, models=models), holes


def _split(
    text: str, holes: dict[str, float | None]
) -> tuple[tuple[str, ...], tuple[float | None, ...]] | None:
    """``text`` cut at each stand-in, in order, and what fills each cut.

    None if a stand-in is there twice: its text is also in a name (unlikely
    as that is), so the cuts cannot be told apart.
    """
    pattern = re.compile("|".join(re.escape(mark) for mark in holes))
    found = [match.group() for match in pattern.finditer(text)]
    if len(found) != len(set(found)):
        return None
    return tuple(pattern.split(text)), tuple(holes[mark] for mark in found)

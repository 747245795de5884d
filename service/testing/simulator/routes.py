"""One validation order for every kind, each step asked of the kind's wire.

Pure functions of the provider and the request (no I/O): :func:`_route` checks
path, method, headers, key, body and model the way the real API does, counts
the call, and returns the reply a healthy upstream would send. What each API
serves and answers is its wire's business (:mod:`.wire`, :mod:`.kinds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .behavior import ProviderStats, SimProvider
from .connection import _Reply, _Request
from .kinds import wire_for
from .wire import Refused


@dataclass(slots=True)
class _Routed:
    """Outcome of validating a request: the reply, and whether modes apply to it."""

    reply: _Reply
    probe: bool  # True: validation passed, ``reply`` is the healthy answer


def _sent_key(kind: str, req: _Request) -> str | None:
    """The credential the client presented, the way this kind expects it."""
    return wire_for(kind).sent_key(req)


def _route(
    provider: SimProvider,
    rest: str,
    req: _Request,
    stats: ProviderStats,
    *,
    check_auth: bool = True,
) -> _Routed:
    """Validate path, method, headers, key and body the way the real API does.

    Probe counters (``stats``) move as soon as a route is recognised, whatever the
    outcome: they record what the client *called* (free or billed), which is
    what billing tests care about. A body that cannot be read is refused only
    after the key was checked, as upstreams do.
    """
    wire = wire_for(provider.kind)
    early = wire.precheck(req)
    if early is not None:
        return _Routed(early, False)
    match = wire.match(rest)
    if match is None:
        return _Routed(wire.not_found_path(req.method, rest), False)
    if req.method != match.method:
        return _Routed(wire.method_not_allowed(req.method, rest, match.method), False)

    data: Any = None
    unreadable: Refused | None = None
    try:
        data = wire.read_body(match, req)
    except Refused as refused:
        unreadable = refused
    if match.paid:
        stats.completion_probes += 1
        stats.max_tokens_requested += wire.max_tokens(match.op, data)
    else:
        stats.list_probes += 1

    missing = wire.required_headers(req)
    if missing is not None:
        return _Routed(missing, False)
    if check_auth and not match.public:
        denied = wire.check_auth(provider, req)
        if denied is not None:
            return _Routed(denied, False)
    if unreadable is not None:
        return _Routed(unreadable.reply, False)
    try:
        return _Routed(wire.answer(provider, match, data, req), True)
    except Refused as refused:
        return _Routed(refused.reply, False)

"""Reading requests: query parameters, selections, request bodies, and their errors.

Every value a client sends is checked here before anything is probed, and
every mistake becomes an :class:`ApiError`: a JSON 4xx naming the parameter
(or body field), what was wrong and what is accepted — never a traceback.
The routes (:mod:`service.api.routes_health`) only call these.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import trio
from quart import request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from adapters.base import Adapter

from ..config import MAX_TAGS, Config, tag_problem
from ..engine.manager import AdapterManager
from .suggest import CLOSE, LISTED, suggest

__all__ = [
    "BODY_ACCEPTED",
    "MAX_BATCH_BYTES",
    "ApiError",
    "CheckParams",
    "InvalidBody",
    "InvalidParameter",
    "Selection",
    "batch_too_large",
    "parse_batch_body",
    "parse_check_params",
    "plan_for",
    "read_json_body",
    "show_value",
    "single_param",
]

_BOOLEAN_ACCEPTED: Final = "one of true, false, 1, 0, yes, no (any case)"
_TRUE: Final = frozenset({"true", "1", "yes"})
_FALSE: Final = frozenset({"false", "0", "no"})
# Plain decimal notation only: float() alone would also take "nan", "inf",
# "1_000" and "0x1p3"-style oddities that no client means as a timeout.
_NUMBER: Final = re.compile(r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Bounds how much of a bad value is echoed back in an error message.
_MAX_SHOWN: Final = 60
# The largest POST /v1/health/batch body read.
MAX_BATCH_BYTES: Final = 64 * 1024
_FILTER_ACCEPTED: Final = (
    f"a comma-separated list of at most {MAX_TAGS} tags (letters, digits and _ . : -), "
    "e.g. tags=prod,eu"
)

# -- errors ---------------------------------------------------------------------


class ApiError(Exception):
    """An error answer: an HTTP status and a JSON body with at least ``error`` and ``message``."""

    def __init__(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(body["message"])
        self.status = status
        self.body = dict(body)
        self.headers = dict(headers or {})


class InvalidParameter(ApiError):
    def __init__(self, parameter: str, message: str, accepted: str) -> None:
        super().__init__(
            400,
            {
                "error": "invalid_parameter",
                "parameter": parameter,
                "message": message,
                "accepted": accepted,
            },
        )


def show_value(value: str) -> str:
    return repr(value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "...")


# -- query parameters -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckParams:
    """A check route's validated query parameters."""

    timeout: float
    use_concurrent: bool
    details: bool
    #: ``?tags=``: keep adapters having all of these; ``?exclude=``: drop any having one.
    tags: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    #: ``?fresh=true``: probe now even when background checks have a fresh result.
    fresh: bool = False


def single_param(args: MultiDict[str, str], name: str, accepted: str) -> str | None:
    values = args.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        shown = ", ".join(show_value(v) for v in values[:5])
        raise InvalidParameter(
            name, f"{name} must be given at most once, got {len(values)} values: {shown}", accepted
        )
    return values[0]


def _parse_timeout(args: MultiDict[str, str], default: float, maximum: float) -> float:
    accepted = f"a number of seconds > 0 and <= {maximum:g}, e.g. timeout={min(30, maximum):g}"
    raw = single_param(args, "timeout", accepted)
    if raw is None:
        return default
    text = raw.strip()
    value = float(text) if _NUMBER.fullmatch(text) else math.nan
    if not (math.isfinite(value) and 0 < value <= maximum):
        raise InvalidParameter(
            "timeout",
            f"timeout must be a number of seconds > 0 and <= {maximum:g}, got {show_value(raw)}",
            accepted,
        )
    return value


def _parse_bool(args: MultiDict[str, str], name: str, default: bool) -> bool:
    raw = single_param(args, name, _BOOLEAN_ACCEPTED)
    if raw is None:
        return default
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidParameter(
        name, f"{name} must be {_BOOLEAN_ACCEPTED}, got {show_value(raw)}", _BOOLEAN_ACCEPTED
    )


def _parse_tags(args: MultiDict[str, str], name: str) -> frozenset[str]:
    raw = single_param(args, name, _FILTER_ACCEPTED)
    if raw is None:
        return frozenset()
    tags = [part.strip() for part in raw.split(",")]
    if len(tags) > MAX_TAGS:
        raise InvalidParameter(
            name, f"{name} takes at most {MAX_TAGS} tags, got {len(tags)}", _FILTER_ACCEPTED
        )
    for tag in tags:
        if tag_problem(tag) is not None:
            raise InvalidParameter(
                name,
                f"{name} must be {_FILTER_ACCEPTED}; {show_value(tag)} in {show_value(raw)} is not a tag",
                _FILTER_ACCEPTED,
            )
    return frozenset(tags)


def parse_check_params(
    args: MultiDict[str, str], config: Config, *, default_timeout: float
) -> CheckParams:
    """Validate ``timeout``, ``use_concurrent``, ``details``, ``tags`` and ``exclude``.

    Raises :class:`ApiError` (400) naming the parameter.
    """
    return CheckParams(
        timeout=_parse_timeout(args, default_timeout, config.server.max_timeout),
        use_concurrent=_parse_bool(args, "use_concurrent", config.checks.use_concurrent),
        details=_parse_bool(args, "details", True),
        tags=_parse_tags(args, "tags"),
        exclude=_parse_tags(args, "exclude"),
        fresh=_parse_bool(args, "fresh", False),
    )


# -- selections ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selection:
    """Which adapters a check covers; hashable, so it is part of a single-flight key.

    ``models``/``providers`` are None for "all"; names are kept sorted so the
    order a client lists them in does not split shared runs.
    """

    models: tuple[str, ...] | None = None
    providers: tuple[str, ...] | None = None
    tags: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        params: CheckParams,
        *,
        models: Sequence[str] | None = None,
        providers: Sequence[str] | None = None,
    ) -> Selection:
        return cls(
            models=None if models is None else tuple(sorted(set(models))),
            providers=None if providers is None else tuple(sorted(set(providers))),
            tags=params.tags,
            exclude=params.exclude,
        )

    def to_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {}
        if self.models is not None:
            shown["models"] = list(self.models)
        if self.providers is not None:
            shown["providers"] = list(self.providers)
        shown["tags"] = sorted(self.tags)
        shown["exclude"] = sorted(self.exclude)
        return shown


def _unknown(kind: str, unknown: Sequence[str], configured: Sequence[str]) -> ApiError:
    """The 404 for names that are not configured: every configured one if few, else close ones.

    See :mod:`service.api.suggest`: never the whole list of a large config.
    """
    listed = ", ".join(show_value(name) for name in unknown[:10])
    if len(configured) <= LISTED:
        lists = f"'available' lists the configured {kind}s"
    else:
        lists = (
            f"'available' lists the closest (at most {CLOSE}) of the {len(configured):,} "
            f"configured {kind}s"
        )
    return ApiError(
        404,
        {
            "error": f"unknown_{kind}",
            "message": f"unknown {kind} {listed}; {lists}",
            "available": suggest(unknown, configured),
        },
    )


def plan_for(manager: AdapterManager, selection: Selection) -> dict[str, list[Adapter]]:
    """The adapters ``selection`` covers (model -> adapters); 404 for unknown names or none."""
    if selection.models is not None:
        unknown = [m for m in selection.models if m not in manager.model_adapters]
        if unknown:
            raise _unknown("model", unknown, manager.get_available_models())
    if selection.providers is not None:
        known = sorted({a.provider for _, a in manager.all_adapters()})
        unknown = [p for p in selection.providers if p not in known]
        if unknown:
            raise _unknown("provider", unknown, known)
    plan = manager.select(selection.models, selection.providers, selection.tags, selection.exclude)
    if not plan:
        raise ApiError(
            404,
            {
                "error": "empty_selection",
                "message": "no adapter matches this selection; 'selection' shows the filters",
                "selection": selection.to_dict(),
            },
        )
    return plan


# -- the batch body -----------------------------------------------------------------

_BATCH_FIELDS: Final = {
    "models": 'a non-empty list of model names, e.g. ["gpt-4", "llama3"]',
    "providers": 'a non-empty list of provider names, e.g. ["openai", "azure"]',
    "tags": f'a non-empty list of at most {MAX_TAGS} tags (letters, digits and _ . : -), '
    'e.g. ["prod", "eu"]',
    "exclude": f'a non-empty list of at most {MAX_TAGS} tags (letters, digits and _ . : -), '
    'e.g. ["local"]',
    "timeout": "a number of seconds > 0 and <= [server] max_timeout, e.g. 30",
    "use_concurrent": "true or false",
    "details": "true or false",
    "fresh": "true or false",
}
BODY_ACCEPTED: Final = (
    "a JSON object with any of: " + ", ".join(_BATCH_FIELDS) + f" (at most {MAX_BATCH_BYTES // 1024} KB)"
)


#: Seconds a request body has to arrive in full.
BODY_READ_TIMEOUT: Final = 10.0


class InvalidBody(ApiError):
    def __init__(self, field: str, message: str, accepted: str) -> None:
        super().__init__(
            400,
            {"error": "invalid_body", "field": field, "message": message, "accepted": accepted},
        )


async def read_json_body(limit: int, too_large: ApiError, accepted: str) -> bytes:
    """The body of a JSON request; ``too_large`` past ``limit`` bytes, without reading the rest.

    415 unless the Content-Type is JSON. ``accepted`` is what a body that did
    not arrive in time is told is accepted.
    """
    if request.mimetype != "application/json":
        shown = show_value(request.content_type) if request.content_type else "none"
        raise ApiError(
            415,
            {
                "error": "unsupported_media_type",
                "message": f"the body must be JSON (Content-Type: application/json), got {shown}",
                "accepted": "application/json",
            },
        )
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    data = bytearray()
    # A client that announces a body and never sends it must not hold a
    # handler (and a socket) for ever: the whole body gets a deadline.
    with trio.move_on_after(BODY_READ_TIMEOUT) as scope:
        try:
            async for chunk in request.body:
                data += chunk
                if len(data) > limit:
                    raise too_large
        except RequestEntityTooLarge:
            raise too_large from None
    if scope.cancelled_caught:
        raise InvalidBody("body", f"the body did not arrive within {BODY_READ_TIMEOUT:g} s", accepted)
    return bytes(data)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} appears twice")
        result[key] = value
    return result


def _body_names(body: Mapping[str, Any], name: str, *, tags: bool) -> list[str] | None:
    if name not in body:
        return None
    value = body[name]
    accepted = _BATCH_FIELDS[name]
    if not isinstance(value, list) or not value:
        got = "an empty list" if value == [] else _json_type(value)
        raise InvalidBody(name, f"{name} must be {accepted}, got {got}", accepted)
    if tags and len(value) > MAX_TAGS:
        raise InvalidBody(name, f"{name} takes at most {MAX_TAGS} tags, got {len(value)}", accepted)
    for item in value:
        bad = (
            tag_problem(item)
            if tags
            else (None if isinstance(item, str) and item else "names must be non-empty strings")
        )
        if bad is not None:
            shown = show_value(item) if isinstance(item, str) else _json_type(item)
            raise InvalidBody(name, f"{name} must be {accepted}; {shown} is not valid", accepted)
    return value


def _json_type(value: Any) -> str:
    """``value``'s JSON type with its article, for messages: "a string", "an object", "null"."""
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "a list", dict: "an object"}
    return names.get(type(value), f"a {type(value).__name__}")


def batch_too_large() -> InvalidBody:
    """The refusal of a batch body past :data:`MAX_BATCH_BYTES`."""
    return InvalidBody("body", f"the body is larger than {MAX_BATCH_BYTES // 1024} KB", BODY_ACCEPTED)


def parse_batch_body(
    raw: bytes, config: Config
) -> tuple[CheckParams, Sequence[str] | None, Sequence[str] | None]:
    """Validate a ``POST /v1/health/batch`` body: the options, ``models`` and ``providers``.

    Raises :class:`ApiError` (400 ``invalid_body``) naming the field and the accepted form.
    """
    if len(raw) > MAX_BATCH_BYTES:
        raise batch_too_large()
    try:
        body = json.loads(
            raw.decode("utf-8"), parse_constant=_no_constant, object_pairs_hook=_unique_keys
        )
    except (ValueError, RecursionError) as exc:
        reason = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else "not valid JSON"
        detail = f" ({exc})" if isinstance(exc, ValueError) and reason != "not UTF-8" else ""
        raise InvalidBody("body", f"the body is {reason}{detail[:200]}", BODY_ACCEPTED) from None
    if not isinstance(body, dict):
        raise InvalidBody(
            "body", f"the body must be a JSON object, got {_json_type(body)}", BODY_ACCEPTED
        )
    for key in body:
        if key not in _BATCH_FIELDS:
            close = difflib.get_close_matches(key, list(_BATCH_FIELDS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InvalidBody(key, f"unknown field {show_value(key)}{hint}", BODY_ACCEPTED)

    maximum = config.server.max_timeout
    timeout = config.checks.timeout
    if "timeout" in body:
        value = body["timeout"]
        accepted = f"a number of seconds > 0 and <= {maximum:g}, e.g. {min(30, maximum):g}"
        number = (
            float(value)
            if isinstance(value, int | float) and not isinstance(value, bool)
            and abs(value) < 1e300
            else math.nan
        )
        if not (math.isfinite(number) and 0 < number <= maximum):
            shown = repr(value) if isinstance(value, int | float) else _json_type(value)
            raise InvalidBody(
                "timeout",
                f"timeout must be a number of seconds > 0 and <= {maximum:g}, got {shown[:60]}",
                accepted,
            )
        timeout = number
    flags = {"use_concurrent": config.checks.use_concurrent, "details": True, "fresh": False}
    for name in flags:
        if name in body:
            if not isinstance(body[name], bool):
                raise InvalidBody(
                    name, f"{name} must be true or false, got {_json_type(body[name])}",
                    _BATCH_FIELDS[name],
                )
            flags[name] = body[name]
    params = CheckParams(
        timeout=timeout,
        use_concurrent=flags["use_concurrent"],
        details=flags["details"],
        tags=frozenset(_body_names(body, "tags", tags=True) or ()),
        exclude=frozenset(_body_names(body, "exclude", tags=True) or ()),
        fresh=flags["fresh"],
    )
    return (
        params,
        _body_names(body, "models", tags=False),
        _body_names(body, "providers", tags=False),
    )

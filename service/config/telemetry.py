"""``[telemetry]``: OpenTelemetry traces of check runs and probes, exported over OTLP/HTTP.

Off unless asked for: ``enabled = true``, or, with ``enabled`` left out, an
endpoint (``endpoint``, ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or ``OTEL_TRACES_EXPORTER=otlp``, unless
``OTEL_TRACES_EXPORTER=none``; ``OTEL_SDK_DISABLED=true`` turns it off
whatever the file says. The
libraries come with the ``otel`` extra: only :mod:`service.engine.telemetry`
imports them, and only when tracing is on.

Where each value comes from, the first one set wins:

* endpoint: ``endpoint``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (as is),
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` (+ ``/v1/traces``), ``http://localhost:4318/v1/traces``;
  an ``endpoint`` that does not end in ``/v1/traces`` is a collector's base URL
  and gets it appended, like ``OTEL_EXPORTER_OTLP_ENDPOINT``;
* service name: ``OTEL_SERVICE_NAME`` (the specification says it wins),
  ``service_name``, ``"router-health"``;
* headers: ``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` or ``OTEL_EXPORTER_OTLP_HEADERS``
  (the exporter reads them), and those in the variable ``headers_env`` names on top.

Headers are credentials: a message about them names the variable and the
header, never a value.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from adapters.base import Secret

from .parse_validator import KeyTypes, Validator, looks_like_a_secret
from .values import ENV_NAME, display_url, has_control, name_problem, url_problem

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_SERVICE_NAME",
    "OTEL_MISSING",
    "TelemetryConfig",
    "otel_missing",
    "parse_telemetry",
]

DEFAULT_SERVICE_NAME: Final = "router-health"
TRACES_PATH: Final = "/v1/traces"
DEFAULT_ENDPOINT: Final = "http://localhost:4318" + TRACES_PATH
#: The packages tracing needs (the ``otel`` extra; the API comes with the SDK).
OTEL_PACKAGES: Final = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")
OTEL_MISSING: Final = (
    "tracing needs the OpenTelemetry SDK and OTLP exporter, which are not installed: "
    "pip install 'router-health[otel]'"
)
#: A span name's service is a label, not a paragraph.
MAX_SERVICE_NAME_CHARS: Final = 255

_KEYS: KeyTypes = {
    "enabled": bool,
    "endpoint": str,
    "service_name": str,
    "sample_ratio": (int, float),
    "headers_env": str,
}
#: An HTTP header name (RFC 9110 token).
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: The only OTLP encoding the ``otel`` extra's exporter speaks.
_PROTOCOL: Final = "http/protobuf"


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """``[telemetry]`` with the ``OTEL_*`` variables already applied (see the module)."""

    enabled: bool = False
    #: What turned tracing on, for the line that says so ("[telemetry] enabled = true",
    #: "OTEL_EXPORTER_OTLP_ENDPOINT", ...); None while off.
    enabled_by: str | None = None
    endpoint: str = DEFAULT_ENDPOINT  # the full OTLP/HTTP traces URL
    service_name: str = DEFAULT_SERVICE_NAME
    sample_ratio: float = 1.0  # of root traces; a caller's sampled trace is always followed
    #: Headers from the variable ``headers_env`` names (name -> value), for the exporter only.
    headers: tuple[tuple[str, Secret], ...] = ()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sample_ratio) and 0 <= self.sample_ratio <= 1):
            raise ValueError(
                f"telemetry sample_ratio must be from 0 to 1, got {self.sample_ratio!r}"
            )

    @property
    def secrets(self) -> list[Secret]:
        """The header values: redacted from any text, never logged."""
        return [value for _, value in self.headers]


def otel_missing() -> bool:
    """Whether the ``otel`` extra is missing (its packages are found, not imported)."""
    for package in OTEL_PACKAGES:
        try:
            if importlib.util.find_spec(package) is None:
                return True
        except ImportError:  # a parent package is missing
            return True
    return False


def parse_telemetry(validator: Validator, data: Mapping[str, Any]) -> TelemetryConfig:
    """``[telemetry]`` and the ``OTEL_*`` variables in ``validator.env``."""
    env = validator.env
    values = validator.section(data, "telemetry", _KEYS) if "telemetry" in data else {}
    table = data.get("telemetry", {})
    if not isinstance(table, dict):
        return TelemetryConfig()
    before = len(validator.problems)
    enabled_by = _enabled_by(validator, values, table)
    if enabled_by is None:
        return TelemetryConfig()
    explicit = enabled_by.startswith("[telemetry]")
    if otel_missing():
        if explicit:
            validator.problem("telemetry.enabled", f"{OTEL_MISSING} (or set enabled = false)")
        # Turned on by the environment alone: the service starts without
        # traces and says why (service.engine.telemetry).
        return TelemetryConfig(enabled=True, enabled_by=enabled_by)
    endpoint = _endpoint(validator, values)
    _protocol(validator)
    headers = _headers(validator, values.get("headers_env"))
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"):
        if env.get(variable):
            _parse_headers(validator, "telemetry", variable, env[variable])
    service_name = env.get("OTEL_SERVICE_NAME") or values.get("service_name")
    if "service_name" in values:
        _service_name(validator, values["service_name"], "telemetry.service_name")
    if env.get("OTEL_SERVICE_NAME"):
        _service_name(validator, env["OTEL_SERVICE_NAME"], "telemetry", "OTEL_SERVICE_NAME ")
    ratio = values.get("sample_ratio", 1.0)
    if not (math.isfinite(ratio) and 0 <= ratio <= 1):
        validator.problem(
            "telemetry.sample_ratio",
            "must be the fraction of runs and probes to trace, from 0 to 1 (1 = every one, "
            f"0 = only those a traced caller asks for), got {ratio!r}",
        )
    if len(validator.problems) > before or endpoint is None or headers is None:
        return TelemetryConfig()
    return TelemetryConfig(
        enabled=True,
        enabled_by=enabled_by,
        endpoint=endpoint,
        service_name=service_name or DEFAULT_SERVICE_NAME,
        sample_ratio=float(ratio),
        headers=headers,
    )


def _enabled_by(
    validator: Validator, values: Mapping[str, Any], table: Mapping[str, Any]
) -> str | None:
    """What turns tracing on (a phrase for the log line), or None while it is off.

    Off by ``OTEL_SDK_DISABLED=true``; else as ``enabled`` says; left out, on
    by an endpoint (the file's or the variables') or ``OTEL_TRACES_EXPORTER=otlp``,
    and off by ``OTEL_TRACES_EXPORTER=none``.
    """
    env = validator.env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None  # the specification's switch for every signal: it wins
    if "enabled" in table:
        return "[telemetry] enabled = true" if values.get("enabled") else None
    exporters = [
        name.strip().lower()
        for name in env.get("OTEL_TRACES_EXPORTER", "").split(",")
        if name.strip()
    ]
    if exporters:
        if "otlp" in exporters:
            return "OTEL_TRACES_EXPORTER=otlp"
        unknown = [name for name in exporters if name != "none"]
        if unknown:
            validator.problem(
                "telemetry",
                f"OTEL_TRACES_EXPORTER={','.join(unknown)}: router-health exports traces over "
                "OTLP only; set OTEL_TRACES_EXPORTER=otlp (or none), or [telemetry] "
                "enabled = false",
            )
        return None
    if "endpoint" in table:
        return "[telemetry] endpoint"
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        if env.get(variable):
            return variable
    return None


def _endpoint(validator: Validator, values: Mapping[str, Any]) -> str | None:
    """The full traces URL, from ``endpoint`` or the variables (None: reported)."""
    env = validator.env
    if "endpoint" in values:
        return _checked_url(validator, values["endpoint"], "telemetry.endpoint", "", base=True)
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        variable = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        return _checked_url(validator, env[variable], "telemetry", f"{variable} ", base=False)
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        variable = "OTEL_EXPORTER_OTLP_ENDPOINT"
        return _checked_url(validator, env[variable], "telemetry", f"{variable} ", base=True)
    return DEFAULT_ENDPOINT


def _checked_url(
    validator: Validator, url: str, path: str, where: str, *, base: bool
) -> str | None:
    """``url`` (a base URL gets ``/v1/traces``), or None with the problem reported."""
    problem: str | None
    parts = urlsplit(url) if url.startswith(("http://", "https://")) else None
    if parts is not None and "@" in parts.netloc:
        problem = (
            "must not carry user:password@; send credentials as a header "
            "(headers_env, or OTEL_EXPORTER_OTLP_HEADERS)"
        )
    elif parts is not None and (parts.query or parts.fragment):
        problem = "must not have a query or fragment; send credentials as a header (headers_env)"
    else:
        problem = url_problem(url)
    if problem is not None:
        example = "http://otel-collector:4318"
        validator.problem(
            path, f"{where}{problem}, got {display_url(url)!r} (an OTLP/HTTP URL, e.g. {example!r})"
        )
        return None
    if not validator.target(url, path, what="send traces to the collector"):
        return None
    if base and not url.rstrip("/").endswith(TRACES_PATH):
        url = url.rstrip("/") + TRACES_PATH
    return url


def _protocol(validator: Validator) -> None:
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = validator.env.get(variable, "").strip()
        if protocol:
            if protocol != _PROTOCOL:
                validator.problem(
                    "telemetry",
                    f"{variable}={protocol}: router-health exports OTLP over HTTP as protobuf; "
                    f"set {variable}={_PROTOCOL} and point the endpoint at the collector's "
                    "OTLP/HTTP port (4318 by default), or unset it",
                )
            return  # the traces variable wins over the general one


def _headers(validator: Validator, variable: str | None) -> tuple[tuple[str, Secret], ...] | None:
    """The headers in the variable ``headers_env`` names (None: reported)."""
    if variable is None:
        return ()
    path = "telemetry.headers_env"
    if not ENV_NAME.fullmatch(variable):
        validator.problem(
            path,
            "is not an environment variable name (letters, digits, _); it looks like the "
            "headers were pasted here: put them in the environment (Authorization=Bearer%20..., "
            "comma-separated) and the variable's name here",
        )
        return None
    value = validator.env.get(variable)
    if not value:
        shown = "(name not shown: it looks like a secret)" if looks_like_a_secret(variable) else (
            variable
        )
        validator.problem(
            path,
            f"environment variable {shown} is not set (or empty); export it as the OTLP "
            "headers, name=value pairs separated by commas (e.g. "
            "Authorization=Bearer%20<token>), or remove headers_env",
        )
        return None
    return _parse_headers(validator, path, variable, value)


def _parse_headers(
    validator: Validator, path: str, variable: str, value: str
) -> tuple[tuple[str, Secret], ...] | None:
    """``name=value,name=value`` (values %-encoded, as OTEL_EXPORTER_OTLP_HEADERS); never shown."""
    headers: dict[str, Secret] = {}
    for number, item in enumerate(value.split(","), start=1):
        if not item.strip():
            continue
        name, equals, raw = item.partition("=")
        name = unquote(name).strip()
        where = f"{variable}: header {number}"
        if not equals:
            problem = "has no '=' (expected name=value pairs separated by commas)"
        elif not _HEADER_NAME.fullmatch(name):
            problem = "has a name that is not an HTTP header name (letters, digits, - _ .)"
        elif not unquote(raw).strip() or has_control(unquote(raw)):
            problem = f"({name}) has an empty value or one with control characters"
        else:
            headers[name.lower()] = Secret(unquote(raw).strip())
            continue
        validator.problem(path, f"{where} {problem}; values are not shown")
        return None
    return tuple(headers.items())


def _service_name(validator: Validator, name: str, path: str, where: str = "") -> None:
    if not name.strip():
        validator.problem(path, f'{where}is empty: name the service, e.g. "{DEFAULT_SERVICE_NAME}"')
    elif len(name) > MAX_SERVICE_NAME_CHARS:
        validator.problem(
            path, f"{where}must be at most {MAX_SERVICE_NAME_CHARS} characters, got {len(name)}"
        )
    elif (problem := name_problem(name)) is not None:
        validator.problem(path, f"{where}{problem}")

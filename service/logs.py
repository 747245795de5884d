"""Log output: the v1 human lines (default) or one JSON object per line.

``router-health --log-format json ...`` writes every record as a JSON object
on one line, for log pipelines (Loki, Elasticsearch, CloudWatch):
``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, then whatever
the record carries of :data:`FIELDS` — every probe line carries ``run_id``,
``model`` and ``provider``, and a probe's verdict line adds ``status``,
``latency_ms`` and ``failure`` — and ``exception`` when there is a traceback.
Messages are the same text as the human lines, so they are redacted the same
way (keys never reach a message in the first place).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final

__all__ = ["FIELDS", "LOG_FORMATS", "TEXT_FORMAT", "JsonFormatter", "configure_logging"]

#: The human format: the v1 lines, with a time and a level.
TEXT_FORMAT: Final = "%(asctime)s | %(levelname)-5s | %(message)s"
LOG_FORMATS: Final = ("text", "json")
#: Structured fields copied from a record's ``extra`` when present.
FIELDS: Final = ("run_id", "model", "provider", "status", "latency_ms", "failure")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        # default=str: an odd extra value must never turn a log line into a crash.
        return json.dumps(data, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Root logging to stderr in ``log_format`` (``text`` or ``json``)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request URL at INFO: noise next to the v1 lines,
    # and a URL is the one place a careless base_url could carry a key.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    # Apprise says "Sent ... notification" at INFO for every alert: our own
    # alert lines already say what was sent, without its URL.
    logging.getLogger("apprise").setLevel(max(logging.WARNING, root.level))

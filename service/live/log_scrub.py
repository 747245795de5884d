"""A logging filter masking secrets in third-party loggers' records (httpx, Apprise, urllib3).

Our own log lines never carry a secret; a library's may (a request URL with a
key in its query, Apprise's TRACE dump of a URL's tokens). The webhook notifier
and the alert channels put this filter on those loggers while they run.
"""

from __future__ import annotations

import logging
import traceback

from adapters.base import Secret, redact

__all__ = ["ScrubFilter"]


class ScrubFilter(logging.Filter):
    """Masks secrets in a record: its message, its arguments and its traceback."""

    def __init__(self, secrets: list[Secret | str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging system's business
            return True
        extra = ""
        if record.exc_info:
            extra = "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            extra = "\n" + record.exc_text
        if record.stack_info:
            extra += "\n" + record.stack_info
        cleaned = redact(message + extra, self.secrets)
        if cleaned != message + extra or extra:
            record.msg, record.args = cleaned, None
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True

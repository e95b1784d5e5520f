"""The broker's logging: the shared formats (``vifbroker.logkit``) plus the request id.

The request id lives in a ContextVar set by the request middleware; every
record logged while serving that request carries it.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import TextIO

from vifbroker.logkit import JsonFormatter, TextFormatter, configure, fields

__all__ = [
    "REQUEST_ID",
    "JsonFormatter",
    "RequestIdFilter",
    "TextFormatter",
    "configure_logging",
    "fields",
]

REQUEST_ID: ContextVar[str | None] = ContextVar("vifbroker_request_id", default=None)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Send every record of the process to ``stream`` (stderr) in ``fmt``."""
    configure(level, fmt, [RequestIdFilter()], stream)

"""Log formats both processes share: one JSON object per line, or plain text.

Context goes in ``extra=`` (``migration``, ``domain``, ``mac``, ``host``…) and
comes out as JSON keys (or ``key=value`` after a text line), never only inside
the message, so logs of the broker and the agents join on those keys and on
``request_id`` (the client sends ``X-Request-Id``; the broker logs it).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "request_id"}

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def fields(record: logging.LogRecord) -> dict[str, object]:
    """What the caller passed as ``extra=`` (migration, domain, mac, host…)."""
    return {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """The plain line, then the ``extra=`` fields as ``key=value``."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = None
        line = super().formatMessage(record)
        return line + "".join(f" {k}={v}" for k, v in fields(record).items())


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        # One encoder for every line: json.dumps with options builds a new one each call.
        self._encoder = json.JSONEncoder(ensure_ascii=False, default=str)

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            doc["request_id"] = request_id
        doc.update(fields(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return self._encoder.encode(doc)


class FieldsFilter(logging.Filter):
    """Adds the same fields to every record (the agent's ``host``)."""

    def __init__(self, **values: object) -> None:
        super().__init__()
        self.values = values

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.values.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def configure(
    level: str,
    fmt: str,
    filters: Sequence[logging.Filter] = (),
    stream: TextIO | None = None,
) -> None:
    """Send every record of the process to ``stream`` (stderr) in ``fmt`` (json | text)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    for f in filters:
        handler.addFilter(f)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aiohttp's own access log would duplicate ours.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

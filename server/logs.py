"""Logging for Function Compute / SLS: one JSON object a line (or plain text for a terminal), every field
capped so no caller-supplied value can make a line large."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

MAX_MESSAGE_CHARS = 4096
MAX_FIELD_CHARS = 256  # any string field of a structured line (session id, path, model, ...)
# Protocol libraries, at WARNING whatever LOG_LEVEL says: at DEBUG `hpack` writes every decoded header
# (`authorization: Bearer ...`, cookies) and httpx/httpcore every URL with its query string; at INFO hypercorn
# says nothing the request log does not.
QUIET_LOGGERS = ("hpack", "h2", "h11", "hypercorn", "httpcore", "httpx")


def capped(value: str, limit: int = MAX_FIELD_CHARS) -> str:
    """`value`, cut to `limit` characters with a marker saying how long it was."""
    return value if len(value) <= limit else f"{value[:limit]}...[{len(value)} chars]"


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message"}`; a record with `fields` (the request log) puts them at the top
    level instead of a message, so SLS indexes each one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"time": _iso_time(record.created), "level": record.levelname,
                                "logger": record.name}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update({k: capped(v) if isinstance(v, str) else v for k, v in fields.items()})
        else:
            line["message"] = capped(record.getMessage(), MAX_MESSAGE_CHARS)
        if record.exc_info:
            line["exception"] = capped(self.formatException(record.exc_info), MAX_MESSAGE_CHARS)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return capped(super().format(record), 2 * MAX_MESSAGE_CHARS)


def configure_logging(level: str, log_format: str) -> None:
    """The root logger writes to stderr (Function Compute sends it to SLS) at `level`."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _iso_time(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"

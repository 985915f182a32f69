"""Process logging: one JSON object per line (default) or plain text, with the request id.

SecurityGate (gateway/server/gate.py) puts each request's id (the one echoed in `x-request-id`) into `REQUEST_ID`;
contextvars follow the request into the tasks it spawns (dataloader batches, upstream
reads), so every line logged on its behalf carries the id.

JSON fields: time (UTC, ms), level, logger, message, and when known request_id, trace_id
and span_id; an exception adds `exc_type` and `exc` (the traceback). Messages are what the
code logged: gateway code never logs a credential or an upstream body. A message quoting
what a client sent is still one valid line: JSON lines go through gateway/support/safe_json.py
(lone surrogates replaced), text lines have their control characters escaped.
"""
from __future__ import annotations

import contextvars
import logging
import sys
from datetime import datetime, timezone
from typing import IO


from gateway.observability import tracing
from gateway.support import safe_json

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

LOG_FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestContextFilter(logging.Filter):
    """Adds `request_id` (and the current trace/span ids when tracing) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        ids = tracing.current_ids()
        record.trace_id, record.span_id = ids if ids else (None, None)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id and request_id != "-":
            entry["request_id"] = request_id
        if getattr(record, "trace_id", None):
            entry["trace_id"], entry["span_id"] = record.trace_id, record.span_id  # type: ignore[attr-defined]
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["exc"] = self.formatException(record.exc_info)
        return safe_json.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, with the message on one line whatever it quotes (a traceback follows on its own lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = safe_json.one_line(record.message)
        return super().formatMessage(record)


def make_handler(fmt: str = "json", stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler (stderr by default) in the given format, with the request-id filter."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    return handler


def configure_logging(fmt: str = "json", level: str = "info") -> None:
    """Root logging for the process; uvicorn's loggers propagate here (run it with log_config=None)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(fmt))
    root.setLevel(logging.getLevelNamesMapping().get(level.upper(), logging.INFO))
    # httpx logs every upstream request at INFO with its full URL (wallet ids, addresses in the
    # query string): our own lines say what matters, without identifiers.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))

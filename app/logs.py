"""Logging: JSON lines when the output is not a terminal (for log shippers), aligned text through
rich when it is (for people). Every line logged while a request is handled carries its request
id (set by the HTTP middleware in app/observability.py)."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

from rich.console import Console
from rich.logging import RichHandler

request_id: ContextVar[str | None] = ContextVar("fieldlab_request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Stamps the current request id on the record, where both formats find it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        text = f"{record.name}: {record.getMessage()}"
        return f"{text}  request_id={rid}" if rid else text


class _AlembicPreamble(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Context impl ", "Will assume "))


def configure_logging(
    level: str = "INFO", *, json_lines: bool | None = None, stream: TextIO | None = None
) -> None:
    stream = stream or sys.stderr
    if json_lines is None:
        json_lines = not stream.isatty()
    handler: logging.Handler
    if json_lines:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
    else:
        # The console's width is fixed when not a terminal (tests), so lines stay whole.
        console = Console(file=stream, stderr=stream is sys.stderr, width=None if stream.isatty() else 200)
        handler = RichHandler(console=console, markup=False, show_path=False, rich_tracebacks=True)
        handler.setFormatter(_TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic says at INFO on every start which plugins it loaded and which dialect it uses;
    # what it did ("Running upgrade a -> b") stays.
    logging.getLogger("alembic.runtime.plugins").setLevel(max(logging.WARNING, root.level))
    migration = logging.getLogger("alembic.runtime.migration")
    if not any(isinstance(f, _AlembicPreamble) for f in migration.filters):
        migration.addFilter(_AlembicPreamble())

"""The log capture handler queues without blocking: level, its own logger and the bound."""

from __future__ import annotations

import logging
from pathlib import Path

from app.config import Settings
from app.db import Database
from app.search.store import LogCapture


def _record(name: str, level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, "x.py", 1, msg, (), None)


async def test_capture_keeps_warnings_drops_oldest_beyond_its_bound_and_ignores_itself(
    tmp_path: Path,
) -> None:
    db = Database(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"))
    capture = LogCapture(db, queue_max=3)
    # Level is checked by the logger calling its handlers, as in the server.
    logger = logging.getLogger("fieldlab.capture-test")
    logger.propagate = False
    logger.addHandler(capture)
    logger.info("routine")
    logger.removeHandler(capture)
    capture.handle(_record("fieldlab_search", logging.WARNING, "could not store"))
    for i in range(5):
        capture.handle(_record("fieldlab.x", logging.WARNING, f"w{i}"))
    capture.handle(_record("uvicorn.error", logging.CRITICAL, "crit"))
    assert [e["message"] for e in capture.queue] == ["w3", "w4", "crit"]
    assert capture.dropped == 3
    assert [e["level"] for e in capture.queue] == ["warning", "warning", "critical"]
    await db.dispose()

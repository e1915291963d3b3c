"""Slow-query log: statements over FIELDLAB_SLOW_QUERY_MS are logged with their plan
(``EXPLAIN QUERY PLAN`` on SQLite, ``EXPLAIN`` on PostgreSQL) and kept in a bounded list that
``GET /api/v1/admin/slow-queries`` shows."""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("fieldlab.slowquery")


@dataclass(frozen=True, slots=True)
class SlowQuery:
    at_ms: int
    duration_ms: float
    statement: str
    plan: list[str]


class SlowQueryLog:
    def __init__(self, threshold_ms: float, keep: int = 100) -> None:
        self.threshold_s = threshold_ms / 1000
        self.entries: deque[SlowQuery] = deque(maxlen=keep)

    def attach(self, engine: AsyncEngine) -> None:
        if self.threshold_s <= 0:
            return
        sync = engine.sync_engine
        dialect = sync.dialect.name
        explain = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "

        @event.listens_for(sync, "before_cursor_execute")
        def _start(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
            conn.info.setdefault("fieldlab_started", []).append(time.perf_counter())

        @event.listens_for(sync, "after_cursor_execute")
        def _end(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
            started = conn.info["fieldlab_started"].pop()
            elapsed = time.perf_counter() - started
            if elapsed < self.threshold_s or many or not statement.lstrip().upper().startswith("SELECT"):
                return
            plan = self._plan(conn, explain + statement, params)
            entry = SlowQuery(
                int(time.time() * 1000), round(elapsed * 1000, 1), statement.strip()[:4000], plan
            )
            self.entries.append(entry)
            log.warning("slow query %.0f ms: %s | plan: %s", entry.duration_ms, " ".join(statement.split())[:500],
                        " / ".join(plan))  # fmt: skip

    @staticmethod
    def _plan(conn: Any, statement: str, params: Any) -> list[str]:
        # A fresh cursor: the slow statement's own cursor still holds its rows.
        try:
            cursor = conn.connection.cursor()
            try:
                cursor.execute(statement, params)
                return [" ".join(str(c) for c in row) for row in cursor.fetchall()][:50]
            finally:
                cursor.close()
        except Exception as exc:  # the plan is a diagnosis aid; never fail the query for it
            return [f"(no plan: {type(exc).__name__}: {exc})"]

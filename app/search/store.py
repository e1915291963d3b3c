"""Writing log events: the indexing job (JS errors and finished check runs → events), the
capture of fieldlab's own log records, and retention."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import Database, delete_in_chunks
from app.logs import request_id
from app.models import Check, CheckRun, JsError, LogEvent, SearchCursor, table
from app.search.events import from_check_run, from_js_error, from_log_record

# Not "fieldlab.*": a failing write here must not feed the capture that is failing.
log = logging.getLogger("fieldlab_search")
BATCH = 1000
DAY = 86_400_000
# Runs are read again for this long after they finished: a run that finished earlier may commit
# after a later one (two workers, or a slow commit), and a second read stores nothing twice.
RUN_OVERLAP_MS = 60_000
# PostgreSQL hands out ids before commit, so an id below the cursor may still become visible.
# Missing ids are looked at again for this long. The lowest one still watched is kept in the
# database too ("js_error_low"), so that an indexer started afresh (a restart, a new leader)
# looks at every id above it again instead of forgetting the holes.
HOLE_TTL_S = 60.0
HOLES_MAX = 10_000


async def insert_events(conn: AsyncConnection, events: list[dict[str, Any]]) -> None:
    if not events:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table(LogEvent)).on_conflict_do_nothing(index_elements=["kind", "source_id", "seq"])
    await conn.execute(stmt, events)


async def _cursor(conn: AsyncConnection, source: str) -> int:
    c = table(SearchCursor)
    found = (await conn.execute(sa.select(c.c.position).where(c.c.source == source))).scalar()
    return int(found) if found is not None else 0


async def _set_cursor(conn: AsyncConnection, source: str, position: int) -> None:
    c = table(SearchCursor)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(c).values(source=source, position=position)
    await conn.execute(stmt.on_conflict_do_update(index_elements=["source"], set_={"position": position}))


class Indexer:
    """The periodic job: reads js_error rows past its cursor and runs finished since its cursor,
    and stores their events. Its cursors live in the database (one leader runs it at a time)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.holes: dict[int, float] = {}  # js_error id → when first missed (monotonic)
        self._recovered = False

    async def run(self) -> dict[str, int]:
        if not self._recovered and self.db.write_engine.dialect.name == "postgresql":
            await self._recover_holes()
        self._recovered = True
        return {"js_errors": await self._js_errors(), "runs": await self._runs()}

    async def _recover_holes(self) -> None:
        """Pick up where a predecessor left its holes: index the rows that have appeared between
        the stored low-water mark and the cursor (events are stored once, so rows it indexed
        already cost nothing), and watch the ids still missing again, with a fresh TTL."""
        e = table(JsError)
        async with self.db.write_conn() as conn:
            cursor = await _cursor(conn, "js_error")
            low = max(await _cursor(conn, "js_error_low"), cursor - HOLES_MAX)
            if low >= cursor:
                return
            rows = [dict(r._mapping) for r in await conn.execute(
                sa.select(e).where(e.c.id > low, e.c.id < cursor))]  # fmt: skip
            await insert_events(conn, [from_js_error(r) for r in rows])
        present = {int(r["id"]) for r in rows}
        now = time.monotonic()
        for missing in range(low + 1, cursor):
            if missing not in present:
                self.holes.setdefault(missing, now)

    async def _js_errors(self) -> int:
        e = table(JsError)
        total = 0
        while True:
            async with self.db.write_conn() as conn:
                cursor = await _cursor(conn, "js_error")
                recheck = self._due_holes()
                where = e.c.id > cursor
                if recheck:
                    where = sa.or_(where, e.c.id.in_(recheck))
                rows = [dict(r._mapping) for r in await conn.execute(
                    sa.select(e).where(where).order_by(e.c.id).limit(BATCH))]  # fmt: skip
                await insert_events(conn, [from_js_error(r) for r in rows])
                ids = [int(r["id"]) for r in rows]
                for found in ids:
                    self.holes.pop(found, None)
                fresh = [i for i in ids if i > cursor]
                if fresh:
                    await _set_cursor(conn, "js_error", max(fresh))
                if conn.dialect.name == "postgresql":
                    if fresh:
                        self._note_holes(cursor, fresh)
                    low = min(self.holes) - 1 if self.holes else max([cursor, *fresh])
                    await _set_cursor(conn, "js_error_low", low)
            total += len(rows)
            if len(fresh) < BATCH:
                return total

    def _due_holes(self) -> list[int]:
        now = time.monotonic()
        for hole in [h for h, seen in self.holes.items() if now - seen > HOLE_TTL_S]:
            del self.holes[hole]
        return sorted(self.holes)[:BATCH]

    def _note_holes(self, cursor: int, fresh: list[int]) -> None:
        present = set(fresh)
        now = time.monotonic()
        start = cursor + 1 if cursor else min(fresh)
        for missing in range(max(start, max(fresh) - HOLES_MAX), max(fresh)):
            if missing not in present and len(self.holes) < HOLES_MAX:
                self.holes.setdefault(missing, now)

    async def _runs(self) -> int:
        r, c = table(CheckRun), table(Check)
        total = 0
        async with self.db.write_conn() as conn:
            since = await _cursor(conn, "check_run")
            after = (since - RUN_OVERLAP_MS, 0)
            while True:
                rows = (await conn.execute(
                    sa.select(r.c.id, r.c.started_ms, r.c.finished_ms, r.c.result, c.c.name, c.c.site_id)
                    .join(c, c.c.id == r.c.check_id)
                    .where(r.c.finished_ms.is_not(None), sa.tuple_(r.c.finished_ms, r.c.id) > after)
                    .order_by(r.c.finished_ms, r.c.id).limit(BATCH)
                )).all()  # fmt: skip
                for row in rows:
                    run = {"id": row.id, "started_ms": row.started_ms, "finished_ms": row.finished_ms,
                           "result": row.result}  # fmt: skip
                    events = from_check_run(run, row.name, row.site_id)
                    await insert_events(conn, events)
                    total += len(events)
                if rows:
                    after = (int(rows[-1].finished_ms), int(rows[-1].id))
                    await _set_cursor(conn, "check_run", max(since, after[0]))
                if len(rows) < BATCH:
                    return total


async def prune_logs(db: Database, *, cutoff_ms: int, chunk: int = 5000) -> int:
    """Delete events older than the cutoff, in chunks (SQLite's write lock is shared with ingest)."""
    t = table(LogEvent)
    return await delete_in_chunks(db, t, t.c.ts < cutoff_ms, chunk=chunk)


class LogCapture(logging.Handler):
    """fieldlab's own WARNING+ records → log events. ``emit`` only queues (it runs on whatever
    thread logged, maybe inside a database call); a task writes the queue in batches. A full
    queue drops the oldest records rather than block the code that logs."""

    def __init__(self, db: Database, *, queue_max: int, interval_s: float = 1.0,
                 level: int = logging.WARNING) -> None:  # fmt: skip
        super().__init__(level)
        self.db = db
        self.interval_s = interval_s
        self.queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=queue_max)
        self.dropped = 0
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("fieldlab_search"):
            return
        try:
            rid = getattr(record, "request_id", None) or request_id.get()
            event = from_log_record(record, rid if isinstance(rid, str) else None)
        except Exception:
            self.handleError(record)
            return
        with self._lock:
            if len(self.queue) == self.queue.maxlen:
                self.dropped += 1
            self.queue.append(event)

    def _take(self) -> list[dict[str, Any]]:
        with self._lock:
            taken = list(self.queue)
            self.queue.clear()
        return taken

    async def flush_now(self) -> int:
        events = self._take()
        if not events:
            return 0
        try:
            async with self.db.write_conn() as conn:
                await insert_events(conn, events)
        except Exception as exc:  # the database may be what the warnings are about
            log.warning("could not store %d fieldlab log records: %s", len(events), exc)
            return 0
        return len(events)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.flush_now()

    def start(self, loggers: Iterable[logging.Logger] = ()) -> None:
        for logger in loggers or (logging.getLogger(),):
            logger.addHandler(self)
        self._task = asyncio.create_task(self._loop(), name="fieldlab-log-capture")

    async def stop(self, loggers: Iterable[logging.Logger] = ()) -> None:
        for logger in loggers or (logging.getLogger(),):
            logger.removeHandler(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush_now()

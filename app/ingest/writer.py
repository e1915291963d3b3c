"""Group-commit writer: one task turns many concurrent beacons into one transaction.

A beacon request puts its rows on a bounded queue and awaits a future; the writer takes
everything queued (up to ``batch_max_rows``), writes it in one transaction, commits, and only
then resolves the futures. So a 2xx always means "committed", and the cost of a commit is shared
by every beacon that arrived while the previous one was in flight (batches grow with load by
themselves; ``batch_max_wait`` can add a small wait to grow them further).

Rows are upserts keyed by (site, page view, metric), which makes a write idempotent: a client
retrying after a 503 or a timeout cannot double count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import Database
from app.ingest.decode import Rows
from app.models import DirtyHour, JsError, Measurement, table
from app.observability import Metrics

log = logging.getLogger(__name__)


_HOUR = 3_600_000


class QueueFull(Exception):
    """The writer is behind; the endpoint answers 503 with Retry-After."""


class WriterStopped(Exception):
    """The server is shutting down; the endpoint answers 503."""


@dataclass(slots=True)
class _Pending:
    rows: Rows
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


_REPLACED = ("value", "ts", "received_ms", "url", "page_group", "device", "nav", "connection",
             "browser", "is_bot", "attribution")  # fmt: skip


def _insert_for(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def upsert_measurements(dialect: str) -> Any:
    stmt = _insert_for(dialect)(Measurement)
    return stmt.on_conflict_do_update(
        index_elements=["site_id", "pageview_id", "metric"],
        set_={name: stmt.excluded[name] for name in _REPLACED},
    )


def _mark_dirty(dialect: str) -> Any:
    stmt = _insert_for(dialect)(table(DirtyHour))
    return stmt.on_conflict_do_update(
        index_elements=["site_id", "metric", "hour_ms"], set_={"marked_ms": stmt.excluded.marked_ms}
    )


def _insert_errors(dialect: str) -> Any:
    return _insert_for(dialect)(JsError).on_conflict_do_nothing(
        index_elements=["site_id", "pageview_id", "seq"]
    )


class GroupCommitWriter:
    def __init__(
        self,
        db: Database,
        metrics: Metrics,
        *,
        queue_max: int,
        batch_max_rows: int,
        batch_max_wait_s: float,
        on_commit: Callable[[set[int]], Awaitable[None]] | None = None,
    ) -> None:
        self._db = db
        self._on_commit = on_commit
        self._metrics = metrics
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=queue_max)
        self._batch_max_rows = batch_max_rows
        self._batch_max_wait_s = batch_max_wait_s
        self._task: asyncio.Task[None] | None = None
        self._accepting = False
        dialect = db.write_engine.dialect.name
        self._upsert = upsert_measurements(dialect)
        self._insert_errors = _insert_errors(dialect)
        self._mark_dirty = _mark_dirty(dialect)
        self.last_error: str | None = None

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def healthy(self) -> bool:
        return self._accepting and self._task is not None and not self._task.done()

    def start(self) -> None:
        self._accepting = True
        self._task = asyncio.create_task(self._run(), name="fieldlab-group-commit")

    def submit(self, rows: Rows) -> asyncio.Future[None]:
        """Queue rows; the returned future resolves once they are committed."""
        if not self._accepting:
            raise WriterStopped
        pending = _Pending(rows)
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            raise QueueFull from None
        self._metrics.queue_depth.set(self._queue.qsize())
        return pending.done

    async def stop(self, drain_s: float = 30.0) -> None:
        """Refuse new beacons, commit everything already queued, then end the task."""
        self._accepting = False
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), drain_s)
        except TimeoutError:
            log.error("writer stopped with %d beacons still queued after %.0fs", self.depth, drain_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _take_batch(self) -> list[_Pending]:
        batch = [await self._queue.get()]
        rows = len(batch[0].rows.measurements)
        if self._batch_max_wait_s > 0 and self._queue.qsize() < self._batch_max_rows:
            await asyncio.sleep(self._batch_max_wait_s)
        while rows < self._batch_max_rows:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            batch.append(item)
            rows += len(item.rows.measurements)
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._take_batch()
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                for p in batch:
                    if not p.done.done():
                        p.done.set_exception(WriterStopped())
                raise
            finally:
                for _ in batch:
                    self._queue.task_done()
                self._metrics.queue_depth.set(self._queue.qsize())

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            stored = await self._write_batch(batch)
        except Exception as exc:
            if len(batch) > 1 and isinstance(exc, DataError | IntegrityError):
                # One bad beacon must not fail its neighbours: redo the batch one by one.
                log.warning(
                    "batch of %d failed on bad data (%s); retrying singly", len(batch), type(exc).__name__
                )
                for p in batch:
                    await self._commit([p])
                return
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            self._metrics.writer_errors.inc()
            log.error("writer batch of %d beacons failed: %s", len(batch), self.last_error)
            for p in batch:
                if not p.done.done():
                    p.done.set_exception(exc)
            return
        self.last_error = None
        if self._on_commit is not None:
            # Before answering: a client that got its 204 must not then read a stale cache.
            try:
                await self._on_commit({m["site_id"] for p in batch for m in p.rows.measurements})
            except Exception:
                log.exception("on-commit hook failed (cached answers may lag until their TTL)")
        self._metrics.batch_size.observe(len(batch))
        self._metrics.beacons_accepted.inc(len(batch))
        self._metrics.measurements_stored.inc(stored)
        for p in batch:
            if not p.done.done():
                p.done.set_result(None)

    async def _write_batch(self, batch: list[_Pending]) -> int:
        """Write a batch in one transaction; returns the number of measurement rows."""
        measurements: dict[tuple[int, str, str], dict[str, Any]] = {}
        errors: dict[tuple[int, str, int], dict[str, Any]] = {}
        for p in batch:
            # One statement must not touch a row twice (PostgreSQL refuses): keep the last
            # report of each (site, page view, metric), as the replacement rule says.
            for m in p.rows.measurements:
                measurements[(m["site_id"], m["pageview_id"], m["metric"])] = m
            for e in p.rows.errors:
                errors[(e["site_id"], e["pageview_id"], e["seq"])] = e
        started = time.perf_counter()
        async with self._db.write_conn() as conn:
            await self._write(conn, list(measurements.values()), list(errors.values()))
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        return len(measurements)

    async def _write(
        self, conn: AsyncConnection, measurements: list[dict[str, Any]], errors: list[dict[str, Any]]
    ) -> None:
        if measurements:
            await conn.execute(self._upsert, measurements)
            # Rows for an hour that has already closed change what its rollup must say: mark it,
            # atomically with the rows, for the rollup job and for queries (app/field).
            now = int(time.time() * 1000)
            current_hour = now - now % _HOUR
            late = {(m["site_id"], m["metric"], m["ts"] - m["ts"] % _HOUR) for m in measurements}
            marks = [
                {"site_id": s, "metric": k, "hour_ms": h, "marked_ms": now}
                for s, k, h in late
                if h < current_hour
            ]
            if marks:
                await conn.execute(
                    self._mark_dirty, sorted(marks, key=lambda r: (r["site_id"], r["metric"], r["hour_ms"]))
                )
        if errors:
            await conn.execute(self._insert_errors, errors)

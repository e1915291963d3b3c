"""Group-commit writer: one task turns many concurrent beacons into one transaction.

A beacon request puts its rows on a bounded queue and awaits a future; the writer takes
everything queued (up to ``batch_max_rows``), writes it in one transaction, commits, and only
then resolves the futures. So a 2xx always means "committed", and the cost of a commit is shared
by every beacon that arrived while the previous one was in flight (batches grow with load by
themselves; ``batch_max_wait`` can add a small wait to grow them further).

Rows are upserts keyed by (site, page view, metric), which makes a write idempotent: a client
retrying after a 503 or a timeout cannot double count.

The writer is pipelined: while one transaction commits, the next batch gathers in the queue, and
it is written as soon as the commit returns. The rows go to the driver as plain tuples in one
statement per table (SQLite: executemany; PostgreSQL: one INSERT ... SELECT FROM unnest(arrays),
one round trip), not through SQLAlchemy's per-row parameter processing, which cost more than the
database's own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from operator import itemgetter
from typing import Any

import msgspec
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import Database
from app.ingest.decode import Rows
from app.ingest.sqlite_writer import SqliteBatchThread, sqlite_path
from app.models import DirtyHour, Measurement, table
from app.observability import Metrics

log = logging.getLogger(__name__)


_HOUR = 3_600_000
_EXPIRY_TICK_S = 0.05


class QueueFull(Exception):
    """The writer is behind; the endpoint answers 503 with Retry-After."""


class WriterStopped(Exception):
    """The server is shutting down; the endpoint answers 503."""


class _Pending:
    """One beacon in the queue (a plain slotted class: built once per beacon, on the hot path)."""

    __slots__ = ("deadline_s", "done", "queued_s", "rows")

    def __init__(self, rows: Rows, done: asyncio.Future[None], queued_s: float, deadline_s: float) -> None:
        self.rows = rows
        self.done = done
        self.queued_s = queued_s
        self.deadline_s = deadline_s  # on the loop's clock; inf: no commit timeout


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


_MEASUREMENT_COLUMNS = ("site_id", "pageview_id", "metric", "value", "ts", "received_ms", "url", "page_group",
                        "device", "nav", "connection", "browser", "is_bot", "attribution")  # fmt: skip
_MEASUREMENT_PG_TYPES = ("int4", "text", "text", "float8", "int8", "int8", "text", "text", "text", "text",
                         "text", "text", "bool", "text")  # fmt: skip
_ERROR_COLUMNS = ("site_id", "pageview_id", "seq", "ts", "message", "source", "line", "col", "stack", "url",
                  "page_group", "device", "browser", "is_bot")  # fmt: skip
_ERROR_PG_TYPES = ("int4", "text", "int4", "int8", "text", "text", "int4", "int4", "text", "text", "text",
                   "text", "text", "bool")  # fmt: skip


def _raw_insert(dialect: str, table_name: str, columns: tuple[str, ...], pg_types: tuple[str, ...],
                conflict: str) -> str:  # fmt: skip
    # Only this module's constant table and column names go into the text; values are parameters.
    cols = ", ".join(columns)
    if dialect != "postgresql":
        return f"INSERT INTO {table_name} ({cols}) VALUES ({', '.join('?' * len(columns))}) {conflict}"  # noqa: S608
    arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(pg_types, 1))
    picked = ", ".join(f"{c}::jsonb" if c == "attribution" else c for c in columns)
    return f"INSERT INTO {table_name} ({cols}) SELECT {picked} FROM unnest({arrays}) AS t({cols}) {conflict}"  # noqa: S608


def raw_upsert_measurements_sql(dialect: str) -> str:
    replace = ", ".join(f"{c} = excluded.{c}" for c in _REPLACED)
    return _raw_insert(dialect, "measurement", _MEASUREMENT_COLUMNS, _MEASUREMENT_PG_TYPES,
                       f"ON CONFLICT (site_id, pageview_id, metric) DO UPDATE SET {replace}")  # fmt: skip


def raw_insert_errors_sql(dialect: str) -> str:
    return _raw_insert(dialect, "js_error", _ERROR_COLUMNS, _ERROR_PG_TYPES,
                       "ON CONFLICT (site_id, pageview_id, seq) DO NOTHING")  # fmt: skip


_encode_json = msgspec.json.Encoder().encode


# One C call per row instead of a subscript per column.
_measurement_values = itemgetter(*_MEASUREMENT_COLUMNS[:-1])  # all but attribution (last), encoded
_SITE, _METRIC, _TS = (_MEASUREMENT_COLUMNS.index(c) for c in ("site_id", "metric", "ts"))
_error_tuple = itemgetter(*_ERROR_COLUMNS)


def _measurement_tuple(m: dict[str, Any]) -> tuple[Any, ...]:
    attribution = m["attribution"]
    return (*_measurement_values(m), None if attribution is None else _encode_json(attribution).decode())


async def _execute_rows(conn: AsyncConnection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    if conn.dialect.name == "postgresql":
        # One statement, one round trip: each column goes as one array parameter.
        await conn.exec_driver_sql(sql, tuple(list(column) for column in zip(*rows, strict=True)))
    else:
        await conn.exec_driver_sql(sql, rows)  # a list of tuples: the driver's executemany


# PostgreSQL marks go through SQLAlchemy (rare: only late rows); this names that statement.
_DIRTY_MARKS = "dirty marks"
_DIRTY_COLUMNS = ("site_id", "metric", "hour_ms", "marked_ms")
_SQLITE_DIRTY_MARKS = (
    "INSERT INTO dirty_hour (site_id, metric, hour_ms, marked_ms) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (site_id, metric, hour_ms) DO UPDATE SET marked_ms = excluded.marked_ms"
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
        self._upsert_sql = raw_upsert_measurements_sql(dialect)
        self._errors_sql = raw_insert_errors_sql(dialect)
        self._mark_dirty = _mark_dirty(dialect)
        self._dirty_sql = _DIRTY_MARKS if dialect == "postgresql" else _SQLITE_DIRTY_MARKS
        self._sqlite: SqliteBatchThread | None = None
        self._conn: AsyncConnection | None = None
        self._writing_since: float | None = None  # oldest beacon of the batch being committed
        self._writing: list[_Pending] = []  # the batch being committed
        self._timeouts: asyncio.TimerHandle | None = None
        self.last_error: str | None = None

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def oldest_wait_s(self) -> float:
        """How long the oldest beacon not yet committed has waited (0 when none): writer lag."""
        waiting = [self._writing_since] if self._writing_since is not None else []
        with contextlib.suppress(IndexError):
            waiting.append(self._queue._queue[0].queued_s)  # type: ignore[attr-defined]  # peek
        return max(0.0, time.monotonic() - min(waiting)) if waiting else 0.0

    @property
    def healthy(self) -> bool:
        return self._accepting and self._task is not None and not self._task.done()

    def start(self) -> None:
        path = sqlite_path(self._db.settings.database_url)
        if path is not None:
            self._sqlite = SqliteBatchThread(path, busy_timeout_ms=self._db.settings.sqlite_busy_timeout_ms)
        self._accepting = True
        self._task = asyncio.create_task(self._run(), name="fieldlab-group-commit")

    def submit(self, rows: Rows, timeout_s: float | None = None) -> asyncio.Future[None]:
        """Queue rows; the returned future resolves once they are committed, or fails with
        ``TimeoutError`` after ``timeout_s`` (the rows stay queued and are written all the same)."""
        if not self._accepting:
            raise WriterStopped
        loop = asyncio.get_running_loop()
        deadline = math.inf if timeout_s is None else loop.time() + timeout_s
        pending = _Pending(rows, loop.create_future(), time.monotonic(), deadline)
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            raise QueueFull from None
        self._metrics.queue_depth.set(self._queue.qsize())
        if self._timeouts is None and timeout_s is not None:
            self._timeouts = loop.call_at(deadline, self._expire)
        return pending.done

    def _expire(self) -> None:
        """Fail the futures of beacons past their commit deadline. One timer for the writer
        instead of one per beacon (``asyncio.timeout`` cost ~5 us a request): it fires at the
        oldest deadline. Beacons are in arrival order and share one timeout setting, so the
        deadlines rise along the queue and the scan stops at the first one still to come."""
        self._timeouts = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for p in itertools.chain(self._writing, self._queue._queue):  # type: ignore[attr-defined]
            if p.done.done():
                continue
            if p.deadline_s > now:
                if p.deadline_s != math.inf:
                    # Not sooner than _EXPIRY_TICK_S: while the database stalls, expired beacons
                    # pile up at the head of the queue and each pass walks them again.
                    self._timeouts = loop.call_at(max(p.deadline_s, now + _EXPIRY_TICK_S), self._expire)
                    return
                continue
            p.done.set_exception(TimeoutError())

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
        if self._timeouts is not None:
            self._timeouts.cancel()
            self._timeouts = None
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        await self._close_connection()

    async def _take_batch(self) -> list[_Pending]:
        batch = [await self._queue.get()]
        rows = len(batch[0].rows.measurements)
        # Pipelining: when beacons are already waiting (they gathered during the previous
        # commit), write them now; waiting would only add latency. Only a beacon that came alone
        # waits a little for company, so a trickle does not become one commit per beacon.
        if self._batch_max_wait_s > 0 and self._queue.empty():
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
            self._writing_since = batch[0].queued_s
            self._writing = batch
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                for p in batch:
                    if not p.done.done():
                        p.done.set_exception(WriterStopped())
                raise
            finally:
                self._writing_since = None
                self._writing = []
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
            if isinstance(exc, IntegrityError):
                # One beacon the schema refuses on its own: in practice one for a site deleted
                # while this worker's site cache still held it (the endpoint answers 403). The
                # database is fine, so it is neither a writer error nor a self-alert.
                log.warning("a beacon was refused by a constraint (its site deleted?): %s", str(exc)[:200])
                batch[0].done.set_exception(exc)
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
        statements = self._statements(list(measurements.values()), list(errors.values()))
        started = time.perf_counter()
        if self._sqlite is not None:
            await self._sqlite.write(statements)
        else:
            try:
                await self._transaction(statements)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                # The held connection died (a database restart): one retry on a fresh one,
                # as the pool's pre-ping would have done.
                await self._transaction(statements)
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        return len(measurements)

    async def _transaction(self, statements: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        # The writer keeps one connection instead of a pool checkout per batch, which on
        # PostgreSQL cost a pre-ping and a reset round trip each.
        if self._conn is None or self._conn.closed:
            self._conn = await self._db.write_engine.connect()
        conn = self._conn
        try:
            async with conn.begin():
                for sql, rows in statements:
                    if sql == _DIRTY_MARKS:
                        await conn.execute(
                            self._mark_dirty, [dict(zip(_DIRTY_COLUMNS, r, strict=True)) for r in rows]
                        )
                    else:
                        await _execute_rows(conn, sql, rows)
        except BaseException:
            await self._close_connection()
            raise

    async def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    def _statements(
        self, measurements: list[dict[str, Any]], errors: list[dict[str, Any]]
    ) -> list[tuple[str, list[tuple[Any, ...]]]]:
        statements: list[tuple[str, list[tuple[Any, ...]]]] = []
        if measurements:
            rows = [_measurement_tuple(m) for m in measurements]
            statements.append((self._upsert_sql, rows))
            # Rows for an hour that has already closed change what its rollup must say: mark it,
            # atomically with the rows, for the rollup job and for queries (app/field).
            now = int(time.time() * 1000)
            current_hour = now - now % _HOUR
            late = {(r[_SITE], r[_METRIC], r[_TS] - r[_TS] % _HOUR) for r in rows if r[_TS] < current_hour}
            marks = sorted((s, k, h, now) for s, k, h in late)
            if marks:
                statements.append((self._dirty_sql, marks))
        if errors:
            statements.append((self._errors_sql, [_error_tuple(e) for e in errors]))
        return statements

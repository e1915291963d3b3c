"""The group-commit writer's SQLite transaction, run whole on one thread of its own.

Through aiosqlite every step of a batch (pool checkout, BEGIN IMMEDIATE, each executemany,
COMMIT, the pool's reset) is its own hop to aiosqlite's thread and back to the event loop; on a
busy machine each hop waits to be scheduled, and the hops, not SQLite, were most of a commit's
time. Here the batch is one function on a dedicated thread with its own connection: one hop per
batch, and the sqlite3 module releases the GIL while SQLite works, so the event loop serves
requests meanwhile. The connection has the app's pragmas (WAL, synchronous=NORMAL,
busy_timeout, foreign keys): a commit survives kill -9 exactly as before.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from itertools import chain
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)


def sqlite_path(database_url: str) -> str | None:
    """The file behind a SQLite URL; None for anything else (or an in-memory database, which
    a second connection could not see)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return url.database


# executemany takes the GIL back for every row it binds, and each time it may wait for the event
# loop's thread to let go of it (up to the 5 ms switch interval). One INSERT with many VALUES
# rows binds them all in one go and steps once: one GIL hand-over per statement.
#
# Preparing such a statement costs more than running it (~2.5 us a row), so statements are cut
# into power-of-two row counts: the few distinct texts stay in the connection's statement cache
# (128 entries; here at most 10 sizes per table) instead of a new prepare for each batch size.
# SQLite allows 32,766 parameters a statement; 14 columns x 512 rows stays well below.
_MAX_ROWS_PER_STATEMENT = 512


def _chunks(n: int) -> Iterator[tuple[int, int]]:
    """(start, size) pairs covering ``n`` rows in order, each size a power of two."""
    start, size = 0, _MAX_ROWS_PER_STATEMENT
    while start < n:
        while size > n - start:
            size //= 2
        yield start, size
        start += size


@lru_cache(maxsize=256)
def _many_rows(one_row_sql: str, n: int) -> str:
    """'INSERT ... VALUES (?, ?) ON ...' -> the same with ``n`` rows of placeholders."""
    head, _, tail = one_row_sql.partition(" VALUES ")
    one, _, rest = tail.partition(")")
    return f"{head} VALUES {', '.join([one + ')'] * n)}{rest}"


# Checkpoints (copying the WAL back into the database file, with an fsync) happen in whichever
# connection commits past the auto-checkpoint size: on the ingest writer, one commit in ~25 took
# 30-190 ms instead of ~1.5 ms, and every beacon of the batches queued behind it waited. A thread
# of its own checkpoints instead (PASSIVE: it never blocks a writer) shortly after commits; the
# writer's own auto-checkpoint stays as a backstop, at a size the checkpointer keeps the WAL far
# below, so the WAL cannot grow without bound should the checkpointer fall behind.
CHECKPOINT_EVERY_S = 0.25
_BACKSTOP_PAGES = 16_384  # 64 MiB of 4 KiB pages (SQLite's default: 1,000)


class _Checkpointer:
    def __init__(self, path: str, busy_timeout_s: float) -> None:
        self._path, self._busy_timeout_s = path, busy_timeout_s
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fieldlab-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        self._dirty.set()

    def _loop(self) -> None:
        try:
            conn = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout_s
            )
        except sqlite3.Error as exc:  # the writer's own connection fails too, and says so
            log.warning("WAL checkpointer cannot open the database: %s", exc)
            return
        try:
            while True:
                self._dirty.wait()
                self._dirty.clear()  # commits from here on make another round
                # Commits in the meantime share one checkpoint; stop() ends the wait early.
                if self._stop.is_set() or self._stop.wait(CHECKPOINT_EVERY_S):
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # e.g. a busy lock: the next round (or the backstop) does it
                    log.warning("WAL checkpoint failed: %s", exc)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        self._thread.join(timeout=5)


class SqliteBatchThread:
    def __init__(self, path: str, *, busy_timeout_ms: int) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fieldlab-sqlite-writer")
        self._conn: sqlite3.Connection | None = None
        self._checkpointer = _Checkpointer(path, busy_timeout_ms / 1000)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: the module starts no transactions of its own; we BEGIN IMMEDIATE.
        # timeout= is busy_timeout, set before the first statement: switching to WAL may wait too.
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout_ms / 1000
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA wal_autocheckpoint={_BACKSTOP_PAGES}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, statements: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        sql = "BEGIN IMMEDIATE"
        try:
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            conn.execute(sql)
            try:
                for one_row_sql, rows in statements:
                    for start, size in _chunks(len(rows)):
                        sql = _many_rows(one_row_sql, size)
                        conn.execute(sql, tuple(chain.from_iterable(rows[start : start + size])))
                sql = "COMMIT"
                conn.execute(sql)
                self._checkpointer.committed()
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
        except sqlite3.Error as exc:
            # The same exception classes as through SQLAlchemy (IntegrityError, OperationalError,
            # ...), so callers and the app's error handlers treat both paths alike.
            raise DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc

    async def write(self, statements: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        """Run ``(sql, rows)`` executemanys in one transaction; returns once committed."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._run, statements)

    def close(self) -> None:
        def close_conn() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._executor.submit(close_conn)
        self._executor.shutdown(wait=False)
        self._checkpointer.stop()

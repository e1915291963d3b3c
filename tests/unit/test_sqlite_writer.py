"""app/ingest/sqlite_writer.py: a whole batch in one transaction on its own thread, with the
same exception classes as through SQLAlchemy, and nothing half-written on failure."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from app.ingest import sqlite_writer as sw
from app.ingest.sqlite_writer import SqliteBatchThread, _chunks, sqlite_path
from app.ingest.writer import raw_upsert_measurements_sql

UPSERT = raw_upsert_measurements_sql("sqlite")


def row(site_id: int, pageview: str, value: float = 1.0) -> tuple[object, ...]:
    return (site_id, pageview, "LCP", value, 0, 0, "https://shop.example/", "/", "desktop", "navigate", "4g",
            "chrome", False, '{"element":"#hero"}')  # fmt: skip


@pytest.fixture
def db_file(tmp_path: Path, sqlite_template: Path) -> Path:
    path = tmp_path / "w.db"
    shutil.copy(sqlite_template, path)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO site (id, name, key, origins, page_groups, query_allowlist, created_ms) "
                     "VALUES (1, 's', 'k', '[]', '[]', '[]', 0)")  # fmt: skip
    return path


def stored(path: Path) -> dict[str, float]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT pageview_id, value FROM measurement").fetchall())


def test_sqlite_path() -> None:
    assert sqlite_path("sqlite+aiosqlite:////data/fieldlab.db") == "/data/fieldlab.db"
    assert sqlite_path("sqlite+aiosqlite:///rel.db") == "rel.db"
    assert sqlite_path("sqlite+aiosqlite://") is None
    assert sqlite_path("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_path("postgresql+asyncpg://postgres@127.0.0.1/x") is None


async def test_a_batch_commits_and_replaces(db_file: Path) -> None:
    writer = SqliteBatchThread(str(db_file), busy_timeout_ms=1000)
    try:
        await writer.write([(UPSERT, [row(1, "a", 1.0), row(1, "b", 2.0)])])
        await writer.write([(UPSERT, [row(1, "a", 3.0)])])
    finally:
        writer.close()
    assert stored(db_file) == {"a": 3.0, "b": 2.0}


async def test_a_failed_batch_leaves_nothing_and_raises_sqlalchemys_class(db_file: Path) -> None:
    writer = SqliteBatchThread(str(db_file), busy_timeout_ms=1000)
    try:
        with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
            await writer.write([(UPSERT, [row(1, "ok"), row(999, "orphan")])])
        assert stored(db_file) == {}  # the good row of the failed batch was rolled back
        await writer.write([(UPSERT, [row(1, "next")])])  # the connection is usable again
    finally:
        writer.close()
    assert stored(db_file) == {"next": 1.0}


async def test_a_locked_database_is_an_operational_error(db_file: Path) -> None:
    holder = sqlite3.connect(db_file, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    writer = SqliteBatchThread(str(db_file), busy_timeout_ms=50)
    try:
        with pytest.raises(OperationalError, match="locked"):
            await writer.write([(UPSERT, [row(1, "a")])])
        holder.execute("COMMIT")
        await writer.write([(UPSERT, [row(1, "a")])])
    finally:
        writer.close()
        holder.close()
    assert stored(db_file) == {"a": 1.0}


def test_statements_are_cut_into_power_of_two_row_counts() -> None:
    # Few distinct statement texts, so SQLite's statement cache keeps them prepared.
    for n in (0, 1, 3, 7, 320, 319, 512, 513, 1100):
        covered = 0
        for start, size in _chunks(n):
            assert start == covered  # in order, no gap, no overlap
            assert size & (size - 1) == 0  # a power of two
            assert size <= 512
            covered += size
        assert covered == n
    assert list(_chunks(319)) == [(0, 256), (256, 32), (288, 16), (304, 8), (312, 4), (316, 2), (318, 1)]


async def test_a_batch_cut_into_several_statements_stores_every_row(db_file: Path) -> None:
    writer = SqliteBatchThread(str(db_file), busy_timeout_ms=1000)
    rows = [row(1, f"pv-{i}", float(i)) for i in range(1100)]  # 512 + 512 + 64 + 8 + 4
    try:
        await writer.write([(UPSERT, rows)])
    finally:
        writer.close()
    assert stored(db_file) == {f"pv-{i}": float(i) for i in range(1100)}


def copied_rows(copy: Path) -> int:
    """Rows in a plain file copy of a live database; a copy taken while the checkpointer was
    writing pages may be torn ("malformed"), which counts as nothing yet, not as a failure."""
    try:
        return len(stored(copy))
    except sqlite3.DatabaseError:
        return -1
    finally:
        copy.unlink()


async def test_commits_are_checkpointed_off_the_writer(db_file: Path, tmp_path: Path) -> None:
    """The writer's own auto-checkpoint is only a backstop; a thread of its own copies the WAL
    into the database file shortly after commits. Seen from outside: a copy of the main file
    alone (no WAL beside it) soon holds the committed rows."""
    writer = SqliteBatchThread(str(db_file), busy_timeout_ms=1000)
    copy = tmp_path / "main-file-only.db"
    try:
        await writer.write([(UPSERT, [row(1, f"pv{i}", float(i)) for i in range(300)])])
        assert writer._conn is not None
        assert writer._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == sw._BACKSTOP_PAGES
        deadline = time.monotonic() + 10
        found = 0
        while found != 300 and time.monotonic() < deadline:
            await asyncio.sleep(sw.CHECKPOINT_EVERY_S)
            shutil.copy(db_file, copy)
            found = copied_rows(copy)
    finally:
        writer.close()
    assert found == 300
    assert not writer._checkpointer._thread.is_alive()  # close() ends it

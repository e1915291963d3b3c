"""Engines, SQLite pragmas, sessions and migrations.

SQLite gets two engines: a writer whose transactions start with ``BEGIN IMMEDIATE`` (so a
writer takes the lock up front instead of failing with SQLITE_BUSY half-way through, after
``busy_timeout`` has been honoured) and a reader with ordinary deferred transactions (WAL lets
readers run beside the writer). PostgreSQL uses one engine for both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def now_ms() -> int:
    return int(time.time() * 1000)


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL: readers never block the writer; NORMAL: a commit survives a process crash
        # (kill -9), only an OS crash/power loss can drop the last transactions.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


def create_engine(settings: Settings, *, writer: bool) -> AsyncEngine:
    if not settings.is_sqlite:
        return _create_async_engine(
            settings.database_url, pool_size=settings.db_pool_size, pool_pre_ping=True
        )
    engine = _create_async_engine(settings.database_url)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas(settings.sqlite_busy_timeout_ms))
    if writer:

        @event.listens_for(engine.sync_engine, "connect")
        def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
            # Stop the driver from issuing its own deferred BEGIN; we issue BEGIN IMMEDIATE.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    """The process's engines. Created by the app factory, disposed in its shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.write_engine = create_engine(settings, writer=True)
        self.read_engine = create_engine(settings, writer=False) if settings.is_sqlite else self.write_engine
        self._read_sessions = async_sessionmaker(
            self.read_engine, class_=AsyncSession, expire_on_commit=False
        )
        self._write_sessions = async_sessionmaker(
            self.write_engine, class_=AsyncSession, expire_on_commit=False
        )

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._read_sessions() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction, committed when the block ends without error."""
        async with self._write_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def write_conn(self) -> AsyncIterator[AsyncConnection]:
        async with self.write_engine.begin() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.write_engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()


async def delete_in_chunks(db: Database, table: sa.Table, *where: Any, chunk: int = 5000) -> int:
    """Delete the rows matching ``where`` (``table`` has an ``id`` key), ``chunk`` per
    transaction, so the ingest writer, which shares SQLite's single write lock, never waits
    behind one long delete. The number deleted."""
    removed = 0
    while True:
        doomed = sa.select(table.c.id).where(*where).limit(chunk).scalar_subquery()
        async with db.write_conn() as conn:
            result = await conn.execute(sa.delete(table).where(table.c.id.in_(doomed)))
        removed += result.rowcount or 0
        if (result.rowcount or 0) < chunk:
            return removed


def alembic_config(database_url: str) -> Config:
    # Imported here: Alembic is a fifth of every CLI command's start-up, and most never migrate.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Passed as an attribute, not an ini option, so '%' in passwords needs no escaping.
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade_database(database_url: str, revision: str = "head") -> None:
    """Run Alembic migrations. Synchronous: call it from a thread without a running loop
    (the CLI does; async code uses ``await upgrade_database_async(...)``)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def ensure_schema(database_url: str) -> None:
    """Upgrade an embedded (SQLite) database unless it is at the newest revision already: the
    check reads one row with the standard library, where a full Alembic run costs every CLI
    command about half a second."""
    import sqlite3

    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url

    path = make_url(database_url).database
    if path and path != ":memory:" and Path(path).is_file():
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            row = None  # no schema yet, or not readable: the upgrade says why
        if row and row[0] == ScriptDirectory.from_config(alembic_config(database_url)).get_current_head():
            return
    upgrade_database(database_url)


async def upgrade_database_async(database_url: str) -> None:
    await asyncio.to_thread(upgrade_database, database_url)

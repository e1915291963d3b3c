"""One leader among the server's worker processes runs the background work (rollups, retention,
the check scheduler); every worker serves requests.

Without this, `fieldlab serve --workers 4` on PostgreSQL would run every scheduled check four
times and race four rollup jobs over the same rows. PostgreSQL: a session-level advisory lock
held on a dedicated connection, so the leader can be on any host and leadership moves when its
connection dies. SQLite (one host by nature): an exclusive ``flock`` on a file beside the
database, released by the kernel if the process dies, even by ``kill -9``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.config import Settings
from app.db import Database

log = logging.getLogger("fieldlab.leader")

# Any fixed 64-bit number works; this one spells "fieldlab" in ASCII, so it is recognisable in
# pg_locks and unlikely to collide with another application's advisory locks.
ADVISORY_KEY = int.from_bytes(b"fieldlab", "big") & 0x7FFF_FFFF_FFFF_FFFF


def lock_file_path(settings: Settings) -> Path:
    """The SQLite leader lock: beside the database file (so two servers on one database agree)."""
    url = settings.database_url
    db_file = url.split(":///", 1)[1] if ":///" in url else ""
    if not db_file or db_file.startswith(":memory:"):
        return Path(settings.data_dir) / "fieldlab.leader.lock"
    return Path(db_file).resolve().with_name(Path(db_file).name + ".leader.lock")


class Leadership:
    """Tries to become leader every ``retry_s`` seconds; once it is, calls ``on_elected`` and
    keeps the lock until :meth:`stop` (or, on PostgreSQL, until its connection is lost, when it
    calls ``on_deposed`` and tries again)."""

    def __init__(
        self,
        db: Database,
        *,
        on_elected: Callable[[], Awaitable[None]],
        on_deposed: Callable[[], Awaitable[None]],
        retry_s: float = 5.0,
    ) -> None:
        self.db = db
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.retry_s = retry_s
        self.is_leader = False
        self._file: IO[bytes] | None = None
        self._conn: AsyncConnection | None = None
        self._task: asyncio.Task[None] | None = None

    # --- acquiring ----------------------------------------------------------------------------

    def _try_flock(self) -> bool:
        path = lock_file_path(self.db.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()).encode())
        handle.flush()
        self._file = handle
        return True

    async def _try_advisory(self) -> bool:
        conn = await self.db.write_engine.connect()
        try:
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY})).scalar()
            await conn.commit()  # the lock is session-level: it outlives this transaction
        except BaseException:
            await conn.close()
            raise
        if not got:
            await conn.close()
            return False
        self._conn = conn
        return True

    async def _try(self) -> bool:
        if self.db.settings.is_sqlite:
            return self._try_flock()
        return await self._try_advisory()

    async def _still_held(self) -> bool:
        if self._conn is None:
            return self._file is not None
        try:
            await self._conn.execute(text("SELECT 1"))
            await self._conn.commit()
            return True
        except Exception as exc:  # any failure means the session (and its lock) may be gone
            log.warning("leader connection lost, giving up leadership: %s", exc)
            await self._release()
            return False

    async def _release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                # Invalidate, not close: close() would hand the session (and its lock) back to
                # the pool. Ending the session releases the advisory lock.
                await self._conn.invalidate()
                await self._conn.close()
            self._conn = None
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the flock
            self._file = None

    # --- loop ---------------------------------------------------------------------------------

    async def _step(self) -> None:
        if not self.is_leader:
            try:
                won = await self._try()
            except Exception as exc:  # database down: stay a follower, try again later
                log.warning("leader election failed (will retry): %s", exc)
                won = False
            if won:
                self.is_leader = True
                log.info("this process (pid %d) leads background work", os.getpid())
                await self.on_elected()
        elif not await self._still_held():
            self.is_leader = False
            await self.on_deposed()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.retry_s)
            await self._step()

    async def start(self) -> None:
        """Try once now (a lone process leads before it serves), then keep trying in the background."""
        await self._step()
        self._task = asyncio.create_task(self._loop(), name="fieldlab-leader")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.is_leader:
            self.is_leader = False
            await self.on_deposed()
        await self._release()

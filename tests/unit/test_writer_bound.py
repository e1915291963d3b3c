"""GroupCommitWriter: a bounded queue (QueueFull, never unbounded memory), a clean stop
(WriterStopped), and real group commits on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from app.config import Settings
from app.db import Database
from app.ingest.decode import Rows
from app.ingest.writer import GroupCommitWriter, QueueFull, WriterStopped
from app.models import Measurement
from app.observability import Metrics
from app.sites import create_site

NOW = 1_700_000_000_000


def measurement(site_id: int, pageview: str, metric: str = "LCP", value: float = 1000.0) -> dict[str, Any]:
    return {
        "site_id": site_id,
        "pageview_id": pageview,
        "metric": metric,
        "value": value,
        "ts": NOW,
        "received_ms": NOW,
        "url": "https://shop.example/p/1",
        "page_group": "/p/:id",
        "device": "desktop",
        "nav": "navigate",
        "connection": "4g",
        "browser": "chrome",
        "is_bot": False,
        "attribution": {"element": "#hero"},
    }


def beacon(site_id: int, pageview: str, metric: str = "LCP", value: float = 1000.0) -> Rows:
    return Rows(measurements=[measurement(site_id, pageview, metric, value)])


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


async def stored(db: Database) -> dict[tuple[str, str], float]:
    m = Measurement.__table__.c  # type: ignore[attr-defined]
    async with db.read_engine.connect() as conn:
        result = await conn.execute(sa.select(m.pageview_id, m.metric, m.value))
        return {(pv, metric): value for pv, metric, value in result}


# --- the bound, against a SQLite database whose write lock is held by someone else -----------


@pytest.fixture
def locked_sqlite(tmp_path: Path, sqlite_template: Path) -> Iterator[tuple[str, sqlite3.Connection]]:
    """A migrated SQLite file and a plain sqlite3 connection holding its write lock
    (``BEGIN IMMEDIATE``), so the writer's own ``BEGIN IMMEDIATE`` waits in busy_timeout."""
    path = tmp_path / "x.db"
    shutil.copy(sqlite_template, path)
    holder = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    holder.execute("PRAGMA journal_mode=WAL")  # as the app's engines set it: no mode switch later
    holder.execute("INSERT INTO site (name, key, origins, page_groups, query_allowlist, created_ms) "
                   "VALUES ('s', 'k', '[]', '[]', '[]', 0)")  # fmt: skip
    yield f"sqlite+aiosqlite:///{path}", holder
    if holder.in_transaction:
        holder.execute("ROLLBACK")
    holder.close()


def blocked_writer(
    locked: tuple[str, sqlite3.Connection],
    *,
    queue_max: int,
    batch_max_rows: int,
    metrics: Metrics | None = None,
) -> tuple[Database, GroupCommitWriter]:
    """A started writer on ``locked_sqlite``'s file, with the lock taken first: its first batch
    waits in busy_timeout until the test commits the holder's transaction."""
    url, holder = locked
    db = Database(Settings(database_url=url, sqlite_busy_timeout_ms=20_000))
    writer = GroupCommitWriter(
        db, metrics or Metrics(), queue_max=queue_max, batch_max_rows=batch_max_rows, batch_max_wait_s=0
    )
    holder.execute("BEGIN IMMEDIATE")
    writer.start()
    return db, writer


async def test_queue_is_bounded_while_the_database_is_busy(
    locked_sqlite: tuple[str, sqlite3.Connection],
) -> None:
    _, holder = locked_sqlite
    metrics = Metrics()
    db, writer = blocked_writer(locked_sqlite, queue_max=3, batch_max_rows=1, metrics=metrics)
    try:
        first = writer.submit(beacon(1, "pv-0"))
        # Let the writer take the first beacon off the queue and block on the write lock.
        for _ in range(100):
            await asyncio.sleep(0.01)
            if writer.depth == 0:
                break
        assert writer.depth == 0
        assert not first.done()

        queued = [writer.submit(beacon(1, f"pv-{i}")) for i in range(1, 4)]
        assert writer.depth == 3
        assert sample(metrics, "fieldlab_ingest_queue_depth") == 3
        with pytest.raises(QueueFull):
            writer.submit(beacon(1, "pv-overflow"))
        with pytest.raises(QueueFull):
            writer.submit(Rows())
        assert writer.depth == 3
        assert not any(f.done() for f in [first, *queued])

        # Writer lag (a self-alert): the first beacon has waited since it was submitted.
        await asyncio.sleep(0.2)
        assert writer.oldest_wait_s >= 0.2

        holder.execute("COMMIT")  # the database is free again: everything queued commits
        await asyncio.wait_for(asyncio.gather(first, *queued), 20)
        for _ in range(100):  # the writer clears its mark just after answering the batch
            if writer.oldest_wait_s == 0.0:
                break
            await asyncio.sleep(0.01)
        assert writer.oldest_wait_s == 0.0
        assert set(await stored(db)) == {(f"pv-{i}", "LCP") for i in range(4)}
        # batch_max_rows=1: one beacon per transaction
        assert sample(metrics, "fieldlab_writer_batch_size_count") == 4
        assert sample(metrics, "fieldlab_writer_batch_size_sum") == 4

        # Room again once the writer has caught up.
        await asyncio.wait_for(writer.submit(beacon(1, "pv-later")), 20)
        assert (("pv-later", "LCP")) in await stored(db)
    finally:
        await writer.stop(drain_s=5)
        await db.dispose()

    assert not writer.healthy
    with pytest.raises(WriterStopped):
        writer.submit(beacon(1, "pv-after-stop"))


async def test_stop_drains_what_is_queued(locked_sqlite: tuple[str, sqlite3.Connection]) -> None:
    _, holder = locked_sqlite
    db, writer = blocked_writer(locked_sqlite, queue_max=10, batch_max_rows=500)
    try:
        futures = [writer.submit(beacon(1, f"pv-{i}")) for i in range(5)]
        await asyncio.sleep(0.05)
        stopping = asyncio.ensure_future(writer.stop(drain_s=20))
        await asyncio.sleep(0.05)
        with pytest.raises(WriterStopped):  # refused at once, while the queue still drains
            writer.submit(beacon(1, "pv-late"))
        assert not stopping.done()
        holder.execute("COMMIT")
        await asyncio.wait_for(stopping, 20)
        assert all(f.done() and f.exception() is None for f in futures)
        assert len(await stored(db)) == 5
    finally:
        await db.dispose()


async def test_commit_timeout_fails_the_wait_but_the_rows_are_still_written(
    locked_sqlite: tuple[str, sqlite3.Connection],
) -> None:
    """What the endpoint's 503 "slow to commit" rests on: past ``timeout_s`` the future fails
    with TimeoutError (one writer timer, not one per beacon); the beacon stays queued and is
    committed once the database frees up, so a client retry is an idempotent upsert."""
    _, holder = locked_sqlite
    db, writer = blocked_writer(locked_sqlite, queue_max=10, batch_max_rows=1)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        writing = writer.submit(beacon(1, "pv-0"), timeout_s=0.2)  # taken at once, blocked on the lock
        await asyncio.sleep(0.1)
        queued = writer.submit(beacon(1, "pv-1"), timeout_s=0.2)  # still in the queue
        untimed = writer.submit(beacon(1, "pv-2"))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(writing, 5)
        assert 0.2 <= loop.time() - started < 2
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(queued, 5)
        assert loop.time() - started >= 0.3
        assert not untimed.done()
        holder.execute("COMMIT")
        await asyncio.wait_for(untimed, 20)
        assert set(await stored(db)) == {("pv-0", "LCP"), ("pv-1", "LCP"), ("pv-2", "LCP")}
    finally:
        await writer.stop(drain_s=5)
        await db.dispose()


async def test_writer_never_started_refuses(tmp_path: Path) -> None:
    db = Database(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db"))
    writer = GroupCommitWriter(db, Metrics(), queue_max=3, batch_max_rows=10, batch_max_wait_s=0)
    try:
        assert not writer.healthy
        with pytest.raises(WriterStopped):
            writer.submit(Rows())
        await writer.stop()  # stopping a writer that never ran is harmless
        with pytest.raises(WriterStopped):
            writer.submit(Rows())
    finally:
        await db.dispose()


# --- real group commits, both backends ---------------------------------------------------------


async def test_concurrent_beacons_are_group_committed(db: Database) -> None:
    site = await create_site(db=db, name="shop", origins=["https://shop.example"])
    assert site.id is not None
    metrics = Metrics()
    writer = GroupCommitWriter(db, metrics, queue_max=1000, batch_max_rows=50, batch_max_wait_s=0.005)
    writer.start()

    async def send(i: int) -> None:
        await writer.submit(beacon(site.id, f"pv-{i}", value=float(i)))  # type: ignore[arg-type]

    try:
        await asyncio.wait_for(asyncio.gather(*(send(i) for i in range(200))), 60)
    finally:
        await writer.stop()

    rows = await stored(db)
    assert rows == {(f"pv-{i}", "LCP"): float(i) for i in range(200)}
    batches = sample(metrics, "fieldlab_writer_batch_size_count")
    assert sample(metrics, "fieldlab_writer_batch_size_sum") == 200
    assert batches < 200  # at least one transaction carried more than one beacon
    assert sample(metrics, "fieldlab_writer_batch_size_bucket", {"le": "1.0"}) < batches
    assert sample(metrics, "fieldlab_writer_batch_size_bucket", {"le": "50.0"}) == batches  # batch_max_rows
    assert batches >= 4
    assert sample(metrics, "fieldlab_beacons_accepted_total") == 200
    assert sample(metrics, "fieldlab_measurements_stored_total") == 200
    assert sample(metrics, "fieldlab_writer_errors_total") == 0
    assert writer.last_error is None


@contextlib.asynccontextmanager
async def shop_writer(
    db: Database, *, wait_s: float
) -> AsyncIterator[tuple[int, Metrics, GroupCommitWriter]]:
    """A site "shop" and a started writer for it (stopped on the way out)."""
    site = await create_site(db=db, name="shop", origins=["https://shop.example"])
    assert site.id is not None
    metrics = Metrics()
    writer = GroupCommitWriter(db, metrics, queue_max=100, batch_max_rows=500, batch_max_wait_s=wait_s)
    writer.start()
    try:
        yield site.id, metrics, writer
    finally:
        await writer.stop()


async def test_duplicate_keys_in_one_batch_keep_the_last_value(db: Database) -> None:
    async with shop_writer(db, wait_s=0.005) as (site_id, metrics, writer):
        # Submitted without yielding to the loop: the writer finds all of them in one batch.
        futures = [
            writer.submit(beacon(site_id, "pv-1", "CLS", 0.05)),
            writer.submit(beacon(site_id, "pv-1", "LCP", 1800)),
            writer.submit(beacon(site_id, "pv-1", "CLS", 0.12)),
            writer.submit(
                Rows(
                    measurements=[
                        measurement(site_id, "pv-2", "INP", 100),
                        measurement(site_id, "pv-2", "INP", 250),  # twice within one beacon, too
                    ]
                )
            ),
            writer.submit(beacon(site_id, "pv-1", "CLS", 0.31)),
        ]
        await asyncio.wait_for(asyncio.gather(*futures), 30)
        assert sample(metrics, "fieldlab_writer_batch_size_count") == 1
        assert sample(metrics, "fieldlab_writer_batch_size_sum") == 5
        # collapsed before writing: one row written per (site, page view, metric)
        assert sample(metrics, "fieldlab_measurements_stored_total") == 3
        assert await stored(db) == {("pv-1", "CLS"): 0.31, ("pv-1", "LCP"): 1800.0, ("pv-2", "INP"): 250.0}

        # A re-report in a later transaction replaces the stored value too (the upsert).
        await asyncio.wait_for(writer.submit(beacon(site_id, "pv-1", "CLS", 0.02)), 30)
        assert sample(metrics, "fieldlab_writer_batch_size_count") == 2
        assert (await stored(db))[("pv-1", "CLS")] == 0.02
        assert len(await stored(db)) == 3


async def refuse_inserts(db: Database, pageview: str) -> None:
    """Make the database itself fail (not a constraint) on the given page view's rows: a trigger
    that raises on PostgreSQL, one that fails a function on SQLite."""
    async with db.write_engine.begin() as conn:
        if db.settings.is_sqlite:
            await conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON measurement "
                f"WHEN NEW.pageview_id = '{pageview}' BEGIN SELECT json('refused by the test'); END"
            )
        else:
            await conn.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
            )
            await conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON measurement FOR EACH ROW "
                f"WHEN (NEW.pageview_id = '{pageview}') EXECUTE FUNCTION refuse()"
            )


async def test_a_failed_batch_fails_its_futures_and_the_writer_goes_on(db: Database) -> None:
    await refuse_inserts(db, "pv-refused")
    async with shop_writer(db, wait_s=0) as (site_id, metrics, writer):
        bad = writer.submit(beacon(site_id, "pv-refused"))
        with pytest.raises(sa.exc.DBAPIError, match=r"malformed JSON|refused by the test"):
            await asyncio.wait_for(bad, 30)
        assert writer.last_error is not None
        assert sample(metrics, "fieldlab_writer_errors_total") == 1
        await asyncio.wait_for(writer.submit(beacon(site_id, "pv-ok")), 30)
        assert writer.last_error is None
        assert writer.healthy
        assert await stored(db) == {("pv-ok", "LCP"): 1000.0}


async def test_a_beacon_the_schema_refuses_fails_alone_and_is_no_writer_error(db: Database) -> None:
    """A beacon for a site that is gone (deleted while a worker's cache held it) fails its own
    future; its batch neighbours are stored, and the database is not reported as failing."""
    async with shop_writer(db, wait_s=0.05) as (site_id, metrics, writer):
        good = writer.submit(beacon(site_id, "pv-ok"))
        orphan = writer.submit(beacon(site_id + 999, "pv-orphan"))  # no such site: foreign key
        with pytest.raises(sa.exc.IntegrityError, match=r"(?i)foreign key"):
            await asyncio.wait_for(orphan, 30)
        await asyncio.wait_for(good, 30)
        assert sample(metrics, "fieldlab_writer_errors_total") == 0
        assert writer.last_error is None
        assert writer.healthy
        assert await stored(db) == {("pv-ok", "LCP"): 1000.0}

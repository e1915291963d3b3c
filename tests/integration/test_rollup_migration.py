"""Migration 0004 on SQLite and PostgreSQL: the rollup indexes in the order the queries need,
the schema equal to the models, stale sketches (made with the old ALPHA) cleared for a rebuild,
and a clean way back down."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

from app.db import alembic_config, upgrade_database
from tests.conftest import PG_HOST

OLD_ORDER = ["site_id", "period", "metric", "start_ms", "page_group", "device", "nav", "connection"]
NEW_ORDER = ["site_id", "period", "metric", "page_group", "device", "nav", "connection", "start_ms"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all (migrations are run by the test)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrate.db'}"
        return
    name = f"fieldlab_migrate_{uuid.uuid4().hex[:10]}"
    admin_dsn = f"{PG_HOST}/postgres".replace("postgresql+asyncpg://", "postgresql://")

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_HOST}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _run(url: str, work: Any) -> Any:
    async def go() -> Any:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(work)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _unique_columns(conn: sa.Connection) -> list[str]:
    [constraint] = [
        c for c in sa.inspect(conn).get_unique_constraints("rollup") if c["name"] == "uq_rollup_segment"
    ]
    return list(constraint["column_names"])


def _seed(conn: sa.Connection) -> None:
    conn.execute(sa.text("INSERT INTO site (id, name, key, origins, page_groups, query_allowlist, created_ms) "
                         "VALUES (1, 's', 'k', '[]', '[]', '[]', 0)"))  # fmt: skip
    _seed_rollup(conn)


def _seed_rollup(conn: sa.Connection) -> None:
    conn.execute(sa.text("INSERT INTO rollup (site_id, period, metric, start_ms, page_group, device, nav, "
                         "connection, count, good, poor, sketch) VALUES (1, 'h', 'LCP', 0, '*', '*', '*', '*', "
                         "1, 1, 0, :sketch)"), {"sketch": b"\x93\x00\x91\x01\x91\x01"})  # fmt: skip
    conn.execute(sa.text("INSERT INTO rollup_state (id, rolled_until_ms) VALUES (1, 3600000)"))


def _counts(conn: sa.Connection) -> tuple[int, int]:
    rollups = conn.execute(sa.text("SELECT count(*) FROM rollup")).scalar_one()
    state = conn.execute(sa.text("SELECT count(*) FROM rollup_state")).scalar_one()
    return int(rollups), int(state)


def _rollup_diffs(conn: sa.Connection) -> list[Any]:
    diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    return [d for d in diffs if "rollup" in repr(d) and "rollup_state" not in repr(d)]


def test_0004_reorders_the_rollup_indexes_and_clears_old_sketches(empty_url: str) -> None:
    upgrade_database(empty_url, "0003")
    assert _run(empty_url, _unique_columns) == OLD_ORDER
    _run(empty_url, _seed)

    upgrade_database(empty_url, "0004")
    assert _run(empty_url, _unique_columns) == NEW_ORDER
    indexes = _run(
        empty_url, lambda c: {i["name"]: i["column_names"] for i in sa.inspect(c).get_indexes("rollup")}
    )
    assert indexes["ix_rollup_site_period_metric_start"] == ["site_id", "period", "metric", "start_ms"]
    # Sketches of the old ALPHA are gone and the watermark reset, so the job rebuilds from raw.
    assert _run(empty_url, _counts) == (0, 0)
    assert _run(empty_url, _rollup_diffs) == []

    _run(empty_url, _seed_rollup)
    command.downgrade(alembic_config(empty_url), "0003")
    assert _run(empty_url, _unique_columns) == OLD_ORDER
    assert "ix_rollup_site_period_metric_start" not in _run(
        empty_url, lambda c: {i["name"] for i in sa.inspect(c).get_indexes("rollup")}
    )
    assert _run(empty_url, _counts) == (0, 0)  # new-ALPHA sketches do not survive either way
    upgrade_database(empty_url)
    assert _run(empty_url, _unique_columns) == NEW_ORDER

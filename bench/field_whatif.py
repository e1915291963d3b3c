"""``field_bench.py --whatif``: the app-side fixes this benchmark recommends, applied from the
outside (app/ is not edited), so their effect is measured on the same data in the same run.

1. ``rollup_hour`` reads an hour with ``site_id = ? AND ts`` range only; the index is
   (site_id, metric, ts), so that is a scan of every raw row of the site for every hour rebuilt
   (O(raw table) per hour, quadratic for a backfill). Fix: ``metric IN (METRICS)``.
2. ``_replace`` deletes by (site_id, period, start_ms) and ``rollup_day`` reads (site_id, period,
   start_ms range): with start_ms after metric in the index, both scan every rollup row of the
   period. Fix: ``metric IN (METRICS)`` in both, so (site_id, period, metric, start_ms) is used.
3. Field queries give every segment column by equality and start_ms as a range, but the unique
   index has start_ms 4th, so 30 days of one cell walk every cube cell of every hour. Fix (a
   migration): unique (site_id, period, metric, page_group, device, nav, connection, start_ms),
   plus a plain index (site_id, period, metric, start_ms) for the job's statements in (2).
4. A ``group_by`` gives its column as ``!= '*'``, which stops the index at that column, and the
   planner then prefers the (…, metric, start_ms) index. Fix: for the closed sets (device, nav,
   connection) use ``IN (the values the writer can store)``; page_group keeps ``!=`` here (an
   ``IN (SELECT DISTINCT page_group FROM the day rollups)`` works, see the report).

(3) is simulated by re-creating the still empty ``rollup`` table with the proposed indexes right
after migrating; (1), (2) and (4) by patched copies of the functions.
"""

from __future__ import annotations

import typing
from typing import Any

import sqlalchemy as sa

from app.db import Database
from app.field import query, rollups
from app.field.rollups import DAY, HOUR, Agg, M, R, Segment
from app.ingest.schemas import METRICS, NavType
from app.models import Rollup, table

DESCRIPTION = (
    "rollup unique index reordered to (site_id, period, metric, page_group, device, nav, connection, "
    "start_ms) + index (site_id, period, metric, start_ms); metric IN (METRICS) in rollup_hour, "
    "_replace and rollup_day; group_by on device/nav/connection as IN (known values)"
)
CLOSED_SETS: dict[str, tuple[str, ...]] = {
    "device": ("mobile", "tablet", "desktop"),
    "nav": typing.get_args(NavType),
    "connection": ("slow-2g", "2g", "3g", "4g", "unknown"),
}


def _rollup_ddl(dialect: str) -> list[str]:
    pk = "id BIGSERIAL PRIMARY KEY" if dialect == "postgresql" else "id INTEGER NOT NULL PRIMARY KEY"
    blob = "BYTEA" if dialect == "postgresql" else "BLOB"
    return [
        "DROP TABLE rollup",
        f"CREATE TABLE rollup ({pk}, site_id INTEGER NOT NULL REFERENCES site (id), "
        "period VARCHAR(1) NOT NULL, metric VARCHAR(8) NOT NULL, start_ms BIGINT NOT NULL, "
        "page_group VARCHAR(256) NOT NULL, device VARCHAR(8) NOT NULL, nav VARCHAR(24) NOT NULL, "
        "connection VARCHAR(16) NOT NULL, count INTEGER NOT NULL, good INTEGER NOT NULL, "
        f"poor INTEGER NOT NULL, sketch {blob} NOT NULL, CONSTRAINT uq_rollup_segment UNIQUE "
        "(site_id, period, metric, page_group, device, nav, connection, start_ms))",
        "CREATE INDEX ix_rollup_site_period_metric_start ON rollup (site_id, period, metric, start_ms)",
    ]


async def rollup_hour(db: Database, site_id: int, hour_ms: int) -> int:
    stmt = sa.select(M.metric, M.page_group, M.device, M.nav, M.connection, M.value).where(
        M.site_id == site_id, M.metric.in_(METRICS), M.ts >= hour_ms, M.ts < hour_ms + HOUR,
        M.is_bot.is_(False),
    )  # fmt: skip
    async with db.read_engine.connect() as conn:
        raw = (await conn.execute(stmt)).all()
    cells = rollups.build_cube(raw)
    rows = rollups._rollup_rows(site_id, "h", hour_ms, cells)
    await rollups._replace(db, site_id, "h", hour_ms, rows)
    return len(rows)


async def _replace(
    db: Database, site_id: int, period: str, start_ms: int, rows: list[dict[str, Any]]
) -> None:
    async with db.write_conn() as conn:
        await conn.execute(
            sa.delete(table(Rollup)).where(
                R.site_id == site_id, R.period == period, R.metric.in_(METRICS), R.start_ms == start_ms
            )
        )
        if rows:
            await conn.execute(sa.insert(table(Rollup)), rows)


async def rollup_day(db: Database, site_id: int, day_ms: int) -> int:
    stmt = sa.select(
        R.metric, R.page_group, R.device, R.nav, R.connection, R.count, R.good, R.poor, R.sketch
    ).where(
        R.site_id == site_id, R.period == "h", R.metric.in_(METRICS), R.start_ms >= day_ms,
        R.start_ms < day_ms + DAY,
    )  # fmt: skip
    cells: dict[tuple[str, Segment], Agg] = {}
    async with db.read_engine.connect() as conn:
        for metric, pg, device, nav, connection, count, good, poor, sketch in await conn.execute(stmt):
            agg = Agg.from_row(count, good, poor, sketch)
            key = (metric, (pg, device, nav, connection))
            if key in cells:
                cells[key].merge(agg)
            else:
                cells[key] = agg
    rows = rollups._rollup_rows(site_id, "d", day_ms, cells)
    await rollups._replace(db, site_id, "d", day_ms, rows)
    return len(rows)


_original_rollup_where = query._rollup_where


def _rollup_where(scope: query.Scope, period: str, start: int, end: int) -> list[Any]:
    where = _original_rollup_where(scope, period, start, end)
    group = scope.group_by
    if group in CLOSED_SETS and scope.filters.get(group) is None:
        where.append(R[group].in_(CLOSED_SETS[group]))
    return where


async def apply(db: Database) -> str:
    """Call on a freshly migrated, empty database, before anything is loaded."""
    async with db.write_conn() as conn:
        for ddl in _rollup_ddl(db.write_engine.dialect.name):
            await conn.execute(sa.text(ddl))
    rollups.rollup_hour = rollup_hour  # type: ignore[assignment]
    rollups._replace = _replace  # type: ignore[assignment]
    rollups.rollup_day = rollup_day  # type: ignore[assignment]
    query._rollup_where = _rollup_where  # type: ignore[assignment]
    return DESCRIPTION

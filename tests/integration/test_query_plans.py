"""Every read the field API makes on the big tables uses an index (SQLite's plan, read through
the slow-query log with a zero threshold). PostgreSQL's planner rightly prefers sequential
scans on tiny test tables, so its plans are shown by the benchmark on real volumes instead."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import AsyncTestClient

from app.config import Settings
from app.db import Database
from app.field import query, rollups
from app.field.retention import prune
from app.field.rollups import DAY, HOUR, floor_to
from app.ingest.schemas import METRICS
from app.models import Rollup, RollupState, table
from app.server import create_app
from app.sites import create_site
from app.sketch import Sketch
from tests.conftest import ADMIN, beacon_headers, make_site


async def test_field_queries_use_indexes(settings: Settings) -> None:
    if not settings.is_sqlite:
        pytest.skip("plan shapes are asserted on SQLite; see the module docstring")
    app = create_app(replace(settings, slow_query_ms=0.0001, query_cache_ttl_s=0))
    async with AsyncTestClient(app=app) as c:
        c.headers["authorization"] = f"Bearer {ADMIN}"
        site = await make_site(c)
        body = {"id": "pv", "url": "https://shop.example/", "metrics": {"LCP": 1000, "INP": 100},
                "attribution": {"LCP": {"element": "img"}}}  # fmt: skip
        await c.post(f"/api/v1/beacon?site={site['key']}", content=json.dumps(body), headers=beacon_headers())
        await c.post("/api/v1/admin/jobs/rollups/run")
        base = f"/api/v1/sites/{site['id']}"
        for path in (
            f"{base}/summary?since=2026-01-01T00:00:00Z&device=mobile",
            f"{base}/series?bucket=hour&since=2026-01-01T00:00:00Z&group_by=device",
            f"{base}/series?bucket=day&since=2026-01-01T00:00:00Z&page=/",
            f"{base}/distribution",
            f"{base}/attribution?metric=LCP",
        ):
            assert (await c.get(path)).status_code == 200, path
        plans = (await c.get("/api/v1/admin/slow-queries")).json()
    checked = 0
    for entry in plans:
        statement, plan = entry["statement"], " | ".join(entry["plan"])
        for name in ("measurement", "rollup"):
            if f"FROM {name}" in statement and "rollup_state" not in statement:
                checked += 1
                assert f"SCAN {name}" not in plan.replace(f"SCAN {name} USING", "SEARCH"), (statement, plan)
                assert "USING" in plan, (statement, plan)
                assert "INDEX" in plan, (statement, plan)
    assert checked >= 6, f"too few field queries seen: {checked}"


# --- rollup indexes on both databases, at a volume where PostgreSQL's planner has a choice ----

ROLLUP_HOURS = 96
PAGES = ("*", "(legacy)", "/", "/cart", "/product/:id", "/search")  # "(legacy)" sorts before "*"
CELL_DEVICES = ("*", "mobile", "desktop", "tablet")


async def _fill_rollups(db: Database, site_id: int, start: int) -> None:
    """Hourly and daily rollup rows shaped like a busy site's cube (5 metrics x 6 page groups x 4
    devices x 2 navs x 2 connections per period)."""
    sketch = Sketch.of([1000.0, 2000.0, 3000.0]).to_bytes()
    cells = list(itertools.product(METRICS, PAGES, CELL_DEVICES, ("*", "navigate"), ("*", "4g")))
    periods = [("h", start + i * HOUR) for i in range(ROLLUP_HOURS)]
    periods += [("d", start + i * DAY) for i in range(ROLLUP_HOURS // 24)]
    rows = [
        {"site_id": site_id, "period": period, "start_ms": at, "metric": metric, "page_group": page,
         "device": device, "nav": nav, "connection": conn, "count": 3, "good": 2, "poor": 0, "sketch": sketch}
        for period, at in periods
        for metric, page, device, nav, conn in cells
    ]  # fmt: skip
    async with db.write_conn() as conn:
        for i in range(0, len(rows), 5000):
            await conn.execute(sa.insert(table(Rollup)), rows[i : i + 5000])
    if db.write_engine.dialect.name != "sqlite":
        async with db.write_engine.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).exec_driver_sql(
                "ANALYZE rollup"
            )


async def _site_with_rollups(db: Database) -> tuple[int, int]:
    site = await create_site(db=db, name="plans", origins=["https://shop.example"])
    assert site.id is not None
    start = floor_to(int(time.time() * 1000), DAY) - 10 * DAY
    await _fill_rollups(db, site.id, start)
    async with db.write_conn() as conn:
        # Hours before this count as rolled up, so queries read the rollups above.
        await conn.execute(
            sa.insert(table(RollupState)).values(id=1, rolled_until_ms=start + ROLLUP_HOURS * HOUR)
        )
    return site.id, start


@contextlib.asynccontextmanager
async def _captured(db: Database) -> AsyncIterator[list[tuple[str, Any]]]:
    """Statements on ``rollup`` sent by the app while the block runs, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if not many and "rollup " in statement.replace("\n", " ") + " " and "rollup_state" not in statement:
            seen.append((statement, params))

    engines = {db.read_engine.sync_engine, db.write_engine.sync_engine}  # one engine on PostgreSQL
    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", grab)


def _full_scan(plan: str) -> bool:
    # SQLite's "SCAN rollup USING INDEX" walks an index in order: still a full scan.
    return "Seq Scan on rollup" in plan or "SCAN rollup" in plan


async def _plan(db: Database, statement: str, params: Any) -> str:
    postgres = db.read_engine.dialect.name == "postgresql"
    async with db.read_engine.connect() as conn:
        rows = (
            await conn.exec_driver_sql(
                ("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + statement, params
            )
        ).all()
    return " | ".join(str(r[0]) if postgres else str(r[-1]) for r in rows)


async def test_rollup_reads_and_rebuilds_use_their_indexes(db: Database) -> None:
    """Each field query names one cube cell (or, with group_by, a list of cells) by equality and
    start_ms as a range: one range of the unique index, start_ms last. The job's per-period
    reads and deletes, and retention, go by (site_id, period, metric, start_ms)."""
    site_id, start = await _site_with_rollups(db)
    until = start + ROLLUP_HOURS * HOUR
    postgres = db.read_engine.dialect.name == "postgresql"
    unique = "uq_rollup_segment" if postgres else "sqlite_autoindex_rollup_1"
    period_index = "ix_rollup_site_period_metric_start"

    cell_queries = [
        query.Scope(site_id, "LCP", start, until, bucket="hour"),
        query.Scope(
            site_id, "LCP", start, until, query.Filters(device="mobile", page_group="/cart"), bucket="hour"
        ),
        query.Scope(site_id, "LCP", start, until, bucket="hour", group_by="device"),
        query.Scope(site_id, "LCP", start, until, bucket="hour", group_by="page_group"),
        query.Scope(site_id, "INP", start, until, bucket="day", group_by="nav"),
        query.Scope(site_id, "CLS", start, until),
    ]
    for scope in cell_queries:
        async with _captured(db) as seen:
            await query.aggregate(db, scope)
        assert seen, scope
        for statement, params in seen:
            plan = await _plan(db, statement, params)
            assert unique in plan, (scope, plan)
            assert not _full_scan(plan), (scope, plan)
            if "RECURSIVE" in statement:  # the page-group walk: a seek per group
                # (PostgreSQL's EXPLAIN does not print the recursive step's subplan.)
                assert postgres or "page_group>?" in plan, plan
                continue
            cond = plan.split(unique, 1)[1]
            # Every segment column by equality before the start_ms range: one contiguous range.
            assert "connection" in cond, (scope, plan)
            assert "start_ms" in cond, (scope, plan)
            assert cond.index("connection") < cond.index("start_ms"), plan.replace(" | ", "\n")

    async with _captured(db) as seen:
        await rollups.rollup_day(db, site_id, start)
        await prune(db, now_ms=start, raw_days=1, rollup_days=1)
    kinds = {s.split()[0] for s, _ in seen}
    assert {"SELECT", "DELETE"} <= kinds, kinds  # the INSERT is an executemany: not captured
    for statement, params in seen:
        if statement.startswith("INSERT"):
            continue
        plan = await _plan(db, statement, params)
        used = period_index if period_index in plan else unique
        assert used in plan, (statement, plan)
        cond = plan.split(used, 1)[1]
        assert "metric" in cond, ("the index stops before metric", statement, plan)
        assert "start_ms" in cond, ("the index stops before start_ms", statement, plan)
        assert not _full_scan(plan), (statement, plan)


async def test_group_by_page_walks_page_groups_sorting_before_the_wildcard(db: Database) -> None:
    """The page-group list of a group_by comes from a walk over the unique index that must step
    over '*' without stopping, so groups sorting before and after it are all found."""
    site_id, start = await _site_with_rollups(db)
    scope = query.Scope(site_id, "TTFB", start, start + 48 * HOUR, bucket="hour", group_by="page_group")
    aggs = await query.aggregate(db, scope)
    assert {group for _, group in aggs} == set(PAGES) - {"*"}
    assert len(aggs) == 48 * (len(PAGES) - 1)
    assert all(agg.count == 3 for agg in aggs.values())

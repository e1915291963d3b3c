"""Every read the field API makes on the big tables uses an index (SQLite's plan, read through
the slow-query log with a zero threshold). PostgreSQL's planner rightly prefers sequential
scans on tiny test tables, so its plans are shown by the benchmark on real volumes instead."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from litestar.testing import AsyncTestClient

from app.config import Settings
from app.server import create_app
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
        for table in ("measurement", "rollup"):
            if f"FROM {table}" in statement and "rollup_state" not in statement:
                checked += 1
                assert f"SCAN {table}" not in plan.replace(f"SCAN {table} USING", "SEARCH"), (statement, plan)
                assert "USING" in plan, (statement, plan)
                assert "INDEX" in plan, (statement, plan)
    assert checked >= 6, f"too few field queries seen: {checked}"

"""Query cases, exact raw baselines, latency and sizes for bench/field_bench.py.

Each case is answered twice: by fieldlab's own query code (``app.field.query``: rollups for the
closed whole hours, raw rows for the partial hours at the edges), and exactly from the raw
``measurement`` table — on SQLite the values are fetched and the p75 computed per hour with
``app.field.stats.percentile``; on PostgreSQL by ``percentile_cont(0.75)``, the same definition.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.db import Database
from app.field import query
from app.field.stats import percentile

HOUR = 3_600_000
METRIC = "LCP"
Answer = dict[tuple[str | None, int | None], tuple[float | None, int]]  # (group, hour) -> (p75, n)


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    title: str
    bucket: str | None = "hour"
    device: str | None = None
    page_group: str | None = None
    group_by: str | None = None


CASES = (
    Case("hourly", "30-day hourly p75 LCP"),
    Case(
        "hourly_filtered",
        "30-day hourly p75 LCP, device=mobile, page=/product/:id",
        device="mobile",
        page_group="/product/:id",
    ),
    Case("hourly_by_device", "30-day hourly p75 LCP, group_by=device", group_by="device"),
    Case("summary", "30-day p75 LCP summary (one number)", bucket=None),
)


async def rollup_answer(db: Database, case: Case, site_id: int, since: int, until: int) -> Answer:
    filters = query.Filters(page_group=case.page_group, device=case.device)
    if case.bucket is None:
        out = await query.summary(
            db=db, site_id=site_id, since_ms=since, until_ms=until, filters=filters, metrics=(METRIC,)
        )
        lcp = out["metrics"][METRIC]
        return {(None, None): (lcp["p75"], lcp["count"])}
    scope = query.Scope(site_id, METRIC, since, until, filters, bucket=case.bucket, group_by=case.group_by)
    result = await query.series(db=db, scope=scope, stat="p75")
    return {
        (line["group"], point["t"]): (point["value"], point["count"])
        for line in result["series"]
        for point in line["points"]
    }


def _raw_sql(case: Case, postgres: bool) -> str:
    group = "device" if case.group_by == "device" else "NULL"
    hour = "ts - ts % 3600000" if case.bucket == "hour" else "NULL"
    where = "site_id = :site AND metric = :metric AND ts >= :since AND ts < :until AND NOT is_bot"
    where += " AND device = :device" if case.device else ""
    where += " AND page_group = :page_group" if case.page_group else ""
    if postgres:
        return (
            f"SELECT {group} AS g, {hour} AS h, percentile_cont(0.75) WITHIN GROUP (ORDER BY value), "
            f"count(*) FROM measurement WHERE {where} GROUP BY 1, 2"
        )
    return f"SELECT {group} AS g, {hour} AS h, value FROM measurement WHERE {where}"


async def raw_answer(db: Database, case: Case, site_id: int, since: int, until: int) -> Answer:
    postgres = db.read_engine.dialect.name == "postgresql"
    params: dict[str, Any] = {"site": site_id, "metric": METRIC, "since": since, "until": until}
    if case.device:
        params["device"] = case.device
    if case.page_group:
        params["page_group"] = case.page_group
    async with db.read_engine.connect() as conn:
        result = await conn.execute(sa.text(_raw_sql(case, postgres)), params)
        if postgres:
            return {(g, None if h is None else int(h)): (float(p), int(n)) for g, h, p, n in result}
        values: dict[tuple[str | None, int | None], list[float]] = {}
        for g, h, value in result:
            key = (g, None if h is None else int(h))
            bucket = values.get(key)
            if bucket is None:
                values[key] = bucket = []
            bucket.append(value)
    out: Answer = {}
    for key, vals in values.items():
        vals.sort()
        out[key] = (percentile(vals, 0.75), len(vals))
    return out


def compare(rollup: Answer, exact: Answer) -> dict[str, Any]:
    """Relative p75 error of the rollup answer against the exact one, per bucket."""
    errors: list[float] = []
    beyond_rounding: list[float] = []  # answers are rounded to 0.1 ms: that much is not sketch error
    count_mismatches = 0
    for key, (exact_p75, exact_n) in exact.items():
        got = rollup.get(key)
        if got is None or got[0] is None or exact_p75 is None:
            count_mismatches += 1
            continue
        if got[1] != exact_n:
            count_mismatches += 1
        if exact_p75 > 0:
            errors.append(abs(got[0] - exact_p75) / exact_p75)
            beyond_rounding.append(max(0.0, abs(got[0] - exact_p75) - 0.05) / exact_p75)
    extra = len(set(rollup) - set(exact))
    return {
        "buckets": len(exact),
        "buckets_compared": len(errors),
        "extra_buckets_in_rollup_answer": extra,
        "count_mismatches": count_mismatches,
        "max_rel_error": max(errors) if errors else None,
        "mean_rel_error": statistics.fmean(errors) if errors else None,
        "max_rel_error_beyond_0.05ms_rounding": max(beyond_rounding) if beyond_rounding else None,
    }


def latency_summary(samples_s: list[float]) -> dict[str, Any]:
    ordered = sorted(samples_s)
    return {
        "reps": len(ordered),
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 2),
        "p95_ms": round(percentile(ordered, 0.95) * 1000, 2),
        "min_ms": round(ordered[0] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


async def time_calls(
    call: Callable[[], Awaitable[Answer]], *, reps: int, warmup: int = 1, budget_s: float | None = None
) -> tuple[list[float], Answer]:
    """Run ``call`` ``warmup`` times untimed, then ``reps`` times timed. With ``budget_s``, a
    slow call is repeated only as often as fits the budget (at least 3 times)."""
    answer: Answer = {}
    for _ in range(warmup):
        answer = await call()
    samples: list[float] = []
    while len(samples) < reps:
        started = time.perf_counter()
        answer = await call()
        samples.append(time.perf_counter() - started)
        if budget_s is not None and len(samples) >= 3 and sum(samples) > budget_s:
            break
    return samples, answer


# --- sizes ---------------------------------------------------------------------------------


async def rollup_stats(db: Database) -> dict[str, Any]:
    """Rollup rows per period, sketch bytes and an estimated stored size: sketch + column
    values + 8 B per integer column + ~24 B per row of record/tuple header (no indexes)."""
    stmt = sa.text(
        "SELECT period, count(*), sum(length(sketch)), "
        "sum(length(page_group) + length(device) + length(nav) + length(connection) + length(metric) + 1) "
        "FROM rollup GROUP BY period ORDER BY period"
    )
    out: dict[str, Any] = {"by_period": {}}
    rows = sketch = estimate = 0
    async with db.read_engine.connect() as conn:
        for period, n, sketch_bytes, text_bytes in await conn.execute(stmt):
            est = int(sketch_bytes) + int(text_bytes) + int(n) * (6 * 8 + 24)
            out["by_period"][period] = {
                "rows": int(n),
                "sketch_bytes": int(sketch_bytes),
                "estimated_bytes": est,
            }
            rows, sketch, estimate = rows + int(n), sketch + int(sketch_bytes), estimate + est
        raw_rows = (await conn.execute(sa.text("SELECT count(*) FROM measurement"))).scalar_one()
    out.update(rows=rows, sketch_bytes=sketch, estimated_bytes=estimate, measurement_rows=int(raw_rows),
               avg_sketch_bytes=round(sketch / rows, 1) if rows else None)  # fmt: skip
    return out


async def storage_sizes(db: Database) -> dict[str, Any]:
    """Bytes on disk of each table with its indexes: ``pg_total_relation_size`` on PostgreSQL,
    the ``dbstat`` virtual table on SQLite."""
    async with db.read_engine.connect() as conn:
        if db.read_engine.dialect.name == "postgresql":
            sizes = {}
            for name in ("measurement", "rollup"):
                total, heap = (
                    await conn.execute(
                        sa.text("SELECT pg_total_relation_size(:t), pg_relation_size(:t)"), {"t": name}
                    )
                ).one()
                sizes[name] = {"total_bytes": int(total), "table_bytes": int(heap)}
            return {"method": "pg_total_relation_size", **sizes}
        try:
            stat = (
                await conn.execute(
                    sa.text(
                        "SELECT m.tbl_name, m.type, sum(d.pgsize) FROM dbstat AS d "
                        "JOIN sqlite_master AS m ON m.name = d.name WHERE d.aggregate = TRUE "
                        "GROUP BY m.tbl_name, m.type"
                    )
                )
            ).all()
        except sa.exc.OperationalError as exc:
            return {"method": "dbstat unavailable", "error": str(exc)}
    sizes: dict[str, dict[str, int]] = {}
    for table_name, kind, size in stat:
        if table_name in ("measurement", "rollup"):
            entry = sizes.setdefault(table_name, {"total_bytes": 0, "table_bytes": 0})
            entry["total_bytes"] += int(size)
            if kind == "table":
                entry["table_bytes"] += int(size)
    return {"method": "dbstat", **sizes}


# --- plans ---------------------------------------------------------------------------------


async def explain_call(db: Database, call: Callable[[], Awaitable[Answer]]) -> list[dict[str, Any]]:
    """Run ``call`` once, capture the statements it sends on ``rollup``/``measurement``, and
    explain each (SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN (ANALYZE, BUFFERS))."""
    captured: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if not many and (" rollup" in statement or " measurement" in statement):
            captured.append((statement, params))

    sa.event.listen(db.read_engine.sync_engine, "before_cursor_execute", grab)
    try:
        await call()
    finally:
        sa.event.remove(db.read_engine.sync_engine, "before_cursor_execute", grab)
    postgres = db.read_engine.dialect.name == "postgresql"
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
    plans = []
    async with db.read_engine.connect() as conn:
        for statement, params in captured:
            rows = (await conn.exec_driver_sql(prefix + statement, params)).all()
            plan = [str(r[0]) if postgres else str(r[-1]) for r in rows]
            plans.append({"statement": " ".join(statement.split()), "plan": plan})
    return plans

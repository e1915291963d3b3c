"""Field analytics benchmark (issue 4, part 7): rollup queries against exact raw-table queries.

    .venv/bin/python bench/field_bench.py [--rows 10000000] [--db sqlite|postgres|both] [--quick]
    make bench                          # 1,000,000 beacons on both databases, a few minutes
    make bench FIELD_ROWS=10000000      # the full size (20-45 minutes on 2 cores)

Per backend, on a fresh database (a SQLite file in a temp dir, or ``fieldlab_bench_<random>``
on PostgreSQL at 127.0.0.1:5432, dropped at the end):

1. load N synthetic web-vitals beacons (bench/field_data.py; one beacon = one metric of one page
   view = one ``measurement`` row) spread over the last 30 days, through the ingest writer's own
   upsert SQL (``app.ingest.writer.upsert_measurements``) in batches on ``Database.write_conn()``
   — or, on PostgreSQL by default, COPY into ``measurement``;
2. build the rollups once with ``app.field.rollups.run_rollups`` (timed);
3. answer each case in bench/field_measure.py through ``app.field.query`` (rollups) ≥ 20 times
   and exactly from the raw table (≥ 3 times), and compare latency and p75 error;
4. measure the size of the rollups against the raw table.

The rollup job's time is broken down per function and per SQL statement (bench/field_phases.py).
Query latency at a smaller --rows is close to that at 10M (a query reads one rollup row per hour
either way; only the sketches grow a little), while the raw baseline grows with the data, so the
speed-up at a smaller scale understates the one at 10M.

Goals: rollup query p95 ≤ 100 ms, ≥ 20x faster than raw (p50 / p50), p75 error ≤ 1 %.
Results: bench/results/field.json.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import multiprocessing
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from field_data import COLUMNS, HOUR, Plan, Row, generate_chunk  # noqa: E402
from field_measure import (  # noqa: E402
    CASES,
    compare,
    explain_call,
    latency_summary,
    raw_answer,
    rollup_answer,
    rollup_stats,
    storage_sizes,
    time_calls,
)
from field_phases import PhaseTimer, format_phases, timed_phases  # noqa: E402

from app.config import Settings  # noqa: E402
from app.db import Database, upgrade_database_async  # noqa: E402
from app.field import rollups  # noqa: E402
from app.ingest.schemas import METRICS  # noqa: E402
from app.ingest.writer import upsert_measurements  # noqa: E402
from app.models import DirtyHour, table  # noqa: E402
from app.sites import create_site  # noqa: E402

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
RESULTS = ROOT / "bench" / "results" / "field.json"
GOAL_P95_MS = 100.0
GOAL_SPEEDUP = 20.0
GOAL_ERROR = 0.01
DAYS = 30
ROLLUP_PHASES = ("run_rollups", "_closed_hours", "rollup_hour", "rollup_day", "build_cube", "_rollup_rows",
                 "_replace", "dirty_hours", "rolled_until")  # fmt: skip


def log(message: str) -> None:
    print(message, flush=True)


# --- databases -----------------------------------------------------------------------------


@asynccontextmanager
async def fresh_database(kind: str, keep: bool) -> AsyncIterator[str]:
    """A migrated, empty database URL, removed afterwards unless ``keep``."""
    if kind == "sqlite":
        tmp = Path(tempfile.mkdtemp(prefix="fieldlab_bench_"))
        url = f"sqlite+aiosqlite:///{tmp / 'field.db'}"
        try:
            await upgrade_database_async(url)
            yield url
        finally:
            if keep:
                log(f"  kept {url}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        return
    name = f"fieldlab_bench_{secrets.token_hex(5)}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        await upgrade_database_async(PG_URL.format(name=name))
        yield PG_URL.format(name=name)
    finally:
        if keep:
            log(f"  kept {PG_URL.format(name=name)}")
        else:
            admin = await asyncpg.connect(PG_ADMIN_DSN)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


# --- loading -------------------------------------------------------------------------------


async def _write_upsert(db: Database, rows: list[Row], batch: int) -> None:
    stmt = upsert_measurements(db.write_engine.dialect.name)
    for i in range(0, len(rows), batch):
        params = [dict(zip(COLUMNS, row, strict=True)) for row in rows[i : i + batch]]
        async with db.write_conn() as conn:
            await conn.execute(stmt, params)


async def _write_copy(conn: asyncpg.Connection, rows: list[Row]) -> None:
    records = [(*row[:-1], None if row[-1] is None else json.dumps(row[-1])) for row in rows]
    await conn.copy_records_to_table("measurement", records=records, columns=list(COLUMNS))


async def load(db: Database, url: str, plan: Plan, *, method: str, batch: int) -> dict[str, Any]:
    """Generate hour chunks in a worker process (a few ahead) while this one writes them."""
    quotas = plan.quotas()
    loop = asyncio.get_running_loop()
    copy_conn = await asyncpg.connect(_pg_dsn(url)) if method == "copy" else None
    started = last_report = time.perf_counter()
    written = 0
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            ahead: deque[Future[list[Row]]] = deque()
            submitted = 0
            while written < plan.rows:
                while submitted < plan.chunks and len(ahead) < 8:
                    ahead.append(pool.submit(generate_chunk, plan, submitted, quotas[submitted]))
                    submitted += 1
                rows = await asyncio.wrap_future(ahead.popleft(), loop=loop)
                if copy_conn is not None:
                    await _write_copy(copy_conn, rows)
                else:
                    await _write_upsert(db, rows, batch)
                written += len(rows)
                now = time.perf_counter()
                if now - last_report >= 5 or written == plan.rows:
                    last_report = now
                    log(
                        f"    {written:>12,} / {plan.rows:,} rows  {written / (now - started):>10,.0f} rows/s"
                    )
    finally:
        if copy_conn is not None:
            await copy_conn.close()
    seconds = time.perf_counter() - started
    return {
        "method": method,
        "rows": written,
        "seconds": round(seconds, 1),
        "rows_per_s": round(written / seconds),
    }


async def analyze_postgres(url: str) -> float:
    """What autovacuum would do on a live server: planner statistics and the visibility map."""
    started = time.perf_counter()
    conn = await asyncpg.connect(_pg_dsn(url))
    try:
        await conn.execute("VACUUM ANALYZE measurement")
        await conn.execute("VACUUM ANALYZE rollup")
    finally:
        await conn.close()
    return round(time.perf_counter() - started, 1)


# --- one backend ---------------------------------------------------------------------------


async def bench_backend(kind: str, args: argparse.Namespace, until: int) -> dict[str, Any]:
    since = until - DAYS * 86_400_000
    out: dict[str, Any] = {"backend": kind}
    async with fresh_database(kind, args.keep) as url:
        db = Database(Settings(database_url=url))
        try:
            site = await create_site(db=db, name="bench", origins=["https://shop.example"])
            assert site.id is not None
            plan = Plan(rows=args.rows, start_ms=since, chunks=DAYS * 24, site_id=site.id)
            method = "copy" if kind == "postgres" and args.pg_load == "copy" else "upsert"
            log(f"  loading {args.rows:,} beacons ({method}) ...")
            out["load"] = await load(db, url, plan, method=method, batch=args.batch)
            if kind == "postgres":
                out["vacuum_analyze_measurement_s"] = await analyze_postgres(url)

            kwargs: dict[str, Any] = {"now_ms": until}
            if "margin_ms" in inspect.signature(rollups.run_rollups).parameters:
                kwargs["margin_ms"] = 0
            log("  building rollups (run_rollups) ...")
            with timed_phases(rollups, ROLLUP_PHASES, db.read_engine, db.write_engine) as timer:
                progress = asyncio.create_task(_rollup_progress(timer))
                started = time.perf_counter()
                try:
                    report = await rollups.run_rollups(db, **kwargs)
                finally:
                    progress.cancel()
                seconds = time.perf_counter() - started
            out["rollups"] = {"seconds": round(seconds, 1), "hours": report.hours, "days": report.days,
                              "rows_written": report.rows, "beacons_per_s": round(args.rows / seconds)}  # fmt: skip
            out["rollups"]["phases"] = timer.report()
            out["rollups"]["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
            log(f"    {seconds:.1f} s: {report.hours} hours, {report.days} days, {report.rows:,} rollup rows")
            for line in format_phases(out["rollups"]["phases"], seconds):
                log(line)
            if kind == "postgres":
                await analyze_postgres(url)

            out.update(await measure(db, args, site.id, since, until))
            out["incremental"] = await incremental_rollups(db, site.id, until, kwargs)
        finally:
            await db.dispose()
    return out


async def measure(
    db: Database, args: argparse.Namespace, site_id: int, since: int, until: int
) -> dict[str, Any]:
    """Rollup sizes, then every case answered through the rollups and exactly from raw rows."""
    out: dict[str, Any] = {}
    out["rollup_size"] = await rollup_stats(db)
    out["storage"] = await storage_sizes(db)
    out["cases"] = {}
    for case in CASES:
        log(f"  {case.title} ...")

        async def rollup_call(case: Any = case) -> Any:
            return await rollup_answer(db, case, site_id, since, until)

        async def raw_call(case: Any = case) -> Any:
            return await raw_answer(db, case, site_id, since, until)

        roll_samples, roll = await time_calls(rollup_call, reps=args.reps, warmup=2)
        raw_samples, exact = await time_calls(raw_call, reps=args.reps, warmup=1, budget_s=args.raw_budget)
        result = {
            "title": case.title,
            "rollup": latency_summary(roll_samples),
            "raw": latency_summary(raw_samples),
            "error": compare(roll, exact),
            "loadavg_1m_after": round(os.getloadavg()[0], 2),  # other work on the box skews timings
        }
        result["speedup"] = round(result["raw"]["p50_ms"] / result["rollup"]["p50_ms"], 1)
        result["pass"] = {
            "p95": result["rollup"]["p95_ms"] <= GOAL_P95_MS,
            "speedup": result["speedup"] >= GOAL_SPEEDUP,
            "error": (result["error"]["max_rel_error"] or 0) <= GOAL_ERROR
            and result["error"]["count_mismatches"] == 0,
        }
        if case.name in ("hourly", "hourly_by_device"):
            result["plans"] = await explain_call(db, rollup_call)
        out["cases"][case.name] = result
        log(_case_line(result))
    return out


async def remeasure(url: str, args: argparse.Namespace, until: int) -> dict[str, Any]:
    """``--reuse``: the query cases again on a database kept by an earlier ``--keep`` run (same
    ``--until-ms``), e.g. when the first measurement shared the machine with other work."""
    kind = "postgres" if url.startswith("postgresql") else "sqlite"
    db = Database(Settings(database_url=url))
    try:
        async with db.read_engine.connect() as conn:
            site_id = (await conn.execute(sa.text("SELECT id FROM site WHERE name = 'bench'"))).scalar_one()
        out: dict[str, Any] = {"backend": kind, "reused": url}
        out.update(await measure(db, args, site_id, until - DAYS * 86_400_000, until))
    finally:
        await db.dispose()
    return out


async def _rollup_progress(timer: PhaseTimer) -> None:
    started = time.perf_counter()
    while True:
        await asyncio.sleep(30)
        log(f"    ... {timer.calls['rollup_hour']} hours, {timer.calls['rollup_day']} days after "
            f"{time.perf_counter() - started:.0f} s")  # fmt: skip


async def incremental_rollups(
    db: Database, site_id: int, until: int, kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The steady state: what each periodic run costs once rollups exist. One closed hour gets
    a late row (the writer marks it dirty), and run_rollups rebuilds that hour and its day."""
    hour = until - until % HOUR - HOUR
    runs: list[float] = []
    report: dict[str, Any] = {}
    for _ in range(3):
        marks = [{"site_id": site_id, "metric": m, "hour_ms": hour, "marked_ms": until} for m in METRICS]
        async with db.write_conn() as conn:
            await conn.execute(sa.insert(table(DirtyHour)), marks)
        with timed_phases(rollups, ROLLUP_PHASES, db.read_engine, db.write_engine) as timer:
            started = time.perf_counter()
            await rollups.run_rollups(db, **kwargs)
            runs.append(time.perf_counter() - started)
        report = timer.report()
    seconds = sorted(runs)[1]
    log(f"  incremental run_rollups (1 dirty hour + its day): median {seconds:.2f} s of {len(runs)}")
    for line in format_phases(report, runs[-1]):
        log(line)
    return {
        "seconds_median": round(seconds, 3),
        "seconds": [round(r, 3) for r in runs],
        "phases_last": report,
    }


# --- report --------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.3f}%"


def _case_line(r: dict[str, Any]) -> str:
    ok = " ".join(f"{k}:{'PASS' if v else 'FAIL'}" for k, v in r["pass"].items())
    e = r["error"]
    return (
        f"    rollup p50 {r['rollup']['p50_ms']:.1f} ms p95 {r['rollup']['p95_ms']:.1f} ms (n={r['rollup']['reps']}) | "
        f"raw p50 {r['raw']['p50_ms']:.0f} ms p95 {r['raw']['p95_ms']:.0f} ms (n={r['raw']['reps']}) | "
        f"{r['speedup']}x | p75 err max {_pct(e['max_rel_error'])} mean {_pct(e['mean_rel_error'])} "
        f"(beyond 0.1 ms rounding {_pct(e['max_rel_error_beyond_0.05ms_rounding'])}) "
        f"over {e['buckets_compared']} buckets, count mismatches {e['count_mismatches']} | {ok}"
    )


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def print_report(results: dict[str, Any]) -> None:
    log("\n=== fieldlab field benchmark ===")
    log(
        f"{results['rows']:,} beacons; a beacon = one web-vitals metric of one page view (one measurement row)"
    )
    log(f"metric shares: {results['metric_share']}")
    for backend in results["backends"]:
        log(f"\n[{backend['backend']}]")
        if "reused" in backend:
            log(f"  queries re-measured on {backend['reused']}")
        else:
            ld, ro = backend["load"], backend["rollups"]
            log(
                f"  load: {ld['rows']:,} rows in {ld['seconds']} s ({ld['rows_per_s']:,} rows/s, {ld['method']})"
            )
            log(f"  rollups: {ro['seconds']} s ({ro['hours']} hours, {ro['days']} days, {ro['rows_written']:,} "
                f"rows; {ro['beacons_per_s']:,} beacons/s)")  # fmt: skip
            inc = backend["incremental"]
            log(
                f"  incremental run (1 dirty hour + its day): {inc['seconds_median']} s median {inc['seconds']}"
            )
        size, storage = backend["rollup_size"], backend["storage"]
        periods = ", ".join(f"{p}: {v['rows']:,}" for p, v in size["by_period"].items())
        log(f"  rollup rows {size['rows']:,} ({periods}) vs {size['measurement_rows']:,} raw rows; "
            f"sketches {_mb(size['sketch_bytes'])} (avg {size['avg_sketch_bytes']} B), "
            f"estimated {_mb(size['estimated_bytes'])}")  # fmt: skip
        if "rollup" in storage and "measurement" in storage:
            r, m = storage["rollup"]["total_bytes"], storage["measurement"]["total_bytes"]
            log(f"  on disk ({storage['method']}, with indexes): rollup {_mb(r)} vs measurement {_mb(m)} "
                f"({r / m:.1%})")  # fmt: skip
        for name, case in backend["cases"].items():
            log(f"  {name}: {case['title']}")
            log(_case_line(case))
    log("\nGoals: p95 <= 100 ms, >= 20x faster than raw, p75 error <= 1 % (and counts exact)")
    for backend in results["backends"]:
        for name, case in backend["cases"].items():
            verdict = "PASS" if all(case["pass"].values()) else "FAIL"
            failed = [k for k, v in case["pass"].items() if not v]
            log(
                f"  {verdict} {backend['backend']:<8} {name:<18} {'failed: ' + ', '.join(failed) if failed else ''}"
            )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    # A dashboard opened at half past: the partial hours at both edges come from raw rows.
    until = args.until_ms or int(time.time() * 1000) // HOUR * HOUR + HOUR // 2
    probe = Plan(rows=args.rows, start_ms=until - DAYS * 86_400_000, chunks=DAYS * 24, site_id=1)
    sample = generate_chunk(probe, 0, 20_000)
    shares = {
        m: round(sum(r[2] == m for r in sample) / len(sample), 3)
        for m in ("LCP", "INP", "CLS", "FCP", "TTFB")
    }
    results: dict[str, Any] = {
        "rows": args.rows,
        "beacon": "one web-vitals metric of one page view (one measurement row)",
        "metric_share": shares,
        "days": DAYS,
        "until_ms": until,
        "reps": args.reps,
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "machine": {
            "python": platform.python_version(),
            "cpus": multiprocessing.cpu_count(),
            "platform": platform.platform(),
        },
        "goals": {"p95_ms": GOAL_P95_MS, "speedup": GOAL_SPEEDUP, "max_rel_error": GOAL_ERROR},
        "backends": [],
    }
    log(f"fieldlab field benchmark: {args.rows:,} beacons (one metric of one page view each), "
        f"{DAYS} days, shares {shares}")  # fmt: skip
    if args.reuse:
        for url in args.reuse:
            log(f"\n[{url}]")
            results["backends"].append(await remeasure(url, args, until))
        return results
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    for kind in kinds:
        log(f"\n[{kind}]")
        results["backends"].append(await bench_backend(kind, args, until))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=None, help="beacons to load (default 10,000,000; --quick 300,000)"
    )
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="300k beacons: a fast check")
    parser.add_argument("--reps", type=int, default=20, help="timed repetitions per rollup query")
    parser.add_argument(
        "--raw-budget", type=float, default=20.0, help="seconds of raw repetitions per case (>= 3 reps)"
    )
    parser.add_argument("--batch", type=int, default=5000, help="rows per upsert statement")
    parser.add_argument("--pg-load", choices=("copy", "upsert"), default="copy")
    parser.add_argument(
        "--until-ms",
        type=int,
        default=None,
        help="end of the 30 days (default: this hour + 30 min); same value, same data",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases (prints their URLs)")
    parser.add_argument(
        "--reuse",
        action="append",
        metavar="URL",
        help="only re-run the query cases on a database kept by --keep (give the same --until-ms and --rows)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="default bench/results/field.json")
    args = parser.parse_args()
    if args.reuse and not args.until_ms:
        parser.error("--reuse needs the --until-ms of the run that built the database")
    if args.rows is None:
        args.rows = 300_000 if args.quick else 10_000_000
    started = time.perf_counter()
    results = asyncio.run(main_async(args))
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    print_report(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"\nwrote {args.out} ({results['total_seconds']} s in all)")


if __name__ == "__main__":
    main()

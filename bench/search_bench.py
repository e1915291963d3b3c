"""Log search benchmark: indexing throughput and search latency on both databases.

    .venv/bin/python bench/search_bench.py [--errors 100000] [--db sqlite|postgres|both]

Per backend, on a fresh migrated database (a SQLite file in a temp dir, or
``fieldlab_bench_<random>`` on PostgreSQL at 127.0.0.1:5432, dropped at the end):

1. insert N ``js_error`` rows over the last 7 days through the ingest writer's own SQL
   (200 distinct bugs, Zipf-like frequencies, varying numbers and URLs in messages);
2. run the indexing job once over all of them (timed: events per second);
3. time searches (median and max of 10): a rare word, a common word, a phrase, groups for a
   common word, groups with no words (every error of the week), one page of events.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from app.config import Settings
from app.db import Database, now_ms, upgrade_database
from app.ingest.writer import raw_insert_errors_sql
from app.search.query import Filters, parse_terms, search_events, search_groups
from app.search.store import Indexer

PG = "postgresql+asyncpg://postgres@127.0.0.1:5432"
DAY = 86_400_000
WORDS = [
    "checkout",
    "basket",
    "price",
    "render",
    "coupon",
    "payment",
    "widget",
    "carousel",
    "search",
    "login",
]


def _errors(n: int, site_id: int) -> list[tuple[Any, ...]]:
    rng = random.Random(7)
    now = now_ms()
    rows = []
    for i in range(n):
        bug = min(199, int(rng.paretovariate(1.2)) - 1)
        word = WORDS[bug % len(WORDS)]
        msg = (
            f"TypeError: cannot read {word} of item {rng.randint(1, 9999)} at https://api.example/{word}/{i}"
        )
        if bug == 199:
            msg = f"RangeError: zanzibar overflow {i}"
        stack = f"{msg}\n    at fn{bug} (https://shop.example/static/app.{bug:08x}.js:{bug}:1)"
        rows.append((site_id, f"pv-{i}", 0, now - rng.randint(0, 7 * DAY), msg, "", 1, 1, stack,
                     f"https://shop.example/{word}/{i % 50}", f"/{word}/:id", "desktop", "chrome", False))  # fmt: skip
    return rows


async def _timed(fn: Callable[[], Awaitable[Any]], runs: int = 10) -> dict[str, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


async def bench(url: str, n: int) -> dict[str, Any]:
    db = Database(Settings(database_url=url))
    try:
        async with db.write_conn() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO site (name, key, origins, page_groups, query_allowlist, created_ms)"
                " VALUES ('bench', 'bench', '[]', '[]', '[]', 0)"
            )
        sql = raw_insert_errors_sql(db.write_engine.dialect.name)
        rows = _errors(n, 1)
        for i in range(0, n, 5000):
            async with db.write_conn() as conn:
                chunk = rows[i : i + 5000]
                if conn.dialect.name == "postgresql":
                    await conn.exec_driver_sql(sql, tuple(list(c) for c in zip(*chunk, strict=True)))
                else:
                    await conn.exec_driver_sql(sql, chunk)
        start = time.perf_counter()
        await Indexer(db).run()
        index_s = time.perf_counter() - start
        if db.write_engine.dialect.name == "postgresql":
            # What autovacuum does after a bulk load; without statistics the planner guesses.
            async with db.write_conn() as conn:
                await conn.exec_driver_sql("ANALYZE log_event")
        since = now_ms() - 7 * DAY - 60_000

        def f(q: str) -> Filters:
            return Filters(terms=parse_terms(q), site_id=1, since_ms=since, until_ms=now_ms() + 60_000)

        cases = {
            "events, rare word (zanzibar)": lambda: search_events(db=db, filters=f("zanzibar"), limit=50),
            "events, common word (checkout)": lambda: search_events(db=db, filters=f("checkout"), limit=50),
            'events, phrase ("read checkout")': lambda: search_events(db=db, filters=f('"read checkout"'), limit=50),
            "groups, common word (checkout)": lambda: search_groups(db=db, filters=f("checkout"), limit=50),
            "groups, no words (the whole week)": lambda: search_groups(db=db, filters=f(""), limit=50),
            "events, no words, first page": lambda: search_events(db=db, filters=f(""), limit=50),
        }  # fmt: skip
        return {
            "errors": n,
            "index_s": round(index_s, 2),
            "indexed_per_s": round(n / index_s),
            "searches": {name: await _timed(fn) for name, fn in cases.items()},
        }
    finally:
        await db.dispose()


async def _pg(sql: str) -> None:
    conn = await asyncpg.connect(PG.replace("+asyncpg", "") + "/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--errors", type=int, default=100_000)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            upgrade_database(url)
            print("sqlite", asyncio.run(bench(url, args.errors)))
    if args.db in ("postgres", "both"):
        name = f"fieldlab_bench_{uuid.uuid4().hex[:8]}"
        asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
        try:
            upgrade_database(f"{PG}/{name}")
            print("postgres", asyncio.run(bench(f"{PG}/{name}", args.errors)))
        finally:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()

"""Retention: raw beacons and JS errors after FIELDLAB_RAW_RETENTION_DAYS, hourly rollups after
FIELDLAB_HOURLY_ROLLUP_RETENTION_DAYS, daily ones after FIELDLAB_ROLLUP_RETENTION_DAYS.

Deletes run per (site, metric) so each one is a range scan of an existing index (no index on
time alone is kept, to keep ingest cheap), and in bounded chunks so the ingest writer, which
shares SQLite's single write lock, never waits behind one long transaction."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from app.db import Database, delete_in_chunks
from app.field.rollups import DAY
from app.ingest.schemas import METRICS
from app.models import JsError, Measurement, Rollup, Site, table
from app.search.store import prune_logs

log = logging.getLogger(__name__)
CHUNK = 5000


async def prune(
    db: Database, *, now_ms: int, raw_days: int, rollup_days: int, hourly_days: int | None = None
) -> dict[str, int]:
    raw_cutoff = now_ms - raw_days * DAY
    cutoffs = {"h": now_ms - (hourly_days or rollup_days) * DAY, "d": now_ms - rollup_days * DAY}
    m, e, r = table(Measurement), table(JsError), table(Rollup)
    async with db.read_engine.connect() as conn:
        site_ids = [row[0] for row in await conn.execute(sa.select(table(Site).c.id))]
    removed = {"measurement": 0, "js_error": 0, "rollup": 0, "log_event": 0}
    for site_id in site_ids:
        for metric in METRICS:
            where = [m.c.site_id == site_id, m.c.metric == metric, m.c.ts < raw_cutoff]
            removed["measurement"] += await delete_in_chunks(db, m, *where, chunk=CHUNK)
            for period, cutoff in cutoffs.items():
                where = [r.c.site_id == site_id, r.c.period == period, r.c.metric == metric,
                         r.c.start_ms < cutoff]  # fmt: skip
                removed["rollup"] += await delete_in_chunks(db, r, *where, chunk=CHUNK)
        removed["js_error"] += await delete_in_chunks(
            db, e, e.c.site_id == site_id, e.c.ts < raw_cutoff, chunk=CHUNK
        )
    # Searchable log events (JS errors, synthetic failures, fieldlab's own) are raw data too.
    removed["log_event"] = await prune_logs(db, cutoff_ms=raw_cutoff)
    if any(removed.values()):
        log.info("retention removed %s", removed)
    return removed

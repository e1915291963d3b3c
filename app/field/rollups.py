"""Hourly and daily rollups: a sketch, a count and good/poor counts per metric and segment.

Segments form a small cube: each of page group, device, navigation type and connection is
either a value or ``*`` (all), so every filter combination, and a group-by on one of them, is
answered by exactly one stored row per period, with no merging of many small rows.

Correctness under re-reports (web-vitals re-sends CLS/INP; a page view may be re-sent hours
later) comes from recomputing, never patching: an hour is rebuilt from its raw rows whenever
any of its rows arrived since the last run (``received_ms`` > watermark), and the day holding it
is rebuilt from its hours. Between runs, queries treat such hours as raw (see query.py), so an
answer is right at every moment, not just after the next run.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from app.db import Database
from app.field.stats import THRESHOLDS
from app.models import Measurement, Rollup, RollupState, table
from app.sketch import Sketch

log = logging.getLogger(__name__)

HOUR = 3_600_000
DAY = 86_400_000
ALL = "*"
DIMENSIONS = ("page_group", "device", "nav", "connection")
Segment = tuple[str, str, str, str]

M = table(Measurement).c
R = table(Rollup).c
STATE = table(RollupState)


def floor_to(ms: int, unit: int) -> int:
    return ms - ms % unit


def ceil_to(ms: int, unit: int) -> int:
    return -(-ms // unit) * unit


@dataclass
class Agg:
    """What a rollup row holds, plus — while it is built from raw rows only — the values
    themselves, so small or recent ranges are answered exactly."""

    sketch: Sketch = field(default_factory=Sketch)
    count: int = 0
    good: int = 0
    poor: int = 0
    values: list[float] | None = field(default_factory=list)

    def add(self, metric: str, value: float) -> None:
        good_max, poor_min = THRESHOLDS[metric]
        self.sketch.add(value)
        self.count += 1
        self.good += value <= good_max
        self.poor += value > poor_min
        if self.values is not None:
            self.values.append(value)

    def merge(self, other: Agg) -> Agg:
        self.sketch.merge(other.sketch)
        self.count += other.count
        self.good += other.good
        self.poor += other.poor
        if self.values is not None and other.values is not None:
            self.values.extend(other.values)
        else:
            self.values = None  # a sketch-only part: answers come from the sketch
        return self

    @classmethod
    def from_row(cls, count: int, good: int, poor: int, sketch: bytes) -> Agg:
        return cls(sketch=Sketch.from_bytes(sketch), count=count, good=good, poor=poor, values=None)


def cube(segment: Segment) -> Iterator[Segment]:
    """The 16 cube cells a fully specified segment counts towards."""
    for mask in itertools.product((False, True), repeat=len(DIMENSIONS)):
        yield tuple(ALL if hide else value for hide, value in zip(mask, segment, strict=True))  # type: ignore[misc]


def build_cube(rows: Iterable[tuple[str, str, str, str, str, float]]) -> dict[tuple[str, Segment], Agg]:
    """(metric, page_group, device, nav, connection, value) rows -> cube cells. Values are
    sketched once per full segment, then whole sketches are merged into the coarser cells."""
    detail: dict[tuple[str, Segment], Agg] = {}
    for metric, page_group, device, nav, connection, value in rows:
        key = (metric, (page_group, device, nav, connection))
        agg = detail.get(key)
        if agg is None:
            agg = detail[key] = Agg(values=None)
        agg.add(metric, value)
    cells: dict[tuple[str, Segment], Agg] = {}
    for (metric, segment), agg in detail.items():
        for cell in cube(segment):
            target = cells.get((metric, cell))
            if target is None:
                cells[(metric, cell)] = Agg(values=None).merge(agg)
            else:
                target.merge(agg)
    return cells


def _rollup_rows(
    site_id: int, period: str, start_ms: int, cells: dict[tuple[str, Segment], Agg]
) -> list[dict[str, Any]]:
    return [
        {
            "site_id": site_id,
            "period": period,
            "metric": metric,
            "start_ms": start_ms,
            "page_group": seg[0][:256],
            "device": seg[1],
            "nav": seg[2],
            "connection": seg[3],
            "count": agg.count,
            "good": agg.good,
            "poor": agg.poor,
            "sketch": agg.sketch.to_bytes(),
        }
        for (metric, seg), agg in cells.items()
    ]


async def _replace(
    db: Database, site_id: int, period: str, start_ms: int, rows: list[dict[str, Any]]
) -> None:
    """Swap one period's rollups in one short transaction (the ingest writer shares the lock)."""
    async with db.write_conn() as conn:
        await conn.execute(
            sa.delete(table(Rollup)).where(R.site_id == site_id, R.period == period, R.start_ms == start_ms)
        )
        if rows:
            await conn.execute(sa.insert(table(Rollup)), rows)


async def rollup_hour(db: Database, site_id: int, hour_ms: int) -> int:
    query = sa.select(M.metric, M.page_group, M.device, M.nav, M.connection, M.value).where(
        M.site_id == site_id, M.ts >= hour_ms, M.ts < hour_ms + HOUR, M.is_bot.is_(False)
    )
    async with db.read_engine.connect() as conn:
        raw = (await conn.execute(query)).all()
    cells = build_cube(raw)
    rows = _rollup_rows(site_id, "h", hour_ms, cells)
    await _replace(db, site_id, "h", hour_ms, rows)
    return len(rows)


async def rollup_day(db: Database, site_id: int, day_ms: int) -> int:
    query = sa.select(
        R.metric, R.page_group, R.device, R.nav, R.connection, R.count, R.good, R.poor, R.sketch
    ).where(R.site_id == site_id, R.period == "h", R.start_ms >= day_ms, R.start_ms < day_ms + DAY)
    cells: dict[tuple[str, Segment], Agg] = {}
    async with db.read_engine.connect() as conn:
        for metric, pg, device, nav, connection, count, good, poor, sketch in await conn.execute(query):
            agg = Agg.from_row(count, good, poor, sketch)
            key = (metric, (pg, device, nav, connection))
            if key in cells:
                cells[key].merge(agg)
            else:
                cells[key] = agg
    rows = _rollup_rows(site_id, "d", day_ms, cells)
    await _replace(db, site_id, "d", day_ms, rows)
    return len(rows)


@dataclass
class RollupReport:
    hours: int = 0
    days: int = 0
    rows: int = 0


async def read_state(db: Database) -> tuple[int, int]:
    """(watermark_ms, rolled_until_ms); (0, 0) before the first run."""
    async with db.read_engine.connect() as conn:
        row = (await conn.execute(sa.select(STATE.c.watermark_ms, STATE.c.rolled_until_ms))).first()
    return (row[0], row[1]) if row else (0, 0)


async def _touched_hours(db: Database, *, watermark: int, since: int, frontier: int) -> set[tuple[int, int]]:
    """(site, hour) pairs with rows received after the watermark, or in newly closed hours."""
    hour = (M.ts - M.ts % HOUR).label("hour")
    recent = sa.select(M.site_id, hour).where(M.received_ms > watermark, M.ts < frontier).distinct()
    closed = sa.select(M.site_id, hour).where(M.ts >= since, M.ts < frontier).distinct()
    async with db.read_engine.connect() as conn:
        found = {(s, h) for s, h in await conn.execute(recent)}
        found |= {(s, h) for s, h in await conn.execute(closed)}
    return found


async def run_rollups(db: Database, *, now_ms: int, margin_ms: int) -> RollupReport:
    """Bring rollups up to date: every closed hour that is new or has new rows is rebuilt,
    then the days holding them. ``margin_ms`` covers rows stamped before but committed after
    this run started (the commit timeout)."""
    watermark, rolled_until = await read_state(db)
    frontier = floor_to(now_ms, HOUR)
    touched = await _touched_hours(db, watermark=watermark, since=rolled_until, frontier=frontier)
    report = RollupReport()
    for site_id, hour_ms in sorted(touched):
        report.rows += await rollup_hour(db, site_id, int(hour_ms))
        report.hours += 1
    for site_id, day_ms in sorted({(s, floor_to(int(h), DAY)) for s, h in touched}):
        report.rows += await rollup_day(db, site_id, day_ms)
        report.days += 1
    async with db.write_conn() as conn:
        values = {"watermark_ms": now_ms - margin_ms, "rolled_until_ms": frontier}
        updated = await conn.execute(sa.update(STATE).values(**values))
        if not updated.rowcount:
            await conn.execute(sa.insert(STATE).values(id=1, **values))
    if report.hours:
        log.info("rollups: rebuilt %d hours and %d days (%d rows)", report.hours, report.days, report.rows)
    return report

"""Hourly and daily rollups: a sketch, a count and good/poor counts per metric and segment.

Segments form a small cube: each of page group, device, navigation type and connection is
either a value or ``*`` (all), so every filter combination, and a group-by on one of them, is
answered by exactly one stored row per period, with no merging of many small rows.

Correctness under re-reports (web-vitals re-sends CLS/INP; a page view may be re-sent hours
later) comes from recomputing, never patching: the ingest writer marks a closed hour dirty in
the same transaction as a late row (``dirty_hour``), the job rebuilds marked hours from their raw
rows and the days holding them, and between runs queries read dirty hours raw (see query.py), so
an answer is right at every moment, not just after the next run.
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
from app.ingest.schemas import METRICS
from app.models import DirtyHour, Measurement, Rollup, RollupState, Site, table
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
DIRTY = table(DirtyHour)


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
            # metric IN (all) lets (site_id, period, metric, start_ms) find the rows by index
            # instead of scanning the whole period.
            sa.delete(table(Rollup)).where(
                R.site_id == site_id, R.period == period, R.metric.in_(METRICS), R.start_ms == start_ms
            )
        )
        if rows:
            await conn.execute(sa.insert(table(Rollup)), rows)


async def rollup_hour(db: Database, site_id: int, hour_ms: int) -> int:
    query = sa.select(M.metric, M.page_group, M.device, M.nav, M.connection, M.value).where(
        # Without metric, the (site_id, metric, ts) index gives only site_id: every raw row of
        # the site would be read for each hour.
        M.site_id == site_id, M.metric.in_(METRICS), M.ts >= hour_ms, M.ts < hour_ms + HOUR,
        M.is_bot.is_(False),
    )  # fmt: skip
    async with db.read_engine.connect() as conn:
        raw = (await conn.execute(query)).all()
    cells = build_cube(raw)
    rows = _rollup_rows(site_id, "h", hour_ms, cells)
    await _replace(db, site_id, "h", hour_ms, rows)
    return len(rows)


async def rollup_day(db: Database, site_id: int, day_ms: int) -> int:
    query = sa.select(
        R.metric, R.page_group, R.device, R.nav, R.connection, R.count, R.good, R.poor, R.sketch
    ).where(
        R.site_id == site_id, R.period == "h", R.metric.in_(METRICS), R.start_ms >= day_ms,
        R.start_ms < day_ms + DAY,
    )  # fmt: skip
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


async def rolled_until(db: Database) -> int:
    """Hours before this have rollups (0 before the first run)."""
    async with db.read_engine.connect() as conn:
        value = (await conn.execute(sa.select(STATE.c.rolled_until_ms))).scalar()
    return int(value or 0)


async def dirty_hours(
    db: Database, *, site_id: int | None = None, metric: str | None = None
) -> dict[tuple[int, int], int]:
    """Marked hours: (site, hour) -> newest mark time."""
    query = sa.select(DIRTY.c.site_id, DIRTY.c.hour_ms, sa.func.max(DIRTY.c.marked_ms)).group_by(
        DIRTY.c.site_id, DIRTY.c.hour_ms
    )
    if site_id is not None:
        query = query.where(DIRTY.c.site_id == site_id)
    if metric is not None:
        query = query.where(DIRTY.c.metric == metric)
    async with db.read_engine.connect() as conn:
        return {(s, int(h)): int(m) for s, h, m in await conn.execute(query)}


async def _closed_hours(db: Database, *, since: int, frontier: int) -> set[tuple[int, int]]:
    """(site, hour) pairs with rows in hours closed since the last run, read per site and metric
    so each query is a range scan of (site_id, metric, ts)."""
    found: set[tuple[int, int]] = set()
    if since >= frontier:
        return found
    async with db.read_engine.connect() as conn:
        sites = [s for (s,) in await conn.execute(sa.select(table(Site).c.id))]
        for site_id in sites:
            for metric in METRICS:
                hours = (
                    sa.select(M.ts - M.ts % HOUR)
                    .distinct()
                    .where(M.site_id == site_id, M.metric == metric, M.ts >= since, M.ts < frontier)
                )
                found |= {(site_id, int(h)) for (h,) in await conn.execute(hours)}
    return found


async def run_rollups(db: Database, *, now_ms: int) -> RollupReport:
    """Bring rollups up to date: every hour closed since the last run, and every hour marked
    dirty, is rebuilt, then the days holding them; marks no newer than the rebuild are cleared."""
    since = await rolled_until(db)
    frontier = floor_to(now_ms, HOUR)
    marks = {key: at for key, at in (await dirty_hours(db)).items() if key[1] < frontier}
    todo = await _closed_hours(db, since=since, frontier=frontier) | set(marks)
    report = RollupReport()
    for site_id, hour_ms in sorted(todo):
        report.rows += await rollup_hour(db, site_id, hour_ms)
        report.hours += 1
    for site_id, day_ms in sorted({(s, floor_to(h, DAY)) for s, h in todo}):
        report.rows += await rollup_day(db, site_id, day_ms)
        report.days += 1
    async with db.write_conn() as conn:
        for (site_id, hour_ms), marked in marks.items():
            # A mark newer than what this run read stays, so the next run rebuilds again.
            await conn.execute(sa.delete(DIRTY).where(
                DIRTY.c.site_id == site_id, DIRTY.c.hour_ms == hour_ms, DIRTY.c.marked_ms <= marked
            ))  # fmt: skip
        updated = await conn.execute(sa.update(STATE).values(rolled_until_ms=max(since, frontier)))
        if not updated.rowcount:
            await conn.execute(sa.insert(STATE).values(id=1, rolled_until_ms=frontier))
    if report.hours:
        log.info("rollups: rebuilt %d hours and %d days (%d rows)", report.hours, report.days, report.rows)
    return report

"""Field queries shared by the API and the UI: summary, time series, distribution.

A range is answered from three parts, merged per (bucket, group):

* rollups for whole hours (or whole UTC days) that the rollup job has closed and that have no
  rows newer than its watermark;
* raw rows for everything else: the partial hours at the edges, the current hour, and any
  closed hour a re-report touched since the last rollup run.

So answers are right at every moment; the rollups only make them fast. Ranges reaching past
raw retention use whole-hour rollups at their edges, and past the hourly rollups' horizon
(FIELDLAB_HOURLY_ROLLUP_RETENTION_DAYS, if set) whole days.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.config import Settings
from app.db import Database, now_ms
from app.field.rollups import (
    ALL,
    DAY,
    DIMENSIONS,
    HOUR,
    Agg,
    M,
    R,
    ceil_to,
    dirty_hours,
    floor_to,
    rolled_until,
)
from app.field.stats import QUANTILES, SEGMENT_VALUES, percentile
from app.ingest.schemas import METRICS

STATS = (*QUANTILES, "count", "good", "needs_improvement", "poor")
GroupKey = tuple[int | None, str | None]  # (bucket start ms, group value)


@dataclass(frozen=True, slots=True)
class Filters:
    page_group: str | None = None
    device: str | None = None
    nav: str | None = None
    connection: str | None = None

    def get(self, dimension: str) -> str | None:
        value: str | None = getattr(self, dimension)
        return value


@dataclass(frozen=True, slots=True)
class Scope:
    """What to aggregate: one site and metric over [since, until), filtered and bucketed."""

    site_id: int
    metric: str
    since_ms: int
    until_ms: int
    filters: Filters = Filters()
    bucket: str | None = None  # "hour", "day" or None (one bucket)
    group_by: str | None = None  # one of DIMENSIONS
    raw_horizon_ms: int = 0  # raw rows before this were pruned


def _bucket_of(ts: int, bucket: str | None) -> int | None:
    if bucket is None:
        return None
    return floor_to(ts, HOUR if bucket == "hour" else DAY)


def _stored_page_groups(scope: Scope, period: str) -> sa.Select[Any]:
    """Every page group the period's rollups of this site and metric hold: a loose index scan,
    one seek on the unique index per group (a recursive "next larger value"), so its cost grows
    with the number of groups, not of rows."""

    def next_after(previous: Any) -> sa.ScalarSelect[Any]:
        where = [R.site_id == scope.site_id, R.period == period, R.metric == scope.metric]
        if previous is not None:
            where.append(R.page_group > previous)
        return sa.select(sa.func.min(R.page_group)).where(*where).scalar_subquery()

    walk = sa.select(next_after(None).label("value")).cte("page_groups", recursive=True)
    walk = walk.union_all(sa.select(next_after(walk.c.value)).where(walk.c.value.is_not(None)))
    return sa.select(walk.c.value).where(walk.c.value.is_not(None), walk.c.value != ALL)


def _rollup_where(
    scope: Scope, period: str, start: int, end: int, page_groups: Sequence[str] = ()
) -> list[Any]:
    """One cube cell (or, with group_by, the list of its cells) by equality on every segment
    column and start_ms as a range: one contiguous range of the unique index per cell."""
    where = [R.site_id == scope.site_id, R.period == period, R.metric == scope.metric,
             R.start_ms >= start, R.start_ms < end]  # fmt: skip
    for dim in DIMENSIONS:
        column, wanted = R[dim], scope.filters.get(dim)
        if wanted is not None:
            where.append(column == wanted)
        elif dim == scope.group_by:
            # A list, not "!= '*'": that would stop the index at this column and scan every cell.
            where.append(column.in_(SEGMENT_VALUES.get(dim, page_groups)))
        else:
            where.append(column == ALL)
    return where


def _raw_where(scope: Scope, start: int, end: int) -> list[Any]:
    where = [
        M.site_id == scope.site_id,
        M.metric == scope.metric,
        M.ts >= start,
        M.ts < end,
        M.is_bot.is_(False),
    ]
    for dim in DIMENSIONS:
        wanted = scope.filters.get(dim)
        if wanted is not None:
            where.append(M[dim] == wanted)
    return where


def _add(aggs: dict[GroupKey, Agg], key: GroupKey, part: Agg) -> None:
    if key in aggs:
        aggs[key].merge(part)
    else:
        aggs[key] = part


def _runs(days: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted day starts -> [start, end) ranges of consecutive days."""
    runs: list[tuple[int, int]] = []
    for day in days:
        if runs and runs[-1][1] == day:
            runs[-1] = (runs[-1][0], day + DAY)
        else:
            runs.append((day, day + DAY))
    return runs


def _gaps(start: int, end: int, taken: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """[start, end) minus the sorted, disjoint ranges ``taken``."""
    out: list[tuple[int, int]] = []
    for lo, hi in taken:
        if start < lo:
            out.append((start, lo))
        start = max(start, hi)
    if start < end:
        out.append((start, end))
    return out


def hour_horizon_ms(settings: Settings) -> int | None:
    """Hourly rollups before this are pruned (FIELDLAB_HOURLY_ROLLUP_RETENTION_DAYS); None if
    they are kept as long as the daily ones."""
    days = settings.hourly_rollup_retention_days
    return now_ms() - days * DAY if days else None


def answered_range(settings: Settings, scope: Scope) -> tuple[int, int]:
    """The [since, until) the numbers cover: the scope's, except that before the hourly horizon
    only day rollups are left, so such a range starts (and, if it ends there too, ends) at a UTC
    day boundary. Hourly series simply have no hours there. The API reports it."""
    since, until = scope.since_ms, scope.until_ms
    hour_horizon = hour_horizon_ms(settings)
    if scope.bucket != "hour" and hour_horizon is not None and since < hour_horizon:
        since = floor_to(since, DAY)
        if until < hour_horizon:
            until = ceil_to(until, DAY)
    return since, until


async def aggregate(db: Database, scope: Scope) -> dict[GroupKey, Agg]:
    rolled = await rolled_until(db)
    since, until = answered_range(db.settings, scope)
    # Whole hours the rollups may answer: inside the range and closed by the rollup job.
    first_hour = floor_to(since, HOUR) if since < scope.raw_horizon_ms else ceil_to(since, HOUR)
    end_hour = max(first_hour, min(floor_to(until, HOUR), rolled))
    group_col = scope.group_by
    aggs: dict[GroupKey, Agg] = {}
    raw_ranges: list[tuple[int, int]] = []
    cols = [R.start_ms, R.count, R.good, R.poor, R.sketch] + ([R[group_col]] if group_col else [])
    async with db.read_engine.connect() as conn:

        async def add_rollups(period: str, start: int, end: int, skip: set[int]) -> None:
            groups: list[str] = []
            if group_col == "page_group" and scope.filters.page_group is None:
                groups = list((await conn.execute(_stored_page_groups(scope, period))).scalars())
            where = _rollup_where(scope, period, start, end, groups)
            query = sa.select(*cols).where(*where).execution_options(fieldlab_query=f"field.rollup_{period}")
            for row in await conn.execute(query):
                if row[0] not in skip:
                    key = (_bucket_of(row[0], scope.bucket), row[5] if group_col else None)
                    _add(aggs, key, Agg.from_row(row[1], row[2], row[3], row[4]))

        if first_hour < end_hour:
            marked = await dirty_hours(db, site_id=scope.site_id, metric=scope.metric)
            dirty = {h for (_, h) in marked if first_hour <= h < end_hour}
            day_runs: list[tuple[int, int]] = []
            if scope.bucket != "hour":
                dirty_days = {floor_to(h, DAY) for h in dirty}
                day_runs = _runs([d for d in range(ceil_to(first_hour, DAY), floor_to(end_hour, DAY), DAY)
                                  if d not in dirty_days])  # fmt: skip
            for start, end in day_runs:
                await add_rollups("d", start, end, set())
            # Hour rollups only where no day rollup was read; dirty hours are read raw below.
            for start, end in _gaps(first_hour, end_hour, day_runs):
                await add_rollups("h", start, end, dirty)
            raw_ranges += [(h, h + HOUR) for h in sorted(dirty)]
            raw_ranges += [(since, first_hour), (end_hour, until)]
        else:
            raw_ranges.append((since, until))
        raw_cols = [M.ts, M.value] + ([M[group_col]] if group_col else [])
        for start, end in raw_ranges:
            start, end = max(start, since), min(end, until)
            if start >= end:
                continue
            raw = sa.select(*raw_cols).where(*_raw_where(scope, start, end))
            for row in await conn.execute(raw.execution_options(fieldlab_query="field.raw")):
                key = (_bucket_of(row[0], scope.bucket), row[2] if group_col else None)
                part = aggs.get(key)
                if part is None:
                    part = aggs[key] = Agg()
                part.add(scope.metric, row[1])
    return aggs


def stat_of(agg: Agg, stat: str, metric: str) -> float | int | None:
    if stat == "count":
        return agg.count
    if agg.count == 0:
        return None
    if stat == "good":
        return round(agg.good / agg.count, 4)
    if stat == "poor":
        return round(agg.poor / agg.count, 4)
    if stat == "needs_improvement":
        return round((agg.count - agg.good - agg.poor) / agg.count, 4)
    q = QUANTILES[stat]
    # Exact while every part came from raw rows; the sketch (±1 %) once rollups are in.
    value = percentile(sorted(agg.values), q) if agg.values is not None else agg.sketch.quantile(q)
    assert value is not None
    return round(value, 4) if metric == "CLS" else round(value, 1)


def describe(agg: Agg | None, metric: str) -> dict[str, Any]:
    agg = agg or Agg()
    return {"count": agg.count, **{s: stat_of(agg, s, metric) for s in STATS if s != "count"}}


async def summary(
    *, db: Database, site_id: int, since_ms: int, until_ms: int, filters: Filters, raw_horizon_ms: int = 0,
    metrics: Sequence[str] = METRICS,
) -> dict[str, Any]:  # fmt: skip
    out = {}
    for metric in metrics:
        scope = Scope(site_id, metric, since_ms, until_ms, filters, raw_horizon_ms=raw_horizon_ms)
        out[metric] = describe((await aggregate(db, scope)).get((None, None)), metric)
    return {"metrics": out}


async def series(*, db: Database, scope: Scope, stat: str) -> dict[str, Any]:
    aggs = await aggregate(db, scope)
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for (start, group), agg in sorted(aggs.items(), key=lambda kv: (str(kv[0][1]), kv[0][0] or 0)):
        groups.setdefault(group, []).append(
            {"t": start, "value": stat_of(agg, stat, scope.metric), "count": agg.count}
        )
    return {
        "metric": scope.metric,
        "stat": stat,
        "bucket": scope.bucket,
        "group_by": scope.group_by,
        "series": [{"group": g, "points": pts} for g, pts in groups.items()],
    }


def histogram(agg: Agg, metric: str, bins: int) -> list[dict[str, Any]]:
    """Equal-width bins from 0 to the p99 (the long tail goes in the last bin). The good and
    poor thresholds are always bin edges, so no bin straddles two ratings."""
    from app.field.stats import THRESHOLDS

    if agg.count == 0:
        return []
    top = agg.sketch.quantile(0.99) or 0.0
    good, poor = THRESHOLDS[metric]
    top = max(top, good * 1.2)
    width = top / bins
    edges = sorted({round(i * width, 6) for i in range(bins)} | {good, poor} | {top})
    edges = [e for e in edges if e <= top]
    out = []
    below = 0
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else None
        upto = agg.sketch.count_at_most(hi) if hi is not None else agg.count
        upto = min(upto, agg.count)
        band = "good" if hi is not None and hi <= good else ("poor" if lo >= poor else "needs_improvement")
        out.append({"from": lo, "to": hi, "count": max(0, upto - below), "rating": band})
        below = max(below, upto)
    return out

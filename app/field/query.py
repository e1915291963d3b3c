"""Field queries shared by the API and the UI: summary, time series, distribution.

A range is answered from three parts, merged per (bucket, group):

* rollups for whole hours (or whole UTC days) that the rollup job has closed and that have no
  rows newer than its watermark;
* raw rows for everything else: the partial hours at the edges, the current hour, and any
  closed hour a re-report touched since the last rollup run.

So answers are right at every moment; the rollups only make them fast. Ranges reaching past
raw retention use whole-hour rollups at their edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.db import Database
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
from app.field.stats import QUANTILES, percentile
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


def _rollup_where(scope: Scope, period: str, start: int, end: int) -> list[Any]:
    where = [R.site_id == scope.site_id, R.period == period, R.metric == scope.metric,
             R.start_ms >= start, R.start_ms < end]  # fmt: skip
    for dim in DIMENSIONS:
        column, wanted = R[dim], scope.filters.get(dim)
        if wanted is not None:
            where.append(column == wanted)
        elif dim == scope.group_by:
            where.append(column != ALL)
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


async def aggregate(db: Database, scope: Scope) -> dict[GroupKey, Agg]:
    rolled = await rolled_until(db)
    since, until = scope.since_ms, scope.until_ms
    # Whole hours the rollups may answer: inside the range and closed by the rollup job.
    first_hour = floor_to(since, HOUR) if since < scope.raw_horizon_ms else ceil_to(since, HOUR)
    end_hour = max(first_hour, min(floor_to(until, HOUR), rolled))
    group_col = scope.group_by
    aggs: dict[GroupKey, Agg] = {}
    raw_ranges: list[tuple[int, int]] = []
    async with db.read_engine.connect() as conn:
        dirty: set[int] = set()
        if first_hour < end_hour:
            marked = await dirty_hours(db, site_id=scope.site_id, metric=scope.metric)
            dirty = {h for (_, h) in marked if first_hour <= h < end_hour}
            hours_from_days: set[int] = set()
            if scope.bucket != "hour":
                days = [d for d in range(ceil_to(first_hour, DAY), floor_to(end_hour, DAY), DAY)
                        if not any(d <= h < d + DAY for h in dirty)]  # fmt: skip
                if days:
                    hours_from_days = {d + i * HOUR for d in days for i in range(24)}
                    cols = [R.start_ms, R.count, R.good, R.poor, R.sketch]
                    cols += [R[group_col]] if group_col else []
                    day_rows = await conn.execute(
                        sa.select(*cols).where(*_rollup_where(scope, "d", days[0], days[-1] + DAY))
                    )
                    for row in day_rows:
                        if row[0] in days:
                            key = (_bucket_of(row[0], scope.bucket), row[5] if group_col else None)
                            _add(aggs, key, Agg.from_row(row[1], row[2], row[3], row[4]))
            cols = [R.start_ms, R.count, R.good, R.poor, R.sketch] + ([R[group_col]] if group_col else [])
            for row in await conn.execute(
                sa.select(*cols).where(*_rollup_where(scope, "h", first_hour, end_hour))
            ):
                if row[0] in dirty or row[0] in hours_from_days:
                    continue
                key = (_bucket_of(row[0], scope.bucket), row[5] if group_col else None)
                _add(aggs, key, Agg.from_row(row[1], row[2], row[3], row[4]))
            raw_ranges += [(h, h + HOUR) for h in sorted(dirty)]
            raw_ranges += [(since, first_hour), (end_hour, until)]
        else:
            raw_ranges.append((since, until))
        cols = [M.ts, M.value] + ([M[group_col]] if group_col else [])
        for start, end in raw_ranges:
            start, end = max(start, since), min(end, until)
            if start >= end:
                continue
            for row in await conn.execute(sa.select(*cols).where(*_raw_where(scope, start, end))):
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

"""Field (RUM) figures: Core Web Vitals thresholds, exact percentiles and the summary query.

The percentile is the linear interpolation between closest ranks (PostgreSQL's
``percentile_cont``, numpy's default), so anyone can check a figure with the tool at hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from app.db import Database
from app.ingest.schemas import METRICS
from app.models import Measurement

# (good ≤ a, poor > b) per metric, from web.dev/vitals; CLS is unitless, the rest ms.
THRESHOLDS: dict[str, tuple[float, float]] = {
    "LCP": (2500, 4000),
    "INP": (200, 500),
    "CLS": (0.1, 0.25),
    "FCP": (1800, 3000),
    "TTFB": (800, 1800),
}
QUANTILES = {"p50": 0.50, "p75": 0.75, "p90": 0.90, "p95": 0.95}


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values; q in [0, 1]."""
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def rating(metric: str, value: float) -> str:
    good, poor = THRESHOLDS[metric]
    if value <= good:
        return "good"
    return "poor" if value > poor else "needs_improvement"


def summarise(metric: str, sorted_values: Sequence[float]) -> dict[str, Any]:
    """Count, percentiles and good/NI/poor shares of one metric's values."""
    n = len(sorted_values)
    if n == 0:
        return {"count": 0, **dict.fromkeys(QUANTILES), "good": None, "needs_improvement": None, "poor": None}
    good_max, poor_min = THRESHOLDS[metric]
    good = sum(1 for v in sorted_values if v <= good_max)
    poor = sum(1 for v in sorted_values if v > poor_min)
    out: dict[str, Any] = {"count": n}
    for name, q in QUANTILES.items():
        out[name] = _round(metric, percentile(sorted_values, q))
    out["good"] = round(good / n, 4)
    out["needs_improvement"] = round((n - good - poor) / n, 4)
    out["poor"] = round(poor / n, 4)
    return out


def _round(metric: str, value: float) -> float:
    return round(value, 4) if metric == "CLS" else round(value, 1)


async def summary(
    *,
    db: Database,
    site_id: int,
    since_ms: int,
    until_ms: int,
    page_group: str | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Exact summary from raw rows. Each (page view, metric) is one row (re-reports replace
    it), so every page view counts once per metric. Bots are excluded."""
    m = Measurement.__table__.c  # type: ignore[attr-defined]
    query = (
        sa.select(m.metric, m.value)
        .where(m.site_id == site_id, m.ts >= since_ms, m.ts < until_ms, m.is_bot.is_(False))
        .order_by(m.metric, m.value)
    )
    if page_group is not None:
        query = query.where(m.page_group == page_group)
    if device is not None:
        query = query.where(m.device == device)
    values: dict[str, list[float]] = {name: [] for name in METRICS}
    async with db.read_engine.connect() as conn:
        result = await conn.stream(query)
        async for metric, value in result:
            values[metric].append(value)
    return {"metrics": {name: summarise(name, values[name]) for name in METRICS}}

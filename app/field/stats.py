"""Core Web Vitals thresholds, exact percentiles and summaries of value lists. Pure.

The percentile is the linear interpolation between closest ranks (PostgreSQL's
``percentile_cont``, numpy's default), so anyone can check a figure with the tool at hand.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from typing import Any

from app.ingest.schemas import NavType

# (good ≤ a, poor > b) per metric, from web.dev/vitals; CLS is unitless, the rest ms.
THRESHOLDS: dict[str, tuple[float, float]] = {
    "LCP": (2500, 4000),
    "INP": (200, 500),
    "CLS": (0.1, 0.25),
    "FCP": (1800, 3000),
    "TTFB": (800, 1800),
}
QUANTILES = {"p50": 0.50, "p75": 0.75, "p90": 0.90, "p95": 0.95}
# Every value the ingest path can store in these segment columns (app/ingest/normalise.py and
# the beacon schema; a unit test holds them together). Page groups are open-ended.
SEGMENT_VALUES: dict[str, tuple[str, ...]] = {
    "device": ("mobile", "tablet", "desktop"),
    "nav": typing.get_args(NavType),
    "connection": ("slow-2g", "2g", "3g", "4g", "unknown"),
}


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

"""Field (RUM) analytics: thresholds and exact statistics (stats), hourly/daily rollups with
mergeable sketches (rollups), and the queries the API and UI share (query, attribution)."""

from app.field.stats import QUANTILES, THRESHOLDS, percentile, rating, summarise

__all__ = ["QUANTILES", "THRESHOLDS", "percentile", "rating", "summarise"]

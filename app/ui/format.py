"""Template helpers: how numbers, ratings, times and sparklines look. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from app.field.stats import THRESHOLDS, rating
from app.sketch import ALPHA

RATING_LABEL = {"good": "good", "needs_improvement": "needs improvement", "poor": "poor", "none": "no data"}
NO_VALUE = "\u2013"  # an en dash: no data
MINUS = "\u2212"


def value(metric: str, v: float | None) -> str:
    if v is None:
        return NO_VALUE
    if metric == "CLS":
        return f"{v:.3f}"
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{round(v)} ms"


# Two p75s read from rollup sketches (app/sketch.py, relative accuracy ALPHA each) that differ
# by less than 2 x ALPHA may come from the same exact value: no change can be read from them.
RESOLUTION = 2 * ALPHA


def change(metric: str, a: float | None, b: float | None) -> tuple[str, str]:
    """B's p75 against A's as (text, css class): "+96 ms (+4 %)" in ``poor`` (every metric
    here is worse higher), or "within ±2 %" when the two are closer than the sketches resolve."""
    if a is None or b is None:
        return NO_VALUE, ""
    d = b - a
    if abs(d) <= RESOLUTION * max(abs(a), abs(b)):
        return f"within \u00b1{RESOLUTION * 100:.0f} %", "muted"
    sign = "+" if d > 0 else MINUS
    pct = f" ({sign}{abs(100 * d / a):.0f} %)" if a else ""
    return f"{sign}{value(metric, abs(d))}{pct}", "poor" if d > 0 else "good"


def rating_of(metric: str, v: float | None) -> str:
    return "none" if v is None else rating(metric, v)


def share(v: float | None) -> str:
    return NO_VALUE if v is None else f"{v * 100:.0f} %"


def when(ms: int | None, bucket: str | None = "hour") -> str:
    if ms is None:
        return NO_VALUE
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M") if bucket == "hour" else moment.strftime("%Y-%m-%d")


def sparkline(metric: str, values: Sequence[float | None], width: int = 120, height: int = 28) -> str:
    """SVG polyline points, scaled from 0 to the larger of the data and the poor threshold so a
    flat good line reads as good. Empty when there are fewer than two values."""
    present = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(present) < 2:
        return ""
    top = max(max(v for _, v in present), THRESHOLDS[metric][1]) or 1.0
    step = width / max(1, len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in present)


def sparkline_plain(values: Sequence[float], width: int = 120, height: int = 28) -> str:
    """SVG polyline points from 0 to the largest value (durations, counts)."""
    if len(values) < 2:
        return ""
    top = max(values) or 1.0
    step = width / (len(values) - 1)
    return " ".join(
        f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in enumerate(values)
    )


STATUS_CLASS = {"passed": "good", "flaky": "needs_improvement", "failed": "poor", "error": "poor",
                "timed-out": "poor"}  # fmt: skip


def duration(ms: float | None) -> str:
    if ms is None:
        return NO_VALUE
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{round(ms)} ms"


def size(n: int | None) -> str:
    if n is None:
        return NO_VALUE
    return f"{n / 1_048_576:.1f} MB" if n >= 1_048_576 else f"{n / 1024:.1f} KB"


def amount(v: float | None, unit: str) -> str:
    """A budget's measured value in its unit: ``3.30 s``, ``24.4 KB``, ``0.116``."""
    if v is None:
        return NO_VALUE
    if unit == "ms":
        return duration(v)
    if unit == "bytes":
        return size(round(v))
    number = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return f"{number}{' ' + unit if unit else ''}"


LIGHTHOUSE_METRICS = {
    "first-contentful-paint": "First Contentful Paint",
    "largest-contentful-paint": "Largest Contentful Paint",
    "total-blocking-time": "Total Blocking Time",
    "cumulative-layout-shift": "Cumulative Layout Shift",
    "speed-index": "Speed Index",
    "interactive": "Time to Interactive",
    "server-response-time": "Server response time",
}


def lighthouse_metric(audit: str, v: float | None) -> tuple[str, str]:
    """(label, value) of a Lighthouse metric audit: its numericValue in ms, CLS unitless."""
    label = LIGHTHOUSE_METRICS.get(audit, audit)
    if v is None:
        return label, NO_VALUE
    return label, f"{v:.3f}" if audit == "cumulative-layout-shift" else duration(v)


def run_value(unit: str, v: float | None) -> str:
    """A value on a check's charts: ms as durations, CLS unitless, scores 0-100."""
    if v is None:
        return NO_VALUE
    if unit == "CLS":
        return f"{v:.3f}"
    if unit == "score":
        return f"{v:g}"
    return duration(v)


def schedule(interval_s: int | None, cron: str | None) -> str:
    """A check's schedule as people say it: "every 5 min", "every 2 h", "cron 0 * * * *"."""
    if interval_s:
        for unit, seconds in (("d", 86_400), ("h", 3_600), ("min", 60)):
            if interval_s % seconds == 0:
                return f"every {interval_s // seconds} {unit}"
        return f"every {interval_s} s"
    return f"cron {cron}" if cron else "manual"


def score_class(score: float | None) -> str:
    """Lighthouse's own colours: 90-100 good, 50-89 needs improvement, below 50 poor."""
    if score is None:
        return "none"
    return "good" if score >= 0.9 else "needs_improvement" if score >= 0.5 else "poor"


def worst_score(row: dict[str, Any]) -> float:
    """How far the worst vital of a page group is past its good threshold (1.0 = at it)."""
    scores = [row[m] / THRESHOLDS[m][0] for m in ("LCP", "INP", "CLS") if row.get(m) is not None]
    return max(scores) if scores else -1.0


def sort_groups(rows: list[dict[str, Any]], key: str, descending: bool) -> list[dict[str, Any]]:
    if key == "group":
        return sorted(rows, key=lambda r: str(r["group"]), reverse=descending)
    if key == "views":
        return sorted(rows, key=lambda r: int(r["views"]), reverse=descending)
    if key in ("LCP", "INP", "CLS"):
        # Groups without the metric go last whichever way the column is sorted.
        have = sorted(
            (r for r in rows if r.get(key) is not None), key=lambda r: float(r[key]), reverse=descending
        )
        return have + [r for r in rows if r.get(key) is None]
    return sorted(rows, key=worst_score, reverse=descending)


def url_host(url: str) -> str:
    """A webhook URL as the page shows it: scheme and host. The path of a Slack (or similar)
    incoming webhook is its secret, and a dashboard is looked at over shoulders."""
    parts = urlsplit(url)
    return (
        f"{parts.scheme}://{parts.netloc}/…"
        if parts.path not in ("", "/")
        else f"{parts.scheme}://{parts.netloc}/"
    )


def register(env: Any) -> None:
    """Jinja filters and globals (TemplateConfig's engine callback)."""
    env.filters["vital"] = lambda v, metric: value(metric, v)
    env.filters["share"] = share
    env.filters["when"] = when
    env.globals["rating_of"] = rating_of
    env.globals["rating_label"] = RATING_LABEL
    env.globals["sparkline"] = sparkline
    env.globals["thresholds"] = THRESHOLDS
    env.globals["sparkline_plain"] = sparkline_plain
    env.globals["status_class"] = lambda status: STATUS_CLASS.get(status, "none")
    env.filters["duration"] = duration
    env.filters["size"] = size
    env.filters["url_host"] = url_host
    env.globals["amount"] = amount
    env.globals["change"] = change
    env.globals["lighthouse_metric"] = lighthouse_metric
    env.globals["run_value"] = run_value
    env.globals["score_class"] = score_class
    env.globals["schedule"] = schedule

"""Regression comparisons over stored data: field p75 of a site, lab values of a check's runs,
window against baseline (the previous period, or the period before a deploy marker).

The statistics are in :mod:`app.budgets.regress` (pure); this module only fetches the two
samples and labels the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from app.budgets.evaluate import DOCUMENT_VITALS, worst_document
from app.budgets.regress import Regression, Thresholds, field_regression, lab_regression, periods
from app.db import Database
from app.models import CheckRun, DeployMarker, Measurement, table

FIELD_METRICS = ("LCP", "INP", "CLS", "FCP", "TTFB")
# The Lighthouse audit each lab metric is read from (app/lab.py shows a subset beside the field).
LIGHTHOUSE_AUDITS = {
    "LCP": "largest-contentful-paint",
    "FCP": "first-contentful-paint",
    "CLS": "cumulative-layout-shift",
    "TBT": "total-blocking-time",
    "TTFB": "server-response-time",
    "SI": "speed-index",
}


@dataclass(frozen=True, slots=True)
class Window:
    baseline: tuple[int, int]
    current: tuple[int, int]
    since: str  # "deploy abc1234" or "previous period"

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": list(self.baseline), "current": list(self.current), "since": self.since}


def window_for(*, now_ms: int, window_ms: int, marker: DeployMarker | None) -> Window:
    base, cur = periods(now_ms=now_ms, window_ms=window_ms, marker_ms=None if marker is None else marker.ts)
    since = "previous period" if marker is None else f"deploy {marker.commit_sha[:7]}"
    return Window(base, cur, since)


def unit_of(metric: str) -> str:
    if metric in ("CLS", "requests") or metric.startswith(("score:", "audit:")):
        return ""
    return "bytes" if metric == "bytes" else "ms"


async def field_values(
    *,
    db: Database,
    site_id: int,
    metric: str,
    span: tuple[int, int],
    page_group: str | None = None,
    device: str | None = None,
    most: int = 20_000,
) -> list[float]:
    """The real-user values of a period; past ``most`` an even sample by row id (ids follow
    arrival, so every stretch of the period is represented, unlike a plain LIMIT)."""
    m = table(Measurement).c
    where = _field_where(site_id, metric, span, device)
    if page_group is not None:
        where.append(m.page_group == page_group)
    async with db.read_engine.connect() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).where(*where))).scalar_one()
        if count > most:
            where.append(m.id % -(-count // most) == 0)
        rows = await conn.execute(sa.select(m.value).where(*where).limit(most))
        return [float(v) for v in rows.scalars()]


async def busiest_page_groups(
    *, db: Database, site_id: int, metric: str, span: tuple[int, int], device: str | None, most: int
) -> list[str]:
    """The ``most`` page groups with the most values of ``metric`` in the period, busiest first."""
    m = table(Measurement).c
    n = sa.func.count()
    query = (
        sa.select(m.page_group)
        .where(*_field_where(site_id, metric, span, device))
        .group_by(m.page_group)
        .order_by(n.desc(), m.page_group)
        .limit(most)
    )
    async with db.read_engine.connect() as conn:
        return [str(g) for g in (await conn.execute(query)).scalars()]


def _field_where(site_id: int, metric: str, span: tuple[int, int], device: str | None) -> list[Any]:
    m = table(Measurement).c
    where = [m.site_id == site_id, m.metric == metric, m.ts >= span[0], m.ts < span[1], m.is_bot.is_(False)]
    if device is not None:
        where.append(m.device == device)
    return where


async def field_comparison(
    *,
    db: Database,
    site_id: int,
    metrics: Sequence[str],
    window: Window,
    thresholds: Thresholds,
    page_group: str | None = None,
    device: str | None = None,
) -> list[Regression]:
    out = []
    for metric in metrics:
        args: dict[str, Any] = {
            "db": db,
            "site_id": site_id,
            "metric": metric,
            "page_group": page_group,
            "device": device,
        }
        base = await field_values(span=window.baseline, **args)
        cur = await field_values(span=window.current, **args)
        out.append(
            field_regression(
                base, cur, metric=metric, unit=unit_of(metric), since=window.since, thresholds=thresholds
            )
        )
    return out


def lab_value(result: dict[str, Any] | None, metric: str) -> float | None:
    """One number from a run's result.

    ``duration`` (the whole run), ``step:NAME`` (a flow step's duration), ``step:NAME:VITAL``
    (the step's slowest document, as budgets judge it; a step whose name ends in ``:VITAL`` is
    still found by ``step:NAME`` first), ``LCP``/``FCP``/``CLS``/``TTFB``/``INP``/``TBT``/``SI``
    (a flow's first navigation that has it, or the Lighthouse metric), ``bytes`` and
    ``requests`` (transferred over the run), ``score:CATEGORY`` and ``audit:ID`` (Lighthouse).
    """
    if not result:
        return None
    if metric == "duration":
        return _num(result.get("duration_ms"))
    if metric.startswith("score:"):
        return _num((result.get("scores") or {}).get(metric.removeprefix("score:")))
    if metric.startswith("audit:"):
        return _num((result.get("metrics") or {}).get(metric.removeprefix("audit:")))
    steps = result.get("steps")
    if steps is None:  # a Lighthouse result
        if metric in LIGHTHOUSE_AUDITS:
            return _num((result.get("metrics") or {}).get(LIGHTHOUSE_AUDITS[metric]))
        rows = {r.get("resourceType"): r for r in result.get("resource_summary") or []}
        if metric not in ("bytes", "requests"):
            return None
        total = rows.get("total") or {}
        return _num(total.get("transferSize" if metric == "bytes" else "requestCount"))
    if metric.startswith("step:"):
        name = metric.removeprefix("step:")
        step, _, vital = name.rpartition(":")
        if step and vital in DOCUMENT_VITALS and not any(s.get("name") == name for s in steps):
            return worst_document([s for s in steps if s.get("name") == step], vital)
        return next((_num(s.get("duration_ms")) for s in steps if s.get("name") == name), None)
    if metric in ("bytes", "requests"):
        key = "total_bytes" if metric == "bytes" else "total_count"
        return float(sum((s.get("resources") or {}).get(key) or 0 for s in steps))
    for s in steps:
        for nav in s.get("navigations") or []:
            value = _num((nav.get("vitals") or {}).get(metric))
            if value is not None:
                return value
    return None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


async def lab_results(*, db: Database, check_id: int, span: tuple[int, int]) -> list[dict[str, Any]]:
    """The results of the check's runs that measured something in ``span``, oldest first."""
    query = select(CheckRun).where(
        CheckRun.check_id == check_id,
        CheckRun.started_ms >= span[0],
        CheckRun.started_ms < span[1],
        col(CheckRun.status).in_(["passed", "failed", "flaky"]),
    )
    async with db.read() as session:
        runs = (await session.exec(query.order_by(col(CheckRun.started_ms)))).all()
    return [r.result for r in runs if r.result]


async def lab_values(*, db: Database, check_id: int, metric: str, span: tuple[int, int]) -> list[float]:
    results = await lab_results(db=db, check_id=check_id, span=span)
    return [v for r in results if (v := lab_value(r, metric)) is not None]


async def lab_comparison(
    *, db: Database, check_id: int, metric: str, window: Window, thresholds: Thresholds
) -> Regression:
    base = await lab_values(db=db, check_id=check_id, metric=metric, span=window.baseline)
    cur = await lab_values(db=db, check_id=check_id, metric=metric, span=window.current)
    return lab_regression(
        base,
        cur,
        metric=metric,
        unit=unit_of(metric),
        since=window.since,
        thresholds=thresholds,
        higher_is_worse=not metric.startswith("score:"),
    )

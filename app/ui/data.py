"""What the dashboard pages show, read through the field query functions the API uses
(app/field/query.py, app/field/attribution.py) and through the same query cache. This module
only chooses scopes and shapes answers for templates; the numbers come from those functions."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar.exceptions import HTTPException

from app.api.deps import Services
from app.api.field import scope_from
from app.budgets.store import list_markers
from app.field import attribution, query
from app.field.rollups import DAY, HOUR, ceil_to, floor_to
from app.models import Site

VITALS = ("LCP", "INP", "CLS")
METRICS = ("LCP", "INP", "CLS", "FCP", "TTFB")
RANGES = {"24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY, "90d": 90 * DAY}
FILTERS = ("group", "device", "connection", "nav")
# (section title, metric, attribution "by")
ATTRIBUTION = (
    ("LCP elements", "LCP", "element"),
    ("LCP resources", "LCP", "url"),
    ("INP targets", "INP", "target"),
    ("INP scripts (Long Animation Frames)", "INP", "script"),
    ("CLS sources", "CLS", "target"),
)


def now_ms() -> int:
    return int(time.time() * 1000)


def _bad(detail: str) -> HTTPException:
    return HTTPException(status_code=400, detail=detail)


def _day(name: str, raw: str) -> int:
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise _bad(f"{name}: {raw!r} is not a date like 2026-11-01") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class View:
    """One page's choice of range and filters, parsed from (and written back to) its URL."""

    range: str
    since_ms: int
    until_ms: int
    filters: dict[str, str]  # only those set
    metric: str = "LCP"

    @property
    def bucket(self) -> str:
        return "hour" if self.until_ms - self.since_ms <= 7 * DAY else "day"

    def query(self, **changes: str | None) -> dict[str, str]:
        """URL parameters of this view, with some changed (None removes one)."""
        params: dict[str, str] = {"range": self.range, **self.filters}
        if self.range == "custom":
            params["since"] = datetime.fromtimestamp(self.since_ms / 1000, UTC).date().isoformat()
            params["until"] = datetime.fromtimestamp((self.until_ms - 1) / 1000, UTC).date().isoformat()
        if self.metric != "LCP":
            params["metric"] = self.metric
        for key, value in changes.items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        return params

    def key(self) -> str:
        return repr(sorted(self.query().items()))


def parse_view(params: Mapping[str, str], *, now: int, default_range: str = "7d") -> View:
    chosen = params.get("range") or default_range
    if chosen == "custom":
        if not params.get("since") or not params.get("until"):
            raise _bad("since: a custom range needs both since and until dates")
        since = _day("since", params["since"])
        # The until date is inclusive: the range ends at the end of that day.
        until = _day("until", params["until"]) + DAY
        if since >= until:
            raise _bad("since: must be on or before until")
    elif chosen in RANGES:
        # Rounded to the minute so that repeated views within it share cached answers.
        until = ceil_to(now, 60_000)
        since = until - RANGES[chosen]
    else:
        raise _bad(f"range: {chosen!r} is not one of {', '.join((*RANGES, 'custom'))}")
    metric = params.get("metric") or "LCP"
    if metric not in METRICS:
        raise _bad(f"metric: {metric!r} is not one of {', '.join(METRICS)}")
    filters = {k: params[k] for k in FILTERS if params.get(k)}
    return View(range=chosen, since_ms=since, until_ms=until, filters=filters, metric=metric)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def scope(svc: Services, site: Site, view: View, *, metric: str, bucket: str | None = None,
          group_by: str | None = None) -> query.Scope:  # fmt: skip
    """The API's own parameter parser builds the scope, so both refuse the same values. The
    page group is taken as given (the API's ``page`` also accepts a path and maps it)."""
    params = {"since": _iso(view.since_ms), "until": _iso(view.until_ms),
              **{k: v for k, v in view.filters.items() if k != "group"}}  # fmt: skip
    built = scope_from(site, params, bucket=bucket, group_by=group_by, metric=metric, now_ms=now_ms(),
                       raw_days=svc.settings.raw_retention_days)  # fmt: skip
    if "group" in view.filters:
        built = dataclasses.replace(
            built, filters=dataclasses.replace(built.filters, page_group=view.filters["group"])
        )
    return built


async def _cached(svc: Services, site_id: int, key: str, compute: Callable[[], Awaitable[Any]]) -> Any:
    async def encoded() -> bytes:
        return msgspec.json.encode(await compute())

    return msgspec.json.decode(await svc.cache.get_or_compute(site_id, f"ui:{key}", encoded))


# --- overview ---------------------------------------------------------------------------------


async def site_card(svc: Services, site: Site, *, now: int) -> dict[str, Any]:
    """Last 7 days' p75 of each Core Web Vital and a daily sparkline of it."""
    assert site.id is not None
    view = parse_view({"range": "7d"}, now=now)
    site_id = site.id

    async def compute() -> dict[str, Any]:
        base = scope(svc, site, view, metric="LCP")
        summary = await query.summary(db=svc.db, site_id=site_id, since_ms=base.since_ms,
                                      until_ms=base.until_ms, filters=base.filters,
                                      raw_horizon_ms=base.raw_horizon_ms, metrics=VITALS)  # fmt: skip
        spark = {}
        for metric in VITALS:
            days = scope(svc, site, view, metric=metric, bucket="day")
            out = await query.series(db=svc.db, scope=days, stat="p75")
            points = out["series"][0]["points"] if out["series"] else []
            spark[metric] = [p["value"] for p in points]
        return {"summary": summary["metrics"], "spark": spark}

    card: dict[str, Any] = await _cached(svc, site_id, f"card:{view.key()}", compute)
    return card


# --- trends -------------------------------------------------------------------------------------


def _grid(view: View, bucket: str) -> list[int]:
    step = HOUR if bucket == "hour" else DAY
    return list(range(floor_to(view.since_ms, step), view.until_ms, step))


def chart_bucket(svc: Services, view: View) -> str:
    """The view's bucket, but days where the range reaches past the hourly rollups' horizon
    (FIELDLAB_HOURLY_ROLLUP_RETENTION_DAYS): there are no hours left to draw there."""
    horizon = query.hour_horizon_ms(svc.settings)
    if view.bucket == "hour" and horizon is not None and view.since_ms < horizon:
        return "day"
    return view.bucket


async def trends(svc: Services, site: Site, view: View) -> dict[str, Any]:
    """Summary, a p75 line per metric on a full bucket grid (gaps stay gaps) and the chosen
    metric's histogram."""
    assert site.id is not None

    async def compute() -> dict[str, Any]:
        assert site.id is not None
        base = scope(svc, site, view, metric="LCP")
        summary = await query.summary(db=svc.db, site_id=site.id, since_ms=base.since_ms,
                                      until_ms=base.until_ms, filters=base.filters,
                                      raw_horizon_ms=base.raw_horizon_ms)  # fmt: skip
        bucket = chart_bucket(svc, view)
        grid = _grid(view, bucket)
        lines = {}
        for metric in METRICS:
            out = await query.series(db=svc.db, scope=scope(svc, site, view, metric=metric, bucket=bucket),
                                     stat="p75")  # fmt: skip
            points = {p["t"]: p for p in (out["series"][0]["points"] if out["series"] else [])}
            lines[metric] = [
                {"t": t, "value": points[t]["value"] if t in points else None,
                 "count": points[t]["count"] if t in points else 0}
                for t in grid
            ]  # fmt: skip
        agg = (await query.aggregate(svc.db, scope(svc, site, view, metric=view.metric))).get((None, None))
        bins = query.histogram(agg, view.metric, 20) if agg is not None else []
        return {"summary": summary["metrics"], "lines": lines, "bins": bins, "bucket": bucket}

    got: dict[str, Any] = await _cached(svc, site.id, f"trends:{view.key()}", compute)
    return got


async def deploys(svc: Services, site_id: int, view: View) -> list[dict[str, Any]]:
    """Deploy markers in the view's range, oldest first. Not cached with the field answers:
    the cache is invalidated by new beacons, not by new markers."""
    markers = await list_markers(db=svc.db, site_id=site_id, since_ms=view.since_ms, until_ms=view.until_ms,
                                 limit=100)  # fmt: skip
    return [{"t": m.ts, "commit": m.commit_sha, "branch": m.branch, "message": m.message}
            for m in reversed(markers)]  # fmt: skip


def chart_markers(deploys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Deploys as charts.js draws them: grey lines at ``t`` (seconds) with the short commit."""
    return [{"t": d["t"] // 1000, "label": d["commit"][:7]} for d in deploys]


async def compare(svc: Services, site: Site, view: View, *, pivot_ms: int | None) -> dict[str, Any]:
    """The view's filters over two periods of the view's length: before and after a deploy
    (``pivot_ms``), or the range and the one just before it."""
    assert site.id is not None
    length = view.until_ms - view.since_ms
    if pivot_ms is None:
        before, after = (view.since_ms - length, view.since_ms), (view.since_ms, view.until_ms)
    else:
        before, after = (pivot_ms - length, pivot_ms), (pivot_ms, min(pivot_ms + length, view.until_ms))
        if after[0] >= after[1]:
            after = (pivot_ms, pivot_ms + 1)
    site_id = site.id

    async def compute() -> dict[str, Any]:
        out: dict[str, Any] = {"before": before, "after": after}
        for name, (since, until) in (("a", before), ("b", after)):
            part = scope(svc, site, dataclasses.replace(view, since_ms=since, until_ms=until), metric="LCP")
            summary = await query.summary(db=svc.db, site_id=site_id, since_ms=since, until_ms=until,
                                          filters=part.filters, raw_horizon_ms=part.raw_horizon_ms)  # fmt: skip
            out[name] = summary["metrics"]
        return out

    return dict(await _cached(svc, site_id, f"compare:{before}:{after}:{view.key()}", compute))


# --- page groups --------------------------------------------------------------------------------


async def page_groups(svc: Services, site: Site, view: View) -> list[dict[str, Any]]:
    """One row per page group: page views and the p75 of each Core Web Vital."""
    assert site.id is not None

    async def compute() -> list[dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for metric in VITALS:
            by_group = scope(svc, site, view, metric=metric, group_by="page")
            out = await query.series(db=svc.db, scope=by_group, stat="p75")
            for line in out["series"]:
                if line["group"] is None or not line["points"]:
                    continue
                point = line["points"][0]
                row = rows.setdefault(line["group"], {"group": line["group"], "views": 0})
                row[metric] = point["value"]
                row[f"{metric}_count"] = point["count"]
                row["views"] = max(row["views"], point["count"])
        return list(rows.values())

    return list(await _cached(svc, site.id, f"groups:{view.key()}", compute))


# --- attribution --------------------------------------------------------------------------------


async def attribution_tables(svc: Services, site: Site, view: View, limit: int = 10) -> list[dict[str, Any]]:
    assert site.id is not None

    async def compute() -> list[dict[str, Any]]:
        out = []
        for title, metric, by in ATTRIBUTION:
            items = await attribution.top(db=svc.db, scope=scope(svc, site, view, metric=metric), by=by,
                                          limit=limit)  # fmt: skip
            out.append({"title": title, "metric": metric, "by": by, "items": items})
        return out

    return list(await _cached(svc, site.id, f"attribution:{view.key()}", compute))

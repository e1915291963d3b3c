"""Field data API: summary, series, distribution, attribution and a batch query; and the lab
numbers of the same range beside them (``/lab``).

Every field answer goes through the query cache (invalidated when new data for the site lands)
and carries an ETag; a conditional GET with a matching ``If-None-Match`` gets 304. The lab
answer is read afresh (runs land without a beacon to invalidate the cache).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from app import lab
from app.api.deps import principal_of, require_read, services
from app.config import Settings
from app.field import attribution, query
from app.field.rollups import DAY
from app.ingest.normalise import page_group
from app.models import Site
from app.sites import get_site

Metric = Literal["LCP", "INP", "CLS", "FCP", "TTFB"]
Stat = Literal["p50", "p75", "p90", "p95", "count", "good", "needs_improvement", "poor"]
Device = Literal["mobile", "tablet", "desktop"]
Nav = Literal["navigate", "reload", "back-forward", "back-forward-cache", "prerender", "restore", "soft"]
Connection = Literal["slow-2g", "2g", "3g", "4g", "unknown"]
Dimension = Literal["page", "device", "nav", "connection"]
CACHE_CONTROL = "private, no-cache"  # revalidate every time; the ETag makes that cheap

# --- documented answer shapes ---------------------------------------------------------------


class MetricSummary(msgspec.Struct):
    count: int
    p50: float | None
    p75: float | None
    p90: float | None
    p95: float | None
    good: float | None
    needs_improvement: float | None
    poor: float | None


class Covered(msgspec.Struct):
    """The range the numbers cover (ISO 8601, UTC): the one asked for, or wider where only whole
    UTC days are left (FIELDLAB_HOURLY_ROLLUP_RETENTION_DAYS)."""

    since: str
    until: str


class SummaryOut(Covered):
    metrics: dict[str, MetricSummary]


class SeriesPoint(msgspec.Struct):
    t: int  # bucket start, epoch ms (UTC)
    value: float | None
    count: int


class SeriesLine(msgspec.Struct):
    group: str | None
    points: list[SeriesPoint]


class SeriesOut(Covered):
    metric: str
    stat: str
    bucket: str
    group_by: str | None
    series: list[SeriesLine]


class HistogramBin(msgspec.Struct, rename={"lo": "from"}):
    lo: float
    to: float | None
    count: int
    rating: str


class DistributionOut(Covered):
    metric: str
    count: int
    bins: list[HistogramBin]


class AttributionItem(msgspec.Struct, omit_defaults=True):
    item: str
    count: int
    p75: float
    cross_origin: bool | None = None


class AttributionOut(msgspec.Struct):
    metric: str
    by: str
    items: list[AttributionItem]


class LabPoint(msgspec.Struct):
    t: int  # the run's start, epoch ms (UTC)
    value: float
    run_id: int


class LabCheck(msgspec.Struct):
    check_id: int
    check: str
    kind: str
    device: str
    runs_in_range: int  # measured runs of the check in the range; points has at most 180 of them
    sampled: bool  # true when points is a spread of runs_in_range, not all of them
    median: float
    latest: float
    points: list[LabPoint]


class LabOut(Covered):
    metric: str
    checks: list[LabCheck]


class QueryIn(msgspec.Struct):
    kind: Literal["summary", "series", "distribution"]
    site_id: int
    params: dict[str, str] = {}


class BatchIn(msgspec.Struct):
    queries: Annotated[list[QueryIn], msgspec.Meta(min_length=1, max_length=50)]


# --- parameters ------------------------------------------------------------------------------

_DIMENSION_COLUMN = {"page": "page_group", "device": "device", "nav": "nav", "connection": "connection"}
_ALLOWED = {"device": Device, "nav": Nav, "connection": Connection}


def _bad(detail: str) -> HTTPException:
    return HTTPException(status_code=400, detail=detail)


def _time(name: str, raw: str | None, default: datetime) -> int:
    if not raw:
        return int(default.timestamp() * 1000)
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise _bad(f"{name}: {raw!r} is not an ISO 8601 time like 2026-11-01T00:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _choice(name: str, raw: str | None, allowed: Any) -> str | None:
    if raw is None or raw == "":
        return None
    options = allowed.__args__
    if raw not in options:
        raise _bad(f"{name}: {raw!r} is not one of {', '.join(options)}")
    return raw


def scope_from(site: Site, params: Mapping[str, str | None], *, bucket: str | None, group_by: str | None,
               metric: str, now_ms: int, raw_days: int) -> query.Scope:  # fmt: skip
    """One parser for GET parameters and batch-query params, so both refuse the same things."""
    assert site.id is not None
    until = _time("until", params.get("until"), datetime.fromtimestamp(now_ms / 1000, UTC))
    since = _time("since", params.get("since"), datetime.fromtimestamp(until / 1000, UTC) - timedelta(days=7))
    if since >= until:
        raise _bad("since: must be before until")
    page = params.get("page")
    filters = query.Filters(
        page_group=page_group(page, site.page_groups) if page else None,
        **{dim: _choice(dim, params.get(dim), allowed) for dim, allowed in _ALLOWED.items()},
    )
    return query.Scope(
        site_id=site.id,
        metric=metric,
        since_ms=since,
        until_ms=until,
        filters=filters,
        bucket=bucket,
        group_by=_DIMENSION_COLUMN[group_by] if group_by else None,
        raw_horizon_ms=now_ms - raw_days * DAY,
    )


async def _site(request: Request[Any, Any, Any], site_id: int) -> Site:
    if not principal_of(request).can_read(site_id):
        raise PermissionDeniedException("this token is limited to another site")
    site = await get_site(db=services(request).db, site_id=site_id)
    if site is None:
        raise NotFoundException(f"no site with id {site_id}")
    return site


def _query_params(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if isinstance(v, str)}


async def _answer(
    request: Request[Any, Any, Any], site_id: int, compute: Callable[[], Awaitable[Any]]
) -> Response[bytes]:
    svc = services(request)

    async def encoded() -> bytes:
        return msgspec.json.encode(await compute())

    key = f"{request.url.path}?{sorted(request.query_params.multi_items())}"
    body = await svc.cache.get_or_compute(site_id, key, encoded)
    etag = '"' + hashlib.sha256(body).hexdigest()[:24] + '"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if etag in request.headers.get("if-none-match", ""):
        return Response(b"", status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


# --- computations (shared by the GET routes and the batch query) ---------------------------------


async def _summary(request: Request[Any, Any, Any], site: Site, params: Mapping[str, str]) -> dict[str, Any]:
    svc = services(request)
    scope = scope_from(site, params, bucket=None, group_by=None, metric="LCP", now_ms=_now(),
                       raw_days=svc.settings.raw_retention_days)  # fmt: skip
    assert site.id is not None
    out = await query.summary(db=svc.db, site_id=site.id, since_ms=scope.since_ms, until_ms=scope.until_ms,
                              filters=scope.filters, raw_horizon_ms=scope.raw_horizon_ms)  # fmt: skip
    return {**_covered(svc.settings, scope), **out}


async def _series(request: Request[Any, Any, Any], site: Site, params: Mapping[str, str]) -> dict[str, Any]:
    svc = services(request)
    metric = _choice("metric", params.get("metric") or "LCP", Metric)
    stat = _choice("stat", params.get("stat") or "p75", Stat)
    bucket = _choice("bucket", params.get("bucket") or "hour", Literal["hour", "day"])
    group_by = _choice("group_by", params.get("group_by"), Dimension)
    assert metric
    assert stat
    scope = scope_from(site, params, bucket=bucket, group_by=group_by, metric=metric, now_ms=_now(),
                       raw_days=svc.settings.raw_retention_days)  # fmt: skip
    if bucket == "hour" and scope.until_ms - scope.since_ms > 400 * DAY:
        raise _bad("bucket: hourly series span at most 400 days; use bucket=day")
    out = await query.series(db=svc.db, scope=scope, stat=stat)
    out["group_by"] = group_by
    return {**_covered(svc.settings, scope), **out}


async def _distribution(
    request: Request[Any, Any, Any], site: Site, params: Mapping[str, str]
) -> dict[str, Any]:
    svc = services(request)
    metric = _choice("metric", params.get("metric") or "LCP", Metric)
    assert metric
    try:
        bins = int(params.get("bins") or 20)
    except ValueError:
        raise _bad(f"bins: {params.get('bins')!r} is not a whole number") from None
    if not 2 <= bins <= 100:
        raise _bad("bins: must be between 2 and 100")
    scope = scope_from(site, params, bucket=None, group_by=None, metric=metric, now_ms=_now(),
                       raw_days=svc.settings.raw_retention_days)  # fmt: skip
    agg = (await query.aggregate(svc.db, scope)).get((None, None))
    bins_out = query.histogram(agg, metric, bins) if agg is not None else []
    return {
        **_covered(svc.settings, scope),
        "metric": metric,
        "count": agg.count if agg is not None else 0,
        "bins": bins_out,
    }


def _covered(settings: Settings, scope: query.Scope) -> dict[str, str]:
    """The range an answer covers, which is wider than the one asked for where only whole days
    are left (FIELDLAB_HOURLY_ROLLUP_RETENTION_DAYS), so a client can tell."""
    since, until = query.answered_range(settings, scope)
    return {"since": _iso(since), "until": _iso(until)}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _now() -> int:
    return int(time.time() * 1000)


_COMMON = {
    "since": Parameter(default=None, description="ISO 8601 start (inclusive). Default: 7 days before until."),
    "until": Parameter(default=None, description="ISO 8601 end (exclusive). Default: now."),
    "page": Parameter(default=None, description="A path (`/product/123`) or page group (`/product/:id`)."),
}


@get("/api/v1/sites/{site_id:int}/summary", guards=[require_read], tags=["field"],
     responses={200: ResponseSpec(data_container=SummaryOut, description="Per-metric summary")})  # fmt: skip
async def summary(
    request: Request[Any, Any, Any],
    site_id: int,
    since: str | None = _COMMON["since"],
    until: str | None = _COMMON["until"],
    page: str | None = _COMMON["page"],
    device: Device | None = None,
    nav: Nav | None = None,
    connection: Connection | None = None,
) -> Response[bytes]:
    """Count, p50/p75/p90/p95 and good / needs-improvement / poor shares per Core Web Vital."""
    site = await _site(request, site_id)
    return await _answer(request, site_id, lambda: _summary(request, site, _query_params(request)))


@get("/api/v1/sites/{site_id:int}/series", guards=[require_read], tags=["field"],
     responses={200: ResponseSpec(data_container=SeriesOut, description="Time series per group")})  # fmt: skip
async def series(
    request: Request[Any, Any, Any],
    site_id: int,
    metric: Metric = "LCP",
    stat: Stat = "p75",
    bucket: Literal["hour", "day"] = "hour",
    since: str | None = _COMMON["since"],
    until: str | None = _COMMON["until"],
    page: str | None = _COMMON["page"],
    device: Device | None = None,
    nav: Nav | None = None,
    connection: Connection | None = None,
    group_by: Dimension | None = None,
) -> Response[bytes]:
    """One stat of one metric per hour or UTC day; each point has its value and sample count."""
    site = await _site(request, site_id)
    return await _answer(request, site_id, lambda: _series(request, site, _query_params(request)))


@get("/api/v1/sites/{site_id:int}/distribution", guards=[require_read], tags=["field"],
     responses={200: ResponseSpec(data_container=DistributionOut, description="Histogram with rating bands")})  # fmt: skip
async def distribution(
    request: Request[Any, Any, Any],
    site_id: int,
    metric: Metric = "LCP",
    bins: int = 20,
    since: str | None = _COMMON["since"],
    until: str | None = _COMMON["until"],
    page: str | None = _COMMON["page"],
    device: Device | None = None,
    nav: Nav | None = None,
    connection: Connection | None = None,
) -> Response[bytes]:
    """Histogram of a metric (0 to p99, tail in the last bin); the thresholds are bin edges and
    each bin carries its rating band."""
    site = await _site(request, site_id)
    return await _answer(request, site_id, lambda: _distribution(request, site, _query_params(request)))


@get("/api/v1/sites/{site_id:int}/attribution", guards=[require_read], tags=["field"],
     responses={200: ResponseSpec(data_container=AttributionOut, description="Top items")})  # fmt: skip
async def top_attribution(
    request: Request[Any, Any, Any],
    site_id: int,
    metric: Literal["LCP", "INP", "CLS"] = "LCP",
    by: str | None = Parameter(
        default=None,
        description="LCP: element (default) or url; INP: target (default), script (LoAF source URL) or type; CLS: target.",
    ),
    limit: Annotated[int, Parameter(ge=1, le=100)] = 10,
    since: str | None = _COMMON["since"],
    until: str | None = _COMMON["until"],
    page: str | None = _COMMON["page"],
    device: Device | None = None,
    nav: Nav | None = None,
    connection: Connection | None = None,
) -> Response[bytes]:
    """What the slow page views have in common: each item's page-view count and p75."""
    site = await _site(request, site_id)
    chosen = by or attribution.DEFAULT_BY[metric]
    if chosen not in attribution.BY[metric]:
        raise _bad(f"by: {chosen!r} is not one of {', '.join(attribution.BY[metric])} for {metric}")
    svc = services(request)

    async def compute() -> dict[str, Any]:
        scope = scope_from(site, _query_params(request), bucket=None, group_by=None, metric=metric,
                           now_ms=_now(), raw_days=svc.settings.raw_retention_days)  # fmt: skip
        items = await attribution.top(db=svc.db, scope=scope, by=chosen, limit=limit)
        return {"metric": metric, "by": chosen, "items": items}

    return await _answer(request, site_id, compute)


@get("/api/v1/sites/{site_id:int}/lab", guards=[require_read], tags=["field"],
     responses={200: ResponseSpec(data_container=LabOut, description="Each check's lab runs in the range")})  # fmt: skip
async def lab_series(
    request: Request[Any, Any, Any],
    site_id: int,
    metric: Metric = "LCP",
    since: str | None = _COMMON["since"],
    until: str | None = _COMMON["until"],
    page: str | None = _COMMON["page"],
    device: Device | None = None,
) -> LabOut:
    """Lab beside field: each of the site's checks' runs in the range with their value of the
    metric (a flow's first navigation with it, or its first in `page`'s page group; Lighthouse's
    LCP, FCP and CLS), oldest first; `device` picks checks of that device."""
    site = await _site(request, site_id)
    svc = services(request)
    scope = scope_from(site, _query_params(request), bucket=None, group_by=None, metric=metric, now_ms=_now(),
                       raw_days=svc.settings.raw_retention_days)  # fmt: skip
    found = await lab.lab_trends(db=svc.db, site=site, since_ms=scope.since_ms, until_ms=scope.until_ms,
                                 group=scope.filters.page_group, device=scope.filters.device)  # fmt: skip
    checks = [
        LabCheck(check_id=c["check_id"], check=c["check"], kind=c["kind"], device=c["device"],
                 runs_in_range=c["total"], sampled=c["sampled"], median=c["summary"][metric]["median"],
                 latest=c["summary"][metric]["latest"],
                 points=[LabPoint(t=t, value=v, run_id=r) for t, v, r in c["points"][metric]])
        for c in found if c["points"].get(metric)
    ]  # fmt: skip
    return LabOut(since=_iso(scope.since_ms), until=_iso(scope.until_ms), metric=metric, checks=checks)


_KINDS = {"summary": _summary, "series": _series, "distribution": _distribution}


@post("/api/v1/query", guards=[require_read], tags=["field"], status_code=200)
async def batch(request: Request[Any, Any, Any], data: BatchIn) -> dict[str, Any]:
    """Several summary / series / distribution queries in one round trip. `params` takes the
    same names and values as the GET endpoints; each result is its data or an `error`."""
    results: list[dict[str, Any]] = []
    for i, q in enumerate(data.queries):
        try:
            site = await _site(request, q.site_id)
            results.append({"data": await _KINDS[q.kind](request, site, q.params)})
        except HTTPException as exc:
            results.append({"error": f"queries[{i}]: {exc.detail}", "status_code": exc.status_code})
    return {"results": results}

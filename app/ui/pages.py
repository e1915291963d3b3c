"""The dashboard's site pages: overview (and its add-a-site form, admin only), site trends, page
groups, attribution and compare. Each handler is a few lines: parse the view, fetch through
app.ui.data, render. Checks and budgets have their own modules."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.response import Redirect, Template

from app import checks as check_data
from app.api.deps import services
from app.budgets.store import list_markers
from app.field.stats import THRESHOLDS
from app.lab import compare_rows, lab_trends, latest_by_group
from app.sites import Conflict, InvalidInput, create_site
from app.ui import budgetlines, data, format
from app.ui.auth import require_admin_session
from app.ui.budgets import open_alerts
from app.ui.context import page, readable_site, visible_sites
from app.ui.selfsite import self_site_key

NAV_LABELS = {"navigate": "navigate", "reload": "reload", "back-forward": "back/forward",
              "back-forward-cache": "bfcache", "prerender": "prerender", "restore": "restore", "soft": "soft"}  # fmt: skip
FILTER_CHOICES = {
    "device": ("mobile", "tablet", "desktop"),
    "connection": ("4g", "3g", "2g", "slow-2g", "unknown"),
    "nav": tuple(NAV_LABELS),
}


def _params(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if isinstance(v, str)}


def _url(path: str, params: dict[str, str]) -> str:
    return f"{path}?{urlencode(params)}" if params else path


@get(["/", ""], include_in_schema=False)
async def overview(request: Request[Any, Any, Any]) -> Template:
    svc = services(request)
    now = data.now_ms()
    await self_site_key(request, register=True)  # so the built-in site is listed from the first view
    cards = [(site, await data.site_card(svc, site, now=now)) for site in await visible_sites(request)]
    return await page(request, "overview.html", cards=cards, vitals=data.VITALS, error="", form={},
                      **await _status(request))  # fmt: skip


async def _status(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Per site: its checks' latest runs, and how many of its budgets (that this sign-in may
    see) are not ok."""
    db = services(request).db
    lab: dict[int, list[tuple[Any, Any]]] = {}
    for check in await check_data.list_checks(db=db):
        if check.site_id is not None and check.id is not None:
            runs = await check_data.list_runs(db=db, check_id=check.id, limit=1)
            lab.setdefault(check.site_id, []).append((check, runs[0] if runs else None))
    return {"lab": lab, "alerts": await open_alerts(request)}


@post("/sites", include_in_schema=False, guards=[require_admin_session], status_code=303)
async def add_site(request: Request[Any, Any, Any]) -> Response[Any]:
    form = await request.form()
    name = str(form.get("name") or "")
    origins = [o.strip() for o in str(form.get("origins") or "").replace(",", " ").split() if o.strip()]
    try:
        site = await create_site(db=services(request).db, name=name, origins=origins)
    except (InvalidInput, Conflict) as exc:
        cards = [(s, await data.site_card(services(request), s, now=data.now_ms()))
                 for s in await visible_sites(request)]  # fmt: skip
        return await page(request, "overview.html", status_code=400, cards=cards, vitals=data.VITALS,
                          error=str(exc), form={"name": name, "origins": " ".join(origins)},
                          **await _status(request))  # fmt: skip
    # A new site has no data yet; what its owner needs next is the snippet tag.
    return Redirect(f"/ui/sites/{site.id}/settings", status_code=303)


async def site_page(request: Request[Any, Any, Any], site_id: int, template: str, **context: Any) -> Template:
    site = await readable_site(request, site_id)
    view = data.parse_view(_params(request), now=data.now_ms())
    base = f"/ui/sites/{site_id}"
    return await page(
        request, template, site=site, view=view, base=base, choices=FILTER_CHOICES, nav_labels=NAV_LABELS,
        ranges=(*data.RANGES, "custom"), links={
            "trends": _url(f"{base}/trends", view.query()),
            "pages": _url(f"{base}/pages", view.query(metric=None)),
            "attribution": _url(f"{base}/attribution", view.query(metric=None)),
            "compare": _url(f"{base}/compare", view.query(metric=None)),
            "settings": f"{base}/settings",
        }, **context,
    )  # fmt: skip


@get("/sites/{site_id:int}/trends", include_in_schema=False)
async def trends(request: Request[Any, Any, Any], site_id: int) -> Template:
    site = await readable_site(request, site_id)
    view = data.parse_view(_params(request), now=data.now_ms())
    got = await data.trends(services(request), site, view)
    assert site.id is not None
    deploys = await data.deploys(services(request), site.id, view)
    # Chart input: seconds on x (uPlot's time scale), p75 on y, thresholds for the guide lines.
    spec = budgetlines.spec_of(request.app.state, services(request).settings.budgets_file)
    budget = {m: budgetlines.lines(spec, metric=m, group=view.filters.get("group"), device=view.filters.get("device"))
              for m in data.METRICS}  # fmt: skip
    # Lab beside field: the site's checks' runs over the same range, page group and device.
    lab = await lab_trends(db=services(request).db, site=site, since_ms=view.since_ms, until_ms=view.until_ms,
                           group=view.filters.get("group"), device=view.filters.get("device"))  # fmt: skip
    chart = {
        "trends": [{"metric": m, "thresholds": THRESHOLDS[m], "x": [p["t"] // 1000 for p in got["lines"][m]],
                    "y": [p["value"] for p in got["lines"][m]], "budget": budget[m],
                    "lab": [{"name": c["check"], "x": [p[0] // 1000 for p in c["points"][m]], "y": [p[1] for p in c["points"][m]]}
                            for c in lab if c["points"].get(m)]} for m in data.METRICS],
        "histogram": {"metric": view.metric, "bins": got["bins"]},
        "markers": data.chart_markers(deploys),
    }  # fmt: skip
    return await site_page(request, site_id, "trends.html", charts=True, got=got, chart=chart,
                            metrics=data.METRICS, deploys=deploys, budget=budget, lab=lab)  # fmt: skip


@get("/sites/{site_id:int}/pages", include_in_schema=False)
async def page_groups(
    request: Request[Any, Any, Any], site_id: int, sort: str = "worst", order: str = ""
) -> Template:
    site = await readable_site(request, site_id)
    view = data.parse_view(_params(request), now=data.now_ms())
    if sort not in ("worst", "group", "views", *data.VITALS):
        raise HTTPException(
            status_code=400, detail=f"sort: {sort!r} is not one of worst, group, views, LCP, INP, CLS"
        )
    if order not in ("", "asc", "desc"):
        raise HTTPException(status_code=400, detail=f"order: {order!r} is not asc or desc")
    descending = order != "asc" if sort != "group" else order == "desc"
    field_rows = await data.page_groups(services(request), site, view)
    lab = await latest_by_group(db=services(request).db, site=site)
    seen = {r["group"] for r in field_rows}
    field_rows += [{"group": g, "views": 0} for g in lab if g not in seen]  # lab-only routes
    rows = format.sort_groups(field_rows, sort, descending)
    return await site_page(request, site_id, "pages.html", rows=rows, sort=sort, descending=descending,
                            vitals=data.VITALS, lab=lab)  # fmt: skip


@get("/sites/{site_id:int}/attribution", include_in_schema=False)
async def attribution(request: Request[Any, Any, Any], site_id: int) -> Template:
    site = await readable_site(request, site_id)
    view = data.parse_view(_params(request), now=data.now_ms())
    tables = await data.attribution_tables(services(request), site, view)
    return await site_page(request, site_id, "attribution.html", tables=tables)


@get("/sites/{site_id:int}/compare", include_in_schema=False)
async def compare(request: Request[Any, Any, Any], site_id: int, deploy: int | None = None) -> Template:
    return await compare_page(request, site_id, deploy)


async def compare_page(
    request: Request[Any, Any, Any],
    site_id: int,
    deploy: int | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> Template:
    """The compare page, with its list of deploy markers (``context``: the marker form's state)."""
    site = await readable_site(request, site_id)
    view = data.parse_view(_params(request), now=data.now_ms())
    markers = await list_markers(db=services(request).db, site_id=site_id, limit=50)
    marker = None
    if deploy is not None:
        marker = next((m for m in markers if m.id == deploy), None)
        if marker is None:
            raise HTTPException(status_code=400, detail=f"deploy: no deploy marker {deploy} for this site")
    got = await data.compare(services(request), site, view, pivot_ms=marker.ts if marker else None)
    # Lab beside field: each check's medians over the same two periods, page group and device.
    lab = [await lab_trends(db=services(request).db, site=site, since_ms=since, until_ms=until,
                            group=view.filters.get("group"), device=view.filters.get("device"))
           for since, until in (got["before"], got["after"])]  # fmt: skip
    context.setdefault("marker_form", {})
    return await site_page(request, site_id, "compare.html", got=got, markers=markers, marker=marker,
                           metrics=data.METRICS, lab_rows=compare_rows(*lab), status_code=status_code,
                           **context)  # fmt: skip

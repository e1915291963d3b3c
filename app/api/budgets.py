"""Deploy markers, regressions, budget status history, alert states, webhooks and their log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, delete, get, post
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from app import checks as check_data
from app import sites
from app.api.deps import principal_of, require_admin, require_read, services
from app.budgets import compare, store
from app.budgets.regress import Thresholds
from app.budgets.service import BudgetService
from app.budgets.verdict import Status, Verdict
from app.db import now_ms
from app.models import BudgetStatus, Webhook, WebhookDelivery
from app.selfalerts import SCOPE as SELF_SCOPE


def budget_service(request: Request[Any, Any, Any]) -> BudgetService:
    svc: BudgetService = request.app.state.budgets
    return svc


def _ms(value: datetime) -> int:
    return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp() * 1000)


def _bad(exc: Exception) -> HTTPException:
    return HTTPException(status_code=400, detail=str(exc))


# --- deploy markers ---------------------------------------------------------------------------


class MarkerIn(msgspec.Struct):
    commit: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    branch: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    time: datetime | None = None  # ISO 8601; default: now
    message: Annotated[str, msgspec.Meta(max_length=1000)] = ""


async def _site(request: Request[Any, Any, Any], site_id: int) -> None:
    if not principal_of(request).can_read(site_id):
        raise PermissionDeniedException("this token is limited to another site")
    if await sites.get_site(db=services(request).db, site_id=site_id) is None:
        raise NotFoundException(f"no site with id {site_id}")


def _may_mark(request: Request[Any, Any, Any], site_id: int) -> None:
    principal = principal_of(request)
    if not principal.can_mark_deploys(site_id):
        raise PermissionDeniedException(
            "adding or deleting a marker needs an admin token or a deploy token for this site "
            f"(this one has scope {principal.scope!r}"
            + (f", limited to site {principal.site_id})" if principal.site_id is not None else ")")
        )


@post(
    "/api/v1/sites/{site_id:int}/markers",
    guards=[require_read],
    status_code=HTTP_201_CREATED,
    tags=["budgets"],
)
async def add_marker(request: Request[Any, Any, Any], site_id: int, data: MarkerIn) -> dict[str, Any]:
    """Record a deploy (an admin token, or a deploy token of all sites or of this one, e.g. the
    CI's). Regression comparisons can start at it (`marker=latest`)."""
    _may_mark(request, site_id)
    await _site(request, site_id)
    try:
        marker = await store.add_marker(
            db=services(request).db,
            site_id=site_id,
            commit=data.commit,
            branch=data.branch,
            message=data.message,
            ts_ms=None if data.time is None else _ms(data.time),
        )
    except sites.InvalidInput as exc:
        raise _bad(exc) from None
    return store.marker_dict(marker)


@delete(
    "/api/v1/sites/{site_id:int}/markers/{marker_id:int}",
    guards=[require_read],
    status_code=HTTP_204_NO_CONTENT,
    tags=["budgets"],
)
async def delete_marker(request: Request[Any, Any, Any], site_id: int, marker_id: int) -> None:
    """Delete a marker recorded by mistake (the same tokens as adding one). Comparisons with
    `marker=latest` then start at the marker before it."""
    _may_mark(request, site_id)
    await _site(request, site_id)
    if not await store.delete_marker(db=services(request).db, site_id=site_id, marker_id=marker_id):
        raise NotFoundException(f"site {site_id} has no marker with id {marker_id}")


@get("/api/v1/sites/{site_id:int}/markers", guards=[require_read], tags=["budgets"])
async def list_markers(
    request: Request[Any, Any, Any],
    site_id: int,
    since: datetime | None = None,
    until: datetime | None = None,
    branch: str | None = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Deploy markers of a site, newest first."""
    await _site(request, site_id)
    rows = await store.list_markers(
        db=services(request).db,
        site_id=site_id,
        since_ms=None if since is None else _ms(since),
        until_ms=None if until is None else _ms(until),
        branch=branch,
        limit=limit,
    )
    return [store.marker_dict(m) for m in rows]


# --- regressions ------------------------------------------------------------------------------


def _thresholds(request: Request[Any, Any, Any], *, field: bool) -> Thresholds:
    s = services(request).settings
    return Thresholds(
        alpha=s.regress_alpha,
        min_effect_pct=s.regress_min_effect_pct,
        min_samples=s.regress_min_field_samples if field else s.regress_min_lab_runs,
    )


async def _window(
    request: Request[Any, Any, Any], site_id: int | None, marker: str | None, hours: int
) -> compare.Window:
    found = None
    if marker:
        if site_id is None:
            raise HTTPException(
                status_code=400, detail="marker: this check belongs to no site, so it has no markers"
            )
        try:
            found = await store.find_marker(db=services(request).db, site_id=site_id, ref=marker)
        except sites.InvalidInput as exc:
            raise _bad(exc) from None
        if found is None:
            raise NotFoundException(f"marker: no deploy marker {marker!r} for site {site_id}")
    return compare.window_for(now_ms=now_ms(), window_ms=hours * 3_600_000, marker=found)


@get("/api/v1/sites/{site_id:int}/regressions", guards=[require_read], tags=["budgets"])
async def field_regressions(
    request: Request[Any, Any, Any],
    site_id: int,
    metric: Annotated[
        list[str] | None, Parameter(description="LCP, INP, CLS, FCP, TTFB; repeatable.")
    ] = None,
    window_h: Annotated[int, Parameter(ge=1, le=2160, description="Window length in hours.")] = 24,
    marker: Annotated[str | None, Parameter(description="`latest`, a marker id or a commit prefix.")] = None,
    page: str | None = Parameter(default=None, description="Page group."),
    device: Literal["mobile", "tablet", "desktop"] | None = None,
) -> dict[str, Any]:
    """Field p75 of the window against its baseline: the previous window, or the window before a
    deploy marker. Each result says e.g. "LCP p75 +420 ms (p = 0.01) since deploy abc1234"."""
    await _site(request, site_id)
    metrics = metric or list(compare.FIELD_METRICS)
    unknown = [m for m in metrics if m not in compare.FIELD_METRICS]
    if unknown:
        raise HTTPException(
            status_code=400, detail=f"metric: unknown {unknown}; use {', '.join(compare.FIELD_METRICS)}"
        )
    window = await _window(request, site_id, marker, window_h)
    results = await compare.field_comparison(
        db=services(request).db,
        site_id=site_id,
        metrics=metrics,
        window=window,
        thresholds=_thresholds(request, field=True),
        page_group=page,
        device=device,
    )
    return {"window": window.to_dict(), "results": [r.to_dict() for r in results]}


@get("/api/v1/checks/{check_id:int}/regressions", guards=[require_read], tags=["budgets"])
async def lab_regressions(
    request: Request[Any, Any, Any],
    check_id: int,
    metric: Annotated[
        str,
        Parameter(
            description="duration, step:NAME, step:NAME:LCP (or another vital: the step's slowest page), "
            "LCP, CLS, TBT, bytes, requests, score:CAT, audit:ID"
        ),
    ] = "duration",
    window_h: Annotated[int, Parameter(ge=1, le=2160)] = 24,
    marker: str | None = None,
) -> dict[str, Any]:
    """A check's runs in the window against the baseline runs (Mann-Whitney U)."""
    check = await check_data.get_check(db=services(request).db, check_id=check_id)
    if check is None:
        raise NotFoundException(f"no check with id {check_id}")
    if len(metric) > 300:
        raise HTTPException(status_code=400, detail="metric: at most 300 characters")
    window = await _window(request, check.site_id, marker, window_h)
    result = await compare.lab_comparison(
        db=services(request).db,
        check_id=check_id,
        metric=metric,
        window=window,
        thresholds=_thresholds(request, field=False),
    )
    return {"window": window.to_dict(), "results": [result.to_dict()]}


# --- status history and alerts --------------------------------------------------------------


class VerdictIn(msgspec.Struct):
    budget_id: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    name: Annotated[str, msgspec.Meta(max_length=512)]
    status: Status
    actual: float | None = None
    limit: float | None = None
    margin: float | None = None
    unit: Annotated[str, msgspec.Meta(max_length=16)] = ""
    samples: int | None = None
    detail: Annotated[str, msgspec.Meta(max_length=2048)] = ""


class EvaluationIn(msgspec.Struct):
    scope: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z]+:[A-Za-z0-9_.\-]+$")]
    verdicts: Annotated[list[VerdictIn], msgspec.Meta(max_length=1000)]
    run_id: int | None = None


# 1000 verdicts at their longest fields are about 3.2 MB; the app-wide limit is a beacon's 64 KiB.
_EVALUATION_MAX_BYTES = 4 * 1024 * 1024


async def _scope_access(request: Request[Any, Any, Any], scope: str, *, record: bool = False) -> None:
    """403 naming why, unless this token may read (or, ``record``, store) the budget scope."""
    principal = principal_of(request)
    if principal.scope == "admin":
        return
    if scope == SELF_SCOPE:
        raise PermissionDeniedException(f"scope {SELF_SCOPE!r} (fieldlab's own health) needs an admin token")
    if record and principal.scope != "deploy":
        raise PermissionDeniedException(
            f"storing budget status needs an admin or a deploy token (this one has scope {principal.scope!r})"
        )
    site_id = (await store.scope_sites(db=services(request).db, scopes=[scope]))[scope]
    if not principal.can_see_scope(site_id):
        owner = f"site {site_id}" if site_id is not None else "no site (only tokens of every site reach it)"
        raise PermissionDeniedException(
            f"this token is limited to site {principal.site_id}; scope {scope!r} belongs to {owner}"
        )


@post(
    "/api/v1/budget-status",
    guards=[require_read],
    status_code=HTTP_201_CREATED,
    tags=["budgets"],
    request_max_body_size=_EVALUATION_MAX_BYTES,
)
async def record_evaluation(request: Request[Any, Any, Any], data: EvaluationIn) -> dict[str, Any]:
    """Store an evaluation made elsewhere (e.g. `fieldlab gate --upload`) as the scope's latest:
    it enters the history and the alert states, and notifies webhooks on changes. An admin
    token, or a deploy token (CI's) of every site or of the scope's site."""
    await _scope_access(request, data.scope, record=True)
    verdicts = [Verdict(**msgspec.structs.asdict(v)) for v in data.verdicts]
    events = await budget_service(request).record(data.scope, verdicts, run_id=data.run_id)
    return {
        "stored": len(verdicts),
        "events": [{"kind": e.kind, "band": e.band, "budget_id": e.verdict.budget_id} for e in events],
    }


@get("/api/v1/budget-status", guards=[require_read], tags=["budgets"])
async def status_history(
    request: Request[Any, Any, Any],
    # `scope` is Litestar's reserved name for the ASGI scope, hence the alias.
    scope_: Annotated[str, Parameter(query="scope", max_length=64, description="site:ID or check:ID")],
    budget_id: str | None = None,
    since: datetime | None = None,
    limit: Annotated[int, Parameter(ge=1, le=5000)] = 500,
) -> list[dict[str, Any]]:
    """Budget status history of a scope, newest first (`gate:BRANCH` scopes: tokens of every
    site only)."""
    await _scope_access(request, scope_)
    rows = await store.status_history(
        db=services(request).db,
        scope=scope_,
        budget_id=budget_id,
        since_ms=None if since is None else _ms(since),
        limit=limit,
    )
    return [
        r.model_dump(exclude={"limit_value"}) | {"limit": r.limit_value, "at": store.iso_ms(r.evaluated_ms)}
        for r in rows
    ]


@get("/api/v1/alerts", guards=[require_read], tags=["budgets"])
async def alert_states(
    request: Request[Any, Any, Any], scope_: str | None = Parameter(query="scope", default=None)
) -> list[dict[str, Any]]:
    """Every budget's alert state: `summary` (ok, warning, failing), each band's state and the
    latest verdict (`last`: status, actual, limit, margin, unit, samples, detail). A token
    limited to one site sees that site's scopes."""
    db = services(request).db
    if scope_ is not None:
        await _scope_access(request, scope_)
    states = await store.alert_states(db=db, scope=scope_)
    if scope_ is None:
        states = await store.visible_states(db=db, principal=principal_of(request), states=states)
    latest = await store.latest_verdicts(db=db, states=states)
    return [
        {
            "scope": a.scope,
            "budget_id": a.budget_id,
            "name": a.name,
            "summary": a.summary,
            "last_status": a.last_status,
            "last": _last(latest.get((a.scope, a.budget_id))),
            "bands": a.bands,
            "updated": store.iso_ms(a.updated_ms),
        }
        for a in states
    ]


def _last(row: BudgetStatus | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "status": row.status, "actual": row.actual, "limit": row.limit_value, "margin": row.margin,
        "unit": row.unit, "samples": row.samples, "detail": row.detail,
    }  # fmt: skip


# --- webhooks ---------------------------------------------------------------------------------


class WebhookIn(msgspec.Struct):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    format: Literal["json", "slack"] = "json"
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    scope: Annotated[str, msgspec.Meta(max_length=64)] = ""
    secret: Annotated[str, msgspec.Meta(max_length=200)] = ""


def webhook_out(h: Webhook) -> dict[str, Any]:
    return {
        "id": h.id,
        "name": h.name,
        "url": h.url,
        "format": h.format,
        "scope": h.scope,
        "signed": bool(h.secret),
        "enabled": h.enabled,
        "created": store.iso_ms(h.created_ms),
    }


def delivery_out(d: WebhookDelivery) -> dict[str, Any]:
    return d.model_dump() | {"created": store.iso_ms(d.created_ms), "finished": store.iso_ms(d.finished_ms)}


@post("/api/v1/webhooks", guards=[require_admin], status_code=HTTP_201_CREATED, tags=["budgets"])
async def create_webhook(request: Request[Any, Any, Any], data: WebhookIn) -> dict[str, Any]:
    """Send alert notifications to a URL: `json` (generic) or `slack` (incoming-webhook format).
    `scope` limits it to one site's or check's alerts; `secret` signs the bodies (HMAC-SHA256)."""
    try:
        hook = await store.create_webhook(
            db=services(request).db,
            name=data.name,
            url=data.url,
            fmt=data.format,
            scope=data.scope,
            secret=data.secret,
        )
    except sites.InvalidInput as exc:
        raise _bad(exc) from None
    return webhook_out(hook)


@get("/api/v1/webhooks", guards=[require_admin], tags=["budgets"])
async def list_webhooks(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    return [webhook_out(h) for h in await store.list_webhooks(db=services(request).db)]


@delete(
    "/api/v1/webhooks/{webhook_id:int}",
    guards=[require_admin],
    status_code=HTTP_204_NO_CONTENT,
    tags=["budgets"],
)
async def delete_webhook(request: Request[Any, Any, Any], webhook_id: int) -> None:
    if not await store.delete_webhook(db=services(request).db, webhook_id=webhook_id):
        raise NotFoundException(f"no webhook with id {webhook_id}")


@post("/api/v1/webhooks/{webhook_id:int}/test", guards=[require_admin], status_code=200, tags=["budgets"])
async def test_webhook(request: Request[Any, Any, Any], webhook_id: int) -> dict[str, Any]:
    """Send a test notification now, in the webhook's format and with its signature, retried
    like any other; the answer is its delivery-log entry (`status` delivered or failed,
    `http_status`, `attempts`, `error`)."""
    db = services(request).db
    hook = await store.get_webhook(db=db, webhook_id=webhook_id)
    if hook is None:
        raise NotFoundException(f"no webhook with id {webhook_id}")
    await budget_service(request).send_test(hook)
    [delivery] = await store.list_deliveries(db=db, webhook_id=webhook_id, limit=1)
    return delivery_out(delivery)


@get("/api/v1/webhooks/deliveries", guards=[require_admin], tags=["budgets"])
async def list_deliveries(
    request: Request[Any, Any, Any],
    webhook_id: int | None = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    before: int | None = Parameter(default=None, description="Only deliveries with a smaller id (paging)."),
) -> list[dict[str, Any]]:
    """The delivery log, newest first: each notification, its attempts and outcome."""
    rows = await store.list_deliveries(
        db=services(request).db, webhook_id=webhook_id, limit=limit, before_id=before
    )
    return [delivery_out(d) for d in rows]

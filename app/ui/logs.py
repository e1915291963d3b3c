"""Logs and slow queries. The logs page searches JS errors, synthetic failures and fieldlab's
own warnings (grouped by fingerprint, or as single events) through the functions the logs API
uses; a sign-in limited to one site searches that site only. The slow-queries page lists this
process's slow reads with their plans, for admins (statements can carry site data)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request, get
from litestar.exceptions import HTTPException
from litestar.response import Template

from app.api.deps import services
from app.db import now_ms
from app.search.events import KINDS, LEVELS
from app.search.params import parse
from app.search.query import NotAllowed, QueryError, decode_cursor, search_events, search_groups
from app.ui.auth import principal_of, require_admin_session
from app.ui.context import page, visible_sites


@get("/logs", include_in_schema=False)
async def logs(request: Request[Any, Any, Any]) -> Template:
    svc = services(request)
    raw = {k: v for k, v in request.query_params.items() if v != ""}
    view = raw.pop("view", "groups")
    if view not in ("groups", "events"):
        raise HTTPException(status_code=400, detail=f"view: {view!r} is not one of groups, events")
    try:
        parsed = parse(raw, principal=principal_of(request), settings=svc.settings, now_ms=now_ms())
        if parsed.cursor:
            decode_cursor(parsed.cursor)
    except QueryError as exc:
        raise HTTPException(
            status_code=403 if isinstance(exc, NotAllowed) else 400, detail=str(exc)
        ) from None
    groups: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    more = ""
    if view == "groups":
        found = await search_groups(db=svc.db, filters=parsed.filters, limit=parsed.limit, offset=parsed.offset,
                                    sort=parsed.sort)  # fmt: skip
        groups = found["groups"]
        if found["next_offset"] is not None:
            more = urlencode({**raw, "view": view, "offset": found["next_offset"]})
    else:
        found = await search_events(
            db=svc.db, filters=parsed.filters, limit=parsed.limit, cursor=parsed.cursor
        )
        events = found["events"]
        if found["next"]:
            more = urlencode({**raw, "view": view, "cursor": found["next"]})
    sites = await visible_sites(request)
    return await page(request, "logs.html", view=view, form=raw, groups=groups, events=events, more=more,
                      sites=sites, site_names={s.id: s.name for s in sites}, kinds=KINDS, levels=LEVELS,
                      all_sites=principal_of(request).site_id is None)  # fmt: skip


@get("/slow-queries", include_in_schema=False, guards=[require_admin_session])
async def slow_queries(request: Request[Any, Any, Any]) -> Template:
    svc = services(request)
    entries = list(reversed(svc.slow_queries.entries))
    return await page(request, "slow_queries.html", entries=entries, threshold_ms=svc.settings.slow_query_ms)

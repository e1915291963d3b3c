"""Log search: JS errors, synthetic console errors and failed requests, fieldlab's own
warnings. Read scope; a token limited to one site searches that site only."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.exceptions import HTTPException

from app.api.deps import principal_of, require_read, services
from app.db import now_ms
from app.search.params import SearchRequest, parse
from app.search.query import NotAllowed, QueryError, decode_cursor, search_events, search_groups

_PARAMS = (
    'q: words (all must match), "quoted phrases", prefix*; site: site id; kind: js-error, '
    "console-error, failed-request or fieldlab; level: error, warning or critical; group: page group "
    "(synthetic events: the check name); since/until: ISO 8601 (default: the last 7 days)"
)


def _parsed(request: Request[Any, Any, Any]) -> SearchRequest:
    svc = services(request)
    params = {k: v for k, v in request.query_params.items()}
    try:
        parsed = parse(params, principal=principal_of(request), settings=svc.settings, now_ms=now_ms())
        if parsed.cursor:
            decode_cursor(parsed.cursor)
    except QueryError as exc:
        status = 403 if isinstance(exc, NotAllowed) else 400
        raise HTTPException(status_code=status, detail=str(exc), extra={"field": exc.field}) from None
    return parsed


@get("/api/v1/logs", guards=[require_read], tags=["logs"], description=_PARAMS)
async def log_events(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Matching log events, newest first; `next` is the cursor of the following page."""
    parsed = _parsed(request)
    return await search_events(db=services(request).db, filters=parsed.filters, limit=parsed.limit,
                               cursor=parsed.cursor)  # fmt: skip


@get("/api/v1/logs/groups", guards=[require_read], tags=["logs"], description=_PARAMS)
async def log_groups(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Matching events grouped by fingerprint (normalised message + top frame): count, first and
    last seen, page groups and browsers affected, sample stacks."""
    parsed = _parsed(request)
    return await search_groups(db=services(request).db, filters=parsed.filters, limit=parsed.limit,
                               offset=parsed.offset, sort=parsed.sort)  # fmt: skip

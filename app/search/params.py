"""Search parameters from a query string, shared by the API and the dashboard page. Every
problem is a QueryError naming the parameter, which both answer with a 400."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from app.config import Settings
from app.search.events import KINDS, LEVELS
from app.search.query import Filters, NotAllowed, QueryError, parse_terms
from app.sites import Principal

DAY = 86_400_000
Q_MAX = 500
KNOWN = {"q", "site", "kind", "level", "group", "since", "until", "limit", "cursor", "offset", "sort"}


@dataclass(frozen=True, slots=True)
class SearchRequest:
    filters: Filters
    limit: int
    cursor: str | None
    offset: int
    sort: str


def _time(name: str, raw: str, default: int) -> int:
    if not raw:
        return default
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise QueryError(name, f"{raw!r} is not an ISO 8601 time like 2026-11-01T00:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _int(name: str, raw: str, *, default: int, low: int, high: int) -> int:
    if not raw:
        return default
    if not raw.isdigit():
        raise QueryError(name, f"{raw!r} is not a whole number")
    value = int(raw)
    if not low <= value <= high:
        raise QueryError(name, f"{value} is not between {low} and {high}")
    return value


def _choice(name: str, raw: str, options: tuple[str, ...]) -> str | None:
    if not raw:
        return None
    if raw not in options:
        raise QueryError(name, f"{raw!r} is not one of {', '.join(options)}")
    return raw


def parse(params: Mapping[str, str], *, principal: Principal, settings: Settings, now_ms: int,
          default_limit: int = 50) -> SearchRequest:  # fmt: skip
    unknown = sorted(set(params) - KNOWN)
    if unknown:
        raise QueryError(unknown[0], f"unknown parameter; known: {', '.join(sorted(KNOWN))}")
    q = params.get("q", "")
    if len(q) > Q_MAX:
        raise QueryError("q", f"longer than {Q_MAX} characters")
    site_raw = params.get("site", "")
    site_id = _int("site", site_raw, default=0, low=1, high=2**31 - 1) if site_raw else None
    if principal.site_id is not None:
        if site_id is not None and site_id != principal.site_id:
            raise NotAllowed("site", "this token is limited to another site")
        site_id = principal.site_id
    kind = _choice("kind", params.get("kind", ""), KINDS)
    if kind == "fieldlab" and principal.site_id is not None:
        raise NotAllowed("kind", "fieldlab's own logs need a token that is not limited to one site")
    until = _time("until", params.get("until", ""), now_ms + 60_000)
    since = _time("since", params.get("since", ""), until - 7 * DAY)
    if since >= until:
        raise QueryError("since", "must be before until")
    group = params.get("group", "")
    if len(group) > 256:
        raise QueryError("group", "longer than 256 characters")
    sort = params.get("sort", "") or "count"
    if sort not in ("count", "recent"):
        raise QueryError("sort", f"{sort!r} is not one of count, recent")
    cursor = params.get("cursor") or None
    if cursor is not None and len(cursor) > 64:
        raise QueryError("cursor", "not a cursor this API returned")
    return SearchRequest(
        filters=Filters(
            terms=parse_terms(q), site_id=site_id, only_sites=principal.site_id is not None, kind=kind,
            level=_choice("level", params.get("level", ""), LEVELS), page_group=group or None,
            since_ms=since, until_ms=until,
        ),
        limit=_int("limit", params.get("limit", ""), default=min(default_limit, settings.search_page_max), low=1,
                   high=settings.search_page_max),
        cursor=cursor,
        offset=_int("offset", params.get("offset", ""), default=0, low=0, high=settings.search_max_offset),
        sort=sort,
    )  # fmt: skip

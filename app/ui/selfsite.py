"""The built-in "fieldlab" site: the dashboard carries fieldlab.js reporting to it, so fieldlab
measures its own users. Created on the first signed-in page view, with that request's origin;
an origin the dashboard is later reached on is added the same way (signed-in views only, so an
anonymous Host header cannot widen what the site accepts)."""

from __future__ import annotations

from typing import Any

from litestar import Request

from app.api.deps import services
from app.sites import Conflict, create_site, get_site_by_name, normalise_origin

SELF_SITE = "fieldlab"
MAX_ORIGINS = 20


def _origin(request: Request[Any, Any, Any]) -> str | None:
    try:
        return normalise_origin(str(request.base_url).rstrip("/"))
    except ValueError:
        return None


async def self_site_key(request: Request[Any, Any, Any], *, register: bool) -> str | None:
    """The site key for the dashboard's own snippet tag, or None when there is none yet."""
    state = request.app.state
    origin = _origin(request)
    known: tuple[str, frozenset[str]] | None = state.get("ui_self_site")
    if known and (origin in known[1] or not register):
        return known[0]
    svc = services(request)
    site = await get_site_by_name(db=svc.db, name=SELF_SITE)
    if site is None and register and origin:
        try:
            site = await create_site(db=svc.db, name=SELF_SITE, origins=[origin])
        except Conflict:  # another request created it first
            site = await get_site_by_name(db=svc.db, name=SELF_SITE)
    if site is None:
        return None
    if register and origin and origin not in site.origins and len(site.origins) < MAX_ORIGINS:
        async with svc.db.write() as session:
            row = await session.merge(site)
            row.origins = sorted({*site.origins, origin})
            site = row
        svc.sites.forget(site.key)
    state["ui_self_site"] = (site.key, frozenset(site.origins))
    return site.key

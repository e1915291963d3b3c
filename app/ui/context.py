"""What every dashboard page's template gets: assets, the signed-in principal, the sites it
may see, the self-monitoring snippet's key."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.response import Template

from app.api.deps import services
from app.models import Site
from app.sites import Principal, get_site, list_sites
from app.ui.auth import principal_of
from app.ui.selfsite import self_site_key
from app.ui.static import ui_assets


async def visible_sites(request: Request[Any, Any, Any]) -> list[Site]:
    principal = principal_of(request)
    return [
        s for s in await list_sites(db=services(request).db) if s.id is not None and principal.can_read(s.id)
    ]


async def unconfirmed(request: Request[Any, Any, Any], kind: str, name: str) -> str | None:
    """Why a delete form's typed confirmation does not match ``name`` (None when it does): a
    deletion with no undo asks for the thing's name, typed."""
    typed = str((await request.form()).get("confirm") or "").strip()
    if typed == name:
        return None
    return (
        f"type the {kind}'s name, {name}, to delete it"
        if not typed
        else f"{typed!r} is not this {kind}'s name"
    )


async def readable_site(request: Request[Any, Any, Any], site_id: int) -> Site:
    if not principal_of(request).can_read(site_id):
        raise PermissionDeniedException("this sign-in is limited to another site")
    site = await get_site(db=services(request).db, site_id=site_id)
    if site is None:
        raise NotFoundException(f"no site with id {site_id}")
    return site


def error_template(request: Request[Any, Any, Any], status: int, detail: str) -> Template:
    """Error pages are rendered by (synchronous) exception handlers: no lookups here."""
    known = request.app.state.get("ui_self_site")
    return Template(
        template_name="error.html",
        status_code=status,
        context={
            "css": ui_assets(request).url("ui.css"),
            "chart_css": "",
            "chart_js": "",
            "principal": request.scope["state"].get("principal"),
            "self_key": known[0] if known else None,
            "path": request.url.path,
            "status": status,
            "detail": detail,
        },
        headers={"Cache-Control": "private, no-store"},
    )


async def page(
    request: Request[Any, Any, Any], template: str, *, charts: bool = False, status_code: int = 200,
    principal: Principal | None = None, **context: Any,
) -> Template:  # fmt: skip
    """Render a page. ``charts`` adds the chart CSS and script; other pages carry no chart code."""
    assets = ui_assets(request)
    signed_in = principal or request.scope["state"].get("principal")
    return Template(
        template_name=template,
        status_code=status_code,
        context={
            "css": assets.url("ui.css"),
            "chart_css": assets.url("charts.css") if charts else "",
            "chart_js": assets.url("charts.js") if charts else "",
            "principal": signed_in,
            "self_key": await self_site_key(request, register=signed_in is not None),
            "path": request.url.path,
            **context,
        },
        headers={"Cache-Control": "private, no-store"},
    )

"""The dashboard's deploy-marker forms, on a site's compare page: record a deploy by hand (one
that CI did not mark) and delete one recorded by mistake. The same rule as the marker API: an
admin sign-in, or a deploy token's of this site; the same store functions and validation."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.response import Redirect, Template

from app.api.deps import services
from app.budgets import store
from app.sites import InvalidInput
from app.ui.auth import principal_of
from app.ui.context import readable_site
from app.ui.pages import compare_page

FORM = ("commit", "branch", "message")


async def _markable(request: Request[Any, Any, Any], site_id: int) -> None:
    await readable_site(request, site_id)
    if not principal_of(request).can_mark_deploys(site_id):
        raise PermissionDeniedException("deploy markers need a sign-in with an admin or deploy token")


@post("/sites/{site_id:int}/markers", include_in_schema=False, status_code=303)
async def add_marker(request: Request[Any, Any, Any], site_id: int) -> Template | Redirect:
    await _markable(request, site_id)
    raw = await request.form()
    form = {k: str(raw.get(k) or "") for k in FORM}
    try:
        await store.add_marker(db=services(request).db, site_id=site_id, commit=form["commit"],
                               branch=form["branch"], message=form["message"].strip())  # fmt: skip
    except InvalidInput as exc:
        return await compare_page(
            request, site_id, None, status_code=400, marker_form=form, marker_error=str(exc)
        )
    return Redirect(f"/ui/sites/{site_id}/compare#markers", status_code=303)


@post("/sites/{site_id:int}/markers/{marker_id:int}/delete", include_in_schema=False, status_code=303)
async def delete_marker(request: Request[Any, Any, Any], site_id: int, marker_id: int) -> Redirect:
    await _markable(request, site_id)
    if not await store.delete_marker(db=services(request).db, site_id=site_id, marker_id=marker_id):
        raise NotFoundException(f"site {site_id} has no marker with id {marker_id}")
    return Redirect(f"/ui/sites/{site_id}/compare#markers", status_code=303)

"""A site's settings page: its snippet tag (the key, ready to paste), origins, page-group rules
and query allowlist; admins change them here or delete the site. The same data functions as
``PATCH``/``DELETE /api/v1/sites/{id}`` (app/sites.py, app/site_delete.py)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.response import Redirect, Template

from app import site_delete
from app.api.deps import services
from app.api.sites import after_site_deleted
from app.models import Site
from app.sites import Conflict, InvalidInput, parse_rule, update_site
from app.ui.auth import require_admin_session
from app.ui.context import readable_site, unconfirmed
from app.ui.pages import site_page


def _words(text: str) -> list[str]:
    return [w for w in text.replace(",", " ").split() if w]


def parse_rules(text: str) -> list[dict[str, str]]:
    """One rule a line: ``PATTERN`` or ``PATTERN = GROUP`` (blank lines skipped)."""
    return [parse_rule(line) for line in text.splitlines() if line.partition("=")[0].strip()]


def _form_of(site: Site) -> dict[str, str]:
    rules = "\n".join(r["pattern"] if r["group"] == r["pattern"] else f"{r['pattern']} = {r['group']}"
                      for r in site.page_groups)  # fmt: skip
    return {"name": site.name, "origins": " ".join(site.origins), "page_groups": rules,
            "query_allowlist": " ".join(site.query_allowlist)}  # fmt: skip


async def _render(request: Request[Any, Any, Any], site: Site, **context: Any) -> Template:
    assert site.id is not None
    snippet = f'<script async src="{str(request.base_url).rstrip("/")}/fieldlab.js" data-site="{site.key}"></script>'
    context.setdefault("form", _form_of(site))
    return await site_page(request, site.id, "site_settings.html", snippet=snippet, **context)


@get("/sites/{site_id:int}/settings", include_in_schema=False)
async def settings_page(request: Request[Any, Any, Any], site_id: int, saved: int = 0) -> Template:
    return await _render(request, await readable_site(request, site_id), saved=bool(saved))


@post(
    "/sites/{site_id:int}/settings", include_in_schema=False, guards=[require_admin_session], status_code=303
)
async def save_settings(request: Request[Any, Any, Any], site_id: int) -> Template | Redirect:
    site = await readable_site(request, site_id)
    raw = await request.form()
    form = {k: str(raw.get(k) or "") for k in ("name", "origins", "page_groups", "query_allowlist")}
    svc = services(request)
    try:
        changed = await update_site(db=svc.db, site_id=site_id, name=form["name"], origins=_words(form["origins"]),
                                    page_groups=parse_rules(form["page_groups"]),
                                    query_allowlist=_words(form["query_allowlist"]))  # fmt: skip
    except (InvalidInput, Conflict) as exc:
        return await _render(request, site, form=form, error=str(exc), status_code=400)
    svc.sites.forget(site.key)
    assert changed is not None
    return Redirect(f"/ui/sites/{site_id}/settings?saved=1", status_code=303)


@post("/sites/{site_id:int}/delete", include_in_schema=False, guards=[require_admin_session], status_code=303)
async def delete_site(request: Request[Any, Any, Any], site_id: int) -> Template | Redirect:
    """Deleting asks for the site's name, typed, as the confirmation: there is no undo."""
    site = await readable_site(request, site_id)
    if why := await unconfirmed(request, "site", site.name):
        return await _render(request, site, delete_error=why, status_code=400)
    svc = services(request)
    await site_delete.delete_site(db=svc.db, site_id=site_id)
    await after_site_deleted(svc, site_id, site.key)
    return Redirect("/ui/", status_code=303)

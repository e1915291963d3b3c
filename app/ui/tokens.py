"""The dashboard's Tokens page (admins): the stored tokens, creating one (shown once, on the
page that answers the form, never again) and revoking one. The same data functions as
``POST``/``GET``/``DELETE /api/v1/tokens`` (app/sites.py).

The answer to the form is the page with the new token, not a redirect (there is nowhere to keep
a plaintext token for a later GET). So that reloading that answer does not make a second token,
each rendering of the form carries a one-time ``form_id``, remembered for a day in the UI
session store (shared by every worker) once a token was made with it."""

from __future__ import annotations

import secrets
from typing import Any

from litestar import Request, get, post
from litestar.response import Redirect, Template

from app.api.deps import services
from app.sites import SCOPES, InvalidInput, create_token, list_tokens, revoke_token
from app.ui.auth import require_admin_session
from app.ui.context import page, visible_sites

FORM_ID_TTL_S = 86_400


async def _page(request: Request[Any, Any, Any], *, status_code: int = 200, **context: Any) -> Template:
    db = services(request).db
    sites = {s.id: s.name for s in await visible_sites(request)}
    return await page(request, "tokens.html", status_code=status_code, tokens=await list_tokens(db=db),
                      sites=sites, scopes=SCOPES, form_id=secrets.token_urlsafe(16), **context)  # fmt: skip


def _form_key(form_id: str) -> str:
    return f"token-form:{form_id[:64]}"


@get("/tokens", include_in_schema=False, guards=[require_admin_session])
async def tokens(request: Request[Any, Any, Any]) -> Template:
    return await _page(request)


@post("/tokens", include_in_schema=False, guards=[require_admin_session], status_code=200)
async def add_token(request: Request[Any, Any, Any]) -> Template:
    """Answered with the page itself, not a redirect: the new token is shown this once."""
    form = await request.form()
    name, scope, site, form_id = (
        str(form.get(k) or "").strip() for k in ("name", "scope", "site_id", "form_id")
    )
    used = request.app.stores.get("ui_sessions")
    if form_id and (made := await used.get(_form_key(form_id))) is not None:
        return await _page(request, status_code=409, resent=made.decode())
    try:
        row, token = await create_token(db=services(request).db, scope=scope, name=name,
                                        site_id=int(site) if site.isdigit() else None)  # fmt: skip
    except InvalidInput as exc:
        return await _page(
            request, status_code=400, error=str(exc), form={"name": name, "scope": scope, "site_id": site}
        )
    if form_id:
        await used.set(_form_key(form_id), str(row.id), expires_in=FORM_ID_TTL_S)
    return await _page(request, created={"row": row, "token": token})


@post(
    "/tokens/{token_id:int}/revoke", include_in_schema=False, guards=[require_admin_session], status_code=303
)
async def revoke(request: Request[Any, Any, Any], token_id: int) -> Redirect:
    await revoke_token(db=services(request).db, token_id=token_id)
    return Redirect("/ui/tokens", status_code=303)

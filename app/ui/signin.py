"""Sign-in and sign-out pages, and the dashboard's error pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.response import Redirect, Template

from app.ui import auth
from app.ui.context import error_template, page


def _safe_next(raw: object) -> str:
    """Only a dashboard path: never another host (no open redirect)."""
    target = raw if isinstance(raw, str) else ""
    if not target.startswith("/ui") or target.startswith("//") or "\\" in target:
        return "/ui/"
    return target


@get("/login", include_in_schema=False)
async def login_form(request: Request[Any, Any, Any], next: str = "/ui/") -> Template:
    return await page(request, "login.html", next=_safe_next(next), error="")


@post("/login", include_in_schema=False, status_code=303)
async def login(request: Request[Any, Any, Any]) -> Response[Any]:
    form = await request.form()
    token = form.get("token")
    target = _safe_next(form.get("next"))
    if not isinstance(token, str) or not token.strip():
        return await page(request, "login.html", status_code=400, next=target,
                          error="token: paste an admin or read token")  # fmt: skip
    principal = await auth.sign_in(request, token.strip())
    if principal is None:
        return await page(request, "login.html", status_code=401, next=target,
                          error="token: not a valid token (revoked, mistyped, or from another server)")  # fmt: skip
    return Redirect(target, status_code=303)


@post("/logout", include_in_schema=False, status_code=303)
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    auth.sign_out(request)
    return Redirect("/ui/login", status_code=303)


def not_signed_in(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if request.method in ("GET", "HEAD"):
        where = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(f"/ui/login?{urlencode({'next': where})}", status_code=303)
    return error_page(request, exc)


def error_page(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return error_template(request, exc.status_code, exc.detail)

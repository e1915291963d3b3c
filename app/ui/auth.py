"""Dashboard sign-in: a token (FIELDLAB_ADMIN_TOKEN or a stored API token) is exchanged for a
server-side session. The session holds only the token's hash and is checked against the token
table on every request, so revoking a token also ends its dashboard sessions.

Cookies: HttpOnly, SameSite=Strict, path /ui, Secure when the request came over https. The
session and CSRF middleware sit on the dashboard router only, so the beacon endpoint and the
bearer-token API never set or read a cookie."""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from litestar.types.empty import Empty
from sqlmodel import select

from app.api.deps import services
from app.config import Settings
from app.models import ApiToken
from app.sites import Principal, authenticate, hash_token

SESSION_COOKIE = "fieldlab_session"
CSRF_COOKIE = "fieldlab_csrf"
SESSION_STORE = "ui_sessions"
COOKIE_PATH = "/ui"
_ROTATE = "fieldlab_new_session_id"


class _Sessions(ServerSideSessionBackend):
    """Litestar's server-side sessions, minus a stored session for every anonymous visitor,
    plus a fresh session id at sign-in (against session fixation)."""

    def get_session_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        state = connection.scope["state"]
        if state.get(_ROTATE) is True:
            state[_ROTATE] = self.generate_session_id()
        fresh = state.get(_ROTATE)
        if isinstance(fresh, str):
            return fresh
        return super().get_session_id(connection)

    async def store_in_message(
        self, scope_session: Any, message: Message, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> None:
        empty = scope_session is Empty or not scope_session
        if empty and not connection.cookies.get(self.config.key):
            return
        await super().store_in_message(Empty if empty else scope_session, message, connection)


@dataclass
class _SessionConfig(ServerSideSessionConfig):
    _backend_class = _Sessions


class SecureCookiesOverHttps:
    """Adds ``Secure`` to every cookie the dashboard sets when the request came over https
    (directly, or through a proxy uvicorn trusts for X-Forwarded-Proto)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def secure_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = []
                for name, value in message.get("headers", []):
                    if name.lower() == b"set-cookie" and b"; secure" not in value.lower():
                        value = value + b"; Secure"
                    headers.append((name, value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, secure_send)


def stored_secret(data_dir: Path) -> str:
    """The CSRF secret kept in ``data_dir/ui-secret`` (created, mode 0600, on first use), for
    when FIELDLAB_UI_SECRET is not set: every worker of a host and every restart sign with the
    same one. Written whole and then linked into place, so processes starting together agree."""
    path = data_dir / "ui-secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".ui-secret.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process was first: use its secret
        finally:
            tmp.unlink()
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise ValueError(f"{path}: holds no usable secret; delete it to make a new one")
    return secret


def middleware(settings: Settings) -> list[Any]:
    sessions = _SessionConfig(
        key=SESSION_COOKIE,
        max_age=settings.ui_session_max_age_s,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        store=SESSION_STORE,
    )
    csrf = CSRFConfig(
        secret=settings.ui_secret or secrets.token_hex(32),
        cookie_name=CSRF_COOKIE,
        cookie_path=COOKIE_PATH,
        cookie_httponly=True,  # the token travels in a hidden form field, never read by script
        cookie_samesite="strict",
    )
    # Outermost first: Secure is added to the cookies both inner layers set.
    return [SecureCookiesOverHttps, sessions.middleware, DefineMiddleware(CSRFMiddleware, config=csrf)]


async def sign_in(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> Principal | None:
    svc = services(connection)
    principal = await authenticate(db=svc.db, token=token, admin_token=svc.settings.admin_token)
    if principal is None:
        return None
    old = connection.cookies.get(SESSION_COOKIE)
    if old:
        await connection.app.stores.get(SESSION_STORE).delete(old)
    connection.scope["state"][_ROTATE] = True
    is_env = bool(svc.settings.admin_token) and hmac.compare_digest(
        token.encode(), svc.settings.admin_token.encode()
    )
    connection.set_session({"kind": "env" if is_env else "token", "hash": hash_token(token)})
    return principal


def sign_out(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    connection.clear_session()


async def current_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    data = connection.scope.get("session")
    if not isinstance(data, dict) or not isinstance(data.get("hash"), str):
        return None
    svc = services(connection)
    if data.get("kind") == "env":
        admin = svc.settings.admin_token
        ok = bool(admin) and hmac.compare_digest(data["hash"], hash_token(admin))
        return Principal(scope="admin") if ok else None
    async with svc.db.read() as session:
        row = (await session.exec(select(ApiToken).where(ApiToken.token_hash == data["hash"]))).first()
    return Principal(scope=row.scope, site_id=row.site_id) if row else None


async def require_session(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    principal = await current_principal(connection)
    if principal is None:
        raise NotAuthorizedException("sign in to see the dashboard")
    connection.scope["state"]["principal"] = principal


async def require_admin_session(connection: ASGIConnection[Any, Any, Any, Any], h: BaseRouteHandler) -> None:
    await require_session(connection, h)
    if connection.scope["state"]["principal"].scope != "admin":
        raise PermissionDeniedException(
            "this needs a sign-in with an admin token; a read token can only look"
        )


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    p: Principal = connection.scope["state"]["principal"]
    return p

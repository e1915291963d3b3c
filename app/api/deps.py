"""What routes share: the per-app Services object, auth guards, errors, client IP."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from app.config import Settings
from app.db import Database
from app.field.cache import QueryCache
from app.ingest.decode import Limits
from app.ingest.writer import GroupCommitWriter
from app.jobs import Periodic
from app.observability import Metrics
from app.scheduler import CheckScheduler
from app.sites import Principal, SiteCache, authenticate
from app.slowlog import SlowQueryLog


@dataclass
class Services:
    """Everything a request may need, built once by ``create_app`` (no module-level state)."""

    settings: Settings
    db: Database
    metrics: Metrics
    writer: GroupCommitWriter
    sites: SiteCache
    limits: Limits
    cache: QueryCache
    slow_queries: SlowQueryLog
    jobs: dict[str, Periodic]
    scheduler: CheckScheduler
    snippet: Any = None  # app.api.snippet.StaticAsset, loaded at startup


def services(connection: ASGIConnection[Any, Any, Any, Any]) -> Services:
    svc: Services = connection.app.state.services
    return svc


def client_ip(request: Request[Any, Any, Any]) -> str:
    """The peer address, or the last untrusted hop of X-Forwarded-For when the peer is a
    configured proxy. Used for rate limiting only; never stored."""
    peer = request.client.host if request.client else "unknown"
    trusted = services(request).settings.trusted_proxies
    if not trusted or peer not in {p.strip() for p in trusted.split(",")}:
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            continue
        return hop
    return peer


async def _principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthorizedException(
            "missing bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": 'Bearer realm="fieldlab"'},
        )
    svc = services(connection)
    principal = await authenticate(db=svc.db, token=token.strip(), admin_token=svc.settings.admin_token)
    if principal is None:
        raise NotAuthorizedException(
            "invalid or revoked token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )
    connection.scope["state"]["principal"] = principal
    return principal


async def require_read(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    await _principal(connection)


async def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    principal = await _principal(connection)
    if principal.scope != "admin":
        raise PermissionDeniedException("this needs a token with admin scope")


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    p: Principal = request.scope["state"]["principal"]
    return p

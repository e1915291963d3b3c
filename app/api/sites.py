"""Sites and tokens. Routes stay thin: parse, call a data function, shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, delete, get, patch, post
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from app import site_delete, sites
from app.api.deps import Services, principal_of, require_admin, require_read, services
from app.models import Site


class PageGroupRule(msgspec.Struct):
    pattern: str
    group: str | None = None


class SiteCreate(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    origins: Annotated[list[str], msgspec.Meta(min_length=1, max_length=50)]
    page_groups: list[PageGroupRule] = []
    query_allowlist: list[str] = []


class SitePatch(msgspec.Struct, forbid_unknown_fields=True):
    """The fields to change; those left out stay as they are. Lists replace the stored ones."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | msgspec.UnsetType = msgspec.UNSET
    origins: Annotated[list[str], msgspec.Meta(min_length=1, max_length=50)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    page_groups: list[PageGroupRule] | msgspec.UnsetType = msgspec.UNSET
    query_allowlist: list[str] | msgspec.UnsetType = msgspec.UNSET


class SiteOut(msgspec.Struct):
    id: int
    name: str
    key: str
    origins: list[str]
    page_groups: list[dict[str, str]]
    query_allowlist: list[str]
    created: str


class TokenCreate(msgspec.Struct):
    scope: Literal["read", "deploy", "admin"]
    name: str = ""
    site_id: int | None = None


class TokenInfo(msgspec.Struct):
    """A stored token as listed: never the token or its hash, only the first characters."""

    id: int
    name: str
    scope: str
    prefix: str
    site_id: int | None
    created: str


class TokenOut(msgspec.Struct):
    id: int
    name: str
    scope: str
    token: str
    site_id: int | None = None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def site_out(site: Site) -> SiteOut:
    assert site.id is not None
    return SiteOut(
        id=site.id,
        name=site.name,
        key=site.key,
        origins=site.origins,
        page_groups=site.page_groups,
        query_allowlist=site.query_allowlist,
        created=_iso(site.created_ms),
    )


def _bad(exc: Exception) -> HTTPException:
    return HTTPException(status_code=409 if isinstance(exc, sites.Conflict) else 400, detail=str(exc))


@post("/api/v1/sites", guards=[require_admin], status_code=HTTP_201_CREATED, tags=["sites"])
async def create_site(request: Request[Any, Any, Any], data: SiteCreate) -> SiteOut:
    """Create a site. The answer's `key` goes into the snippet tag (`data-site`)."""
    try:
        site = await sites.create_site(
            db=services(request).db,
            name=data.name,
            origins=data.origins,
            page_groups=[msgspec.structs.asdict(r) for r in data.page_groups],
            query_allowlist=data.query_allowlist,
        )
    except (sites.InvalidInput, sites.Conflict) as exc:
        raise _bad(exc) from None
    return site_out(site)


@get("/api/v1/sites", guards=[require_read], tags=["sites"])
async def list_sites(request: Request[Any, Any, Any]) -> list[SiteOut]:
    principal = principal_of(request)
    return [
        site_out(s)
        for s in await sites.list_sites(db=services(request).db)
        if s.id is not None and principal.can_read(s.id)
    ]


async def _readable_site(request: Request[Any, Any, Any], site_id: int) -> Site:
    if not principal_of(request).can_read(site_id):
        raise PermissionDeniedException("this token is limited to another site")
    site = await sites.get_site(db=services(request).db, site_id=site_id)
    if site is None:
        raise NotFoundException(f"no site with id {site_id}")
    return site


@get("/api/v1/sites/{site_id:int}", guards=[require_read], tags=["sites"])
async def get_site(request: Request[Any, Any, Any], site_id: int) -> SiteOut:
    return site_out(await _readable_site(request, site_id))


@patch("/api/v1/sites/{site_id:int}", guards=[require_admin], tags=["sites"])
async def update_site(request: Request[Any, Any, Any], site_id: int, data: SitePatch) -> SiteOut:
    """Change a site's name, origins, page-group rules or query allowlist (the fields given).
    The key stays. This process uses the change at once; other workers within
    `FIELDLAB_SITE_CACHE_TTL_S`. Rules apply to beacons from then on."""
    svc = services(request)
    unset = msgspec.UNSET
    try:
        site = await sites.update_site(
            db=svc.db,
            site_id=site_id,
            name=None if data.name is unset else data.name,
            origins=None if data.origins is unset else data.origins,
            page_groups=None
            if data.page_groups is unset
            else [msgspec.structs.asdict(r) for r in data.page_groups],
            query_allowlist=None if data.query_allowlist is unset else data.query_allowlist,
        )
    except (sites.InvalidInput, sites.Conflict) as exc:
        raise _bad(exc) from None
    if site is None:
        raise NotFoundException(f"no site with id {site_id}")
    svc.sites.forget(site.key)
    return site_out(site)


@delete("/api/v1/sites/{site_id:int}", guards=[require_admin], tags=["sites"], status_code=200)
async def delete_site(request: Request[Any, Any, Any], site_id: int) -> dict[str, Any]:
    """Delete a site and everything that is its: field data, errors and log events, rollups,
    deploy markers, its checks and their runs, its budget history, alert states and scoped
    webhooks, and tokens limited to it. The answer counts what went. There is no undo."""
    svc = services(request)
    gone = await site_delete.delete_site(db=svc.db, site_id=site_id)
    if gone is None:
        raise NotFoundException(f"no site with id {site_id}")
    await after_site_deleted(svc, site_id, gone["key"])
    return gone


async def after_site_deleted(svc: Services, site_id: int, key: str) -> None:
    """What this process holds of a deleted site: its cached key and query answers, its checks'
    schedules (other workers drop the key within the site cache's TTL)."""
    svc.sites.forget(key)
    await svc.cache.bump([site_id])
    await svc.scheduler.sync()


@post("/api/v1/tokens", guards=[require_admin], status_code=HTTP_201_CREATED, tags=["tokens"])
async def create_token(request: Request[Any, Any, Any], data: TokenCreate) -> TokenOut:
    """Create an API token. The token is in this answer only; fieldlab stores its hash."""
    try:
        row, token = await sites.create_token(
            db=services(request).db, scope=data.scope, name=data.name, site_id=data.site_id
        )
    except sites.InvalidInput as exc:
        raise _bad(exc) from None
    assert row.id is not None
    return TokenOut(id=row.id, name=row.name, scope=row.scope, token=token, site_id=row.site_id)


@get("/api/v1/tokens", guards=[require_admin], tags=["tokens"])
async def list_tokens(request: Request[Any, Any, Any]) -> list[TokenInfo]:
    """Stored tokens (``FIELDLAB_ADMIN_TOKEN`` is not one): id, name, scope, site, the first
    characters of the token (to recognise it), creation time."""
    return [
        TokenInfo(
            id=t.id,
            name=t.name,
            scope=t.scope,
            prefix=t.prefix,
            site_id=t.site_id,
            created=_iso(t.created_ms),
        )
        for t in await sites.list_tokens(db=services(request).db)
        if t.id is not None
    ]


@delete(
    "/api/v1/tokens/{token_id:int}", guards=[require_admin], tags=["tokens"], status_code=HTTP_204_NO_CONTENT
)
async def revoke_token(request: Request[Any, Any, Any], token_id: int) -> None:
    """Revoke a token: requests using it are refused (401) from the next one on."""
    if not await sites.revoke_token(db=services(request).db, token_id=token_id):
        raise NotFoundException(f"no token with id {token_id}")

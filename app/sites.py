"""Sites and API tokens: keyword-only data functions the routes and the CLI share."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from app.db import Database, now_ms
from app.ingest.decode import SiteRules
from app.ingest.normalise import validate_rule_pattern
from app.models import ApiToken, Site

# read: queries and the dashboard. deploy: the same, and adding deploy markers (what a CI job
# needs, without the power of an admin). admin: everything. read and deploy may be limited to a site.
SCOPES = ("read", "deploy", "admin")


class InvalidInput(ValueError):
    """Bad input to a data function; ``str()`` names the field."""


class Conflict(ValueError):
    """The input clashes with what is stored (a duplicate name)."""


# --- sites --------------------------------------------------------------------------------


def normalise_origin(origin: str) -> str:
    """'https://Shop.example:443/' -> 'https://shop.example'. '*' allows any origin."""
    if origin == "*":
        return origin
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"origins: {origin!r} is not an http(s) origin like https://shop.example")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidInput(f"origins: {origin!r} must be scheme://host[:port] with no path")
    default_port = {"http": 80, "https": 443}[parts.scheme]
    port = "" if parts.port in (None, default_port) else f":{parts.port}"
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"


def parse_rule(text: str) -> dict[str, str]:
    """A page-group rule as people type it: ``PATTERN`` or ``PATTERN=GROUP`` (the CLI's
    ``--page-group``, a line of the dashboard's rules box); the group defaults to the pattern."""
    pattern, _, group = text.partition("=")
    pattern = pattern.strip()
    return {"pattern": pattern, "group": group.strip() or pattern}


def _check_page_groups(rules: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    checked = []
    for i, rule in enumerate(rules):
        pattern = rule.get("pattern", "")
        reason = validate_rule_pattern(pattern)
        if reason:
            raise InvalidInput(f"page_groups[{i}].pattern: {pattern!r} {reason}")
        checked.append({"pattern": pattern, "group": rule.get("group") or pattern})
    return checked


def _checked_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidInput("name: must not be empty")
    return name


def _checked_origins(origins: Sequence[str]) -> list[str]:
    if not origins:
        raise InvalidInput("origins: give at least one origin, e.g. https://shop.example")
    return sorted({normalise_origin(o) for o in origins})


def checked_fields(
    name: str, origins: Sequence[str], page_groups: Sequence[dict[str, str]], query_allowlist: Sequence[str]
) -> dict[str, Any]:
    """A new site's fields, checked and normalised (no database): ``InvalidInput`` names the field."""
    if not isinstance(origins, list | tuple) or not all(isinstance(o, str) for o in origins):
        raise InvalidInput("origins: must be a list of URLs")
    if not isinstance(page_groups, list | tuple) or not all(isinstance(r, dict) for r in page_groups):
        raise InvalidInput("page_groups: must be a list of {pattern, group} mappings")
    if not isinstance(query_allowlist, list | tuple) or not all(isinstance(q, str) for q in query_allowlist):
        raise InvalidInput("query_allowlist: must be a list of parameter names")
    return {"name": _checked_name(name), "origins": _checked_origins(origins),
            "page_groups": _check_page_groups(page_groups), "query_allowlist": sorted(set(query_allowlist))}  # fmt: skip


async def create_site(
    *,
    db: Database,
    name: str,
    origins: Sequence[str],
    page_groups: Sequence[dict[str, str]] = (),
    query_allowlist: Sequence[str] = (),
) -> Site:
    fields = checked_fields(name, origins, page_groups, query_allowlist)
    name = fields["name"]
    site = Site(key=secrets.token_urlsafe(12), created_ms=now_ms(), **fields)
    try:
        async with db.write() as session:
            session.add(site)
    except IntegrityError:
        raise Conflict(f"name: a site called {name!r} already exists") from None
    return site


async def update_site(
    *,
    db: Database,
    site_id: int,
    name: str | None = None,
    origins: Sequence[str] | None = None,
    page_groups: Sequence[dict[str, str]] | None = None,
    query_allowlist: Sequence[str] | None = None,
) -> Site | None:
    """Change the fields given (``None``: leave as is); None if there is no such site. The key
    stays: it is in every page's snippet tag. Page-group rules and the query allowlist apply to
    beacons from then on; stored page views keep the groups and URLs they were stored with."""
    changes: dict[str, object] = {}
    if name is not None:
        changes["name"] = _checked_name(name)
    if origins is not None:
        changes["origins"] = _checked_origins(origins)
    if page_groups is not None:
        changes["page_groups"] = _check_page_groups(page_groups)
    if query_allowlist is not None:
        changes["query_allowlist"] = sorted(set(query_allowlist))
    try:
        async with db.write() as session:
            site = await session.get(Site, site_id)
            if site is None:
                return None
            for field, value in changes.items():
                setattr(site, field, value)
            session.add(site)
    except IntegrityError:
        raise Conflict(f"name: a site called {changes['name']!r} already exists") from None
    return site


async def list_sites(*, db: Database) -> list[Site]:
    async with db.read() as session:
        return list((await session.exec(select(Site).order_by(Site.id))).all())  # type: ignore[arg-type]


async def get_site(*, db: Database, site_id: int) -> Site | None:
    async with db.read() as session:
        return await session.get(Site, site_id)


async def get_site_by_name(*, db: Database, name: str) -> Site | None:
    async with db.read() as session:
        return (await session.exec(select(Site).where(Site.name == name))).first()


@dataclass(frozen=True, slots=True)
class SiteEntry:
    rules: SiteRules
    origins: frozenset[str]

    def allows(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins


class SiteCache:
    """Site key -> what the beacon path needs, cached per process for ``ttl`` seconds so a
    beacon costs no site lookup. Unknown keys are cached too, against floods of bad keys.

    When an entry expires, one task reloads it while every other request keeps using the stale
    entry: otherwise each beacon in flight at that moment would run its own SELECT (a latency
    spike every ``ttl``). Only a key never seen before waits, and then on the one shared load."""

    def __init__(self, db: Database, ttl: float) -> None:
        self._db = db
        self._ttl = ttl
        self._entries: dict[str, tuple[float, SiteEntry | None]] = {}
        self._loading: dict[str, asyncio.Future[SiteEntry | None]] = {}

    async def get(self, key: str) -> SiteEntry | None:
        hit = self._entries.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        pending = self._loading.get(key)
        if pending is None:
            pending = self._loading[key] = asyncio.ensure_future(self._load(key))
            pending.add_done_callback(lambda done: self._loaded(key, done))
        if hit is not None:
            return hit[1]
        return await asyncio.shield(pending)

    def _loaded(self, key: str, done: asyncio.Future[SiteEntry | None]) -> None:
        self._loading.pop(key, None)
        if not done.cancelled():
            # A failed refresh behind a stale entry is retried by the next request; a request
            # that waited on the load gets the error itself.
            done.exception()

    async def _load(self, key: str) -> SiteEntry | None:
        async with self._db.read() as session:
            site = (await session.exec(select(Site).where(Site.key == key))).first()
        entry = None
        if site is not None and site.id is not None:
            entry = SiteEntry(
                rules=SiteRules(
                    id=site.id,
                    page_groups=tuple(site.page_groups),
                    query_allowlist=tuple(site.query_allowlist),
                ),
                origins=frozenset(site.origins),
            )
        if len(self._entries) > 10_000:  # bound memory against random keys
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self._ttl, entry)
        return entry

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)


# --- tokens -------------------------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    *, db: Database, scope: str, name: str = "", site_id: int | None = None
) -> tuple[ApiToken, str]:
    """Store a new token's hash; return the row and the token itself, which is shown once."""
    if scope not in SCOPES:
        raise InvalidInput(f"scope: must be one of {', '.join(SCOPES)}, not {scope!r}")
    if site_id is not None and scope == "admin":
        raise InvalidInput("site: admin tokens cannot be limited to one site")
    if site_id is not None and await get_site(db=db, site_id=site_id) is None:
        raise InvalidInput(f"site: no site with id {site_id}")
    token = f"flt_{secrets.token_urlsafe(32)}"
    row = ApiToken(
        name=name or f"{scope} token",
        scope=scope,
        token_hash=hash_token(token),
        prefix=token[:10],
        site_id=site_id,
        created_ms=now_ms(),
    )
    async with db.write() as session:
        session.add(row)
    return row, token


async def list_tokens(*, db: Database) -> list[ApiToken]:
    async with db.read() as session:
        return list((await session.exec(select(ApiToken).order_by(ApiToken.id))).all())  # type: ignore[arg-type]


async def revoke_token(*, db: Database, token_id: int) -> bool:
    async with db.write() as session:
        result = await session.exec(sa.delete(ApiToken).where(ApiToken.id == token_id))  # type: ignore[arg-type]
        return bool(result.rowcount)


@dataclass(frozen=True, slots=True)
class Principal:
    scope: str
    site_id: int | None = None  # None: every site

    def can_read(self, site_id: int) -> bool:
        return self.site_id is None or self.site_id == site_id

    def can_mark_deploys(self, site_id: int) -> bool:
        return self.scope == "admin" or (self.scope == "deploy" and self.can_read(site_id))

    def can_see_scope(self, site_id: int | None) -> bool:
        """A budget scope's status history and alerts. ``site_id`` is the site the scope belongs
        to; None for a scope of no site (``gate:BRANCH``, a caller's label), which only tokens
        of every site reach: a token limited to one site must not read another team's builds."""
        return self.site_id is None or self.site_id == site_id


async def authenticate(*, db: Database, token: str, admin_token: str) -> Principal | None:
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal(scope="admin")
    async with db.read() as session:
        row = (await session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))).first()
    return Principal(scope=row.scope, site_id=row.site_id) if row else None

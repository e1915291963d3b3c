"""The demo site `make run` serves at /demo/, carrying the real snippet, so a newcomer's
dashboard has field data from their own first clicks. Enabled by FIELDLAB_DEMO."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException

from app.api.deps import services
from app.db import Database
from app.sites import create_site, get_site_by_name

DEMO_SITE = "demo"
PAGES = Path(__file__).resolve().parent / "pages"


def demo_origins(host: str, port: int) -> list[str]:
    hosts = {host, "127.0.0.1", "localhost"} - {"0.0.0.0", "::"}  # noqa: S104 (naming, not binding)
    return sorted(f"http://{h}:{port}" for h in hosts)


async def seed_demo_site(*, db: Database, host: str, port: int) -> tuple[int, str]:
    """Create the demo site once; later runs reuse it. Returns (id, key)."""
    site = await get_site_by_name(db=db, name=DEMO_SITE)
    if site is None:
        site = await create_site(
            db=db,
            name=DEMO_SITE,
            origins=demo_origins(host, port),
            page_groups=[{"pattern": "/demo/product/*", "group": "/demo/product/:id"}],
        )
    assert site.id is not None
    return site.id, site.key


@get(["/demo", "/demo/{page:path}"], include_in_schema=False)
async def demo_page(request: Request[Any, Any, Any], page: str = "/") -> Response[str]:
    name = page.strip("/").split("/")[0] or "index"
    template = PAGES / f"{name}.html"
    if not name.isidentifier() or not template.is_file():
        raise NotFoundException(f"no demo page {page!r}")
    svc = services(request)
    site = await get_site_by_name(db=svc.db, name=DEMO_SITE)
    if site is None:
        raise NotFoundException("the demo site is not seeded; run `fieldlab demo seed`")
    html = template.read_text().replace("{{SITE_KEY}}", escape(site.key))
    return Response(html, media_type="text/html; charset=utf-8")

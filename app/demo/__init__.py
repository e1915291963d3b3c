"""The demo site `make run` serves at /demo/, carrying the real snippet, so a newcomer's
dashboard has field data from their own first clicks. Enabled by FIELDLAB_DEMO.

`fieldlab demo seed` also schedules two checks of it: the demo flow (probes/examples/demo_shop.py
when the flows directory has it, else the declarative probes/examples/homepage.yml) and a
Lighthouse audit of the home page. The demo runs on loopback, so they need
FIELDLAB_ALLOW_PRIVATE_TARGETS (or FIELDLAB_ALLOW_TARGET_HOSTS naming it); `make run` sets it.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import yaml
from litestar import Request, Response, get
from litestar.exceptions import NotFoundException

from app.api.deps import services
from app.checks import upsert_check
from app.db import Database
from app.models import Check
from app.sites import create_site, get_site_by_name
from probes.safety import TargetPolicy

DEMO_SITE = "demo"
PAGES = Path(__file__).resolve().parent / "pages"
EXAMPLES = Path(__file__).resolve().parents[2] / "probes" / "examples"
DEMO_FLOW = "demo_shop.py"
FLOW_CHECK, LIGHTHOUSE_CHECK = "demo-shop-flow", "demo-home-lighthouse"


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


def demo_base_url(host: str, port: int) -> str:
    reachable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 (naming, not binding)
    return f"http://[{reachable}]:{port}" if ":" in reachable else f"http://{reachable}:{port}"


async def seed_demo_checks(
    *, db: Database, host: str, port: int, site_id: int, flows_dir: Path, policy: TargetPolicy
) -> list[Check]:
    """Create or update the demo's two checks (by name, so seeding again only follows a new
    host or port). InvalidInput names the reason, e.g. a refused loopback target."""
    base = demo_base_url(host, port)
    flow: dict[str, Any] = {"flow_file": DEMO_FLOW}
    if not (flows_dir / DEMO_FLOW).is_file():
        flow = {"steps": yaml.safe_load((EXAMPLES / "homepage.yml").read_text())}
    specs: list[dict[str, Any]] = [
        {"name": FLOW_CHECK, "kind": "flow", "target": base, "interval_s": 300, "jitter_s": 10,
         "device": "desktop", "steps": None, "flow_file": None, **flow},
        {"name": LIGHTHOUSE_CHECK, "kind": "lighthouse", "target": f"{base}/demo/", "interval_s": 3600,
         "jitter_s": 30, "device": "mobile", "runs": 3},
    ]  # fmt: skip
    return [
        await upsert_check(db=db, values={**spec, "site_id": site_id}, flows_dir=flows_dir, policy=policy)
        for spec in specs
    ]


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

"""The latest lab numbers per page group, for the page-groups table: each of the site's checks'
newest run that measured pages, its navigations mapped to page groups by the site's own rules (the same
function the ingest path uses for field data), newest run first."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from app import checks as check_data
from app.db import Database
from app.ingest.normalise import page_group
from app.models import CheckRun, Site

# Lighthouse audit ids of the vitals a lab run can have (a navigation has no INP).
LIGHTHOUSE = {"LCP": "largest-contentful-paint", "CLS": "cumulative-layout-shift"}
RECENT_RUNS = 10
MEASURED = ("passed", "flaky", "failed")


def _navigations(kind: str, result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if kind == "lighthouse":
        url = result.get("final_url") or result.get("url") or ""
        metrics = result.get("metrics") or {}
        return [(url, {m: metrics.get(audit) for m, audit in LIGHTHOUSE.items()})]
    out = []
    for step in result.get("steps") or []:
        for nav in step.get("navigations") or [] if isinstance(step, dict) else []:
            if isinstance(nav, dict) and nav.get("url"):
                out.append((str(nav["url"]), dict(nav.get("vitals") or {})))
    return out


async def latest_by_group(*, db: Database, site: Site) -> dict[str, dict[str, Any]]:
    """page group -> {"LCP", "CLS", "INP" (flows only), "run_id", "check"}."""
    found: list[tuple[CheckRun, str, list[tuple[str, dict[str, Any]]]]] = []
    for check in await check_data.list_checks(db=db):
        if check.site_id != site.id or check.id is None:
            continue
        # A failed flow still measured the pages it reached; an error run measured nothing.
        for run in await check_data.list_runs(db=db, check_id=check.id, limit=RECENT_RUNS):
            navigations = _navigations(check.kind, run.result or {}) if run.status in MEASURED else []
            if navigations:
                found.append((run, check.name, navigations))
                break
    out: dict[str, dict[str, Any]] = {}
    for run, name, navigations in sorted(found, key=lambda f: -f[0].started_ms):
        for url, vitals in navigations:
            group = page_group(urlsplit(url).path or "/", site.page_groups)
            if group not in out:
                out[group] = {
                    **{m: vitals.get(m) for m in ("LCP", "CLS", "INP")},
                    "run_id": run.id,
                    "check": name,
                }
    return out

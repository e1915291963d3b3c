"""Monitoring as code: `fieldlab serve --config fieldlab.yml` creates or updates the sites and
checks a file in the repository describes (matched by name; nothing is deleted).

```yaml
sites:
  - name: shop
    origins: [https://shop.example]
    page_groups: [{pattern: "/product/*", group: "/product/:id"}]
    query_allowlist: [utm_source]
checks:
  - name: checkout
    kind: flow
    target: https://staging.shop.example
    every: 15m            # or interval_s: 900, or cron: "*/15 * * * *"
    device: mobile
    flow_file: checkout.py   # in FIELDLAB_FLOWS_DIR; or steps: [...]
  - name: home-lighthouse
    kind: lighthouse
    target: https://shop.example/
    cron: "0 * * * *"
    runs: 3
```
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from app import checks as check_data
from app import sites as site_data
from app.db import Database

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(ValueError):
    """The file is not valid; the message names the entry and field."""


def parse_duration(value: str | int, where: str) -> int:
    if isinstance(value, int):
        return value
    match = _DURATION.match(str(value))
    if not match:
        raise ConfigError(f"{where}: {value!r} is not a duration like 30s, 15m, 1h or 1d")
    return int(match[1]) * _UNIT[match[2]]


def load(path: Path) -> dict[str, list[dict[str, Any]]]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    doc = doc or {}
    if not isinstance(doc, dict) or set(doc) - {"sites", "checks", "budgets"}:
        raise ConfigError(f"{path}: expected a mapping with sites, checks (and budgets)")
    out: dict[str, list[dict[str, Any]]] = {"sites": [], "checks": []}
    for section in ("sites", "checks"):
        entries = doc.get(section) or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ConfigError(f"{path}: {section} must be a list of mappings")
        out[section] = [dict(e) for e in entries]
    for i, check in enumerate(out["checks"]):
        if "every" in check:
            check["interval_s"] = parse_duration(check.pop("every"), f"checks[{i}].every")
    return out


async def apply(*, db: Database, path: Path, flows_dir: Path) -> dict[str, int]:
    """Create or update everything in the file; errors name the entry (`checks[2].cron: …`)."""
    doc = load(path)
    for i, site in enumerate(doc["sites"]):
        try:
            if await site_data.get_site_by_name(db=db, name=str(site.get("name", ""))) is None:
                await site_data.create_site(
                    db=db, name=str(site.get("name", "")), origins=site.get("origins") or [],
                    page_groups=site.get("page_groups") or [], query_allowlist=site.get("query_allowlist") or [],
                )  # fmt: skip
        except (site_data.InvalidInput, site_data.Conflict) as exc:
            raise ConfigError(f"{path}: sites[{i}].{exc}") from None
    for i, check in enumerate(doc["checks"]):
        if "site" in check:
            owner = await site_data.get_site_by_name(db=db, name=str(check.pop("site")))
            check["site_id"] = owner.id if owner else None
        try:
            await check_data.upsert_check(db=db, values=check, flows_dir=flows_dir)
        except (site_data.InvalidInput, site_data.Conflict, KeyError) as exc:
            raise ConfigError(f"{path}: checks[{i}].{exc}") from None
    return {"sites": len(doc["sites"]), "checks": len(doc["checks"])}

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
    site: shop               # optional: the site this check belongs to
    target: https://staging.shop.example
    every: 15m               # or interval_s: 900, or cron: "*/15 * * * *"
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
from probes.safety import TargetPolicy

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SITE_KEYS = {"name", "origins", "page_groups", "query_allowlist"}
CHECK_KEYS = {*check_data.FIELDS, "every", "site"} - {"site_id"}
# What a field left out of the file means: the file is the whole truth about a check it names,
# so deleting a line resets that field rather than keeping what an earlier version set.
CHECK_DEFAULTS: dict[str, Any] = {
    "interval_s": None, "cron": None, "jitter_s": 0, "device": "desktop", "throttling": "none",
    "steps": None, "flow_file": None, "runs": 3, "enabled": True, "site_id": None,
}  # fmt: skip


class ConfigError(ValueError):
    """The file is not valid; the message names the entry and field."""


def parse_duration(value: str | int, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _DURATION.match(str(value))
    if not match:
        raise ConfigError(f"{where}: {value!r} is not a duration like 30s, 15m, 1h or 1d")
    return int(match[1]) * _UNIT[match[2]]


def _entries(doc: dict[str, Any], section: str, keys: set[str], path: Path) -> list[dict[str, Any]]:
    entries = doc.get(section) or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{path}: {section} must be a list of mappings")
    names: set[str] = set()
    for i, entry in enumerate(entries):
        # A misspelt key silently dropped would be a check that quietly does something else.
        if unknown := sorted(set(map(str, entry)) - keys):
            raise ConfigError(
                f"{path}: {section}[{i}]: unknown field {unknown[0]!r} (known: {', '.join(sorted(keys))})"
            )
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{path}: {section}[{i}].name: required")
        if name in names:
            raise ConfigError(f"{path}: {section}[{i}].name: {name!r} appears twice")
        names.add(name)
    return [dict(e) for e in entries]


def load(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Read and shape-check the file (no database)."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    doc = doc or {}
    if not isinstance(doc, dict) or set(doc) - {"sites", "checks", "budgets"}:
        raise ConfigError(f"{path}: expected a mapping with sites, checks (and budgets)")
    out = {
        "sites": _entries(doc, "sites", SITE_KEYS, path),
        "checks": _entries(doc, "checks", CHECK_KEYS, path),
    }
    for i, check in enumerate(out["checks"]):
        if "every" in check:
            if "interval_s" in check:
                raise ConfigError(f"{path}: checks[{i}].every: give every or interval_s, not both")
            check["interval_s"] = parse_duration(check.pop("every"), f"{path}: checks[{i}].every")
    return out


def validate(path: Path, *, flows_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Everything that can be checked before the server starts: shape, sites' fields, checks'
    fields, schedules, steps and flow files. `serve` and `fieldlab config check` call it, so a
    bad file stops the server (or the CI job) with the reason. What needs the database (a
    check's ``site`` naming a site only the database has) is checked when it is applied."""
    doc = load(path)
    for i, site in enumerate(doc["sites"]):
        try:
            site_data.checked_fields(str(site["name"]), site.get("origins") or [], site.get("page_groups") or [],
                                     site.get("query_allowlist") or [])  # fmt: skip
        except site_data.InvalidInput as exc:
            raise ConfigError(f"{path}: sites[{i}].{exc}") from None
    for i, check in enumerate(doc["checks"]):
        try:
            check_data.validate({k: v for k, v in check.items() if k != "site"}, flows_dir=flows_dir)
        except site_data.InvalidInput as exc:
            raise ConfigError(f"{path}: checks[{i}].{exc}") from None
    return doc


async def apply(
    *, db: Database, path: Path, flows_dir: Path, policy: TargetPolicy | None = None
) -> dict[str, int]:
    """Create or update everything in the file; errors name the entry (`checks[2].cron: …`)."""
    doc = load(path)
    for i, site in enumerate(doc["sites"]):
        # As for checks, the file is the truth about a site it names: its origins, rules and
        # allowlist are set to the file's (a key left out means none); the key never changes.
        name = str(site.get("name", ""))
        fields: dict[str, Any] = {
            "origins": site.get("origins") or [], "page_groups": site.get("page_groups") or [],
            "query_allowlist": site.get("query_allowlist") or [],
        }  # fmt: skip
        try:
            existing = await site_data.get_site_by_name(db=db, name=name)
            if existing is None or existing.id is None:
                await site_data.create_site(db=db, name=name, **fields)
            else:
                await site_data.update_site(db=db, site_id=existing.id, **fields)
        except (site_data.InvalidInput, site_data.Conflict) as exc:
            raise ConfigError(f"{path}: sites[{i}].{exc}") from None
    for i, check in enumerate(doc["checks"]):
        if "site" in check:
            name = str(check.pop("site"))
            owner = await site_data.get_site_by_name(db=db, name=name)
            if owner is None:
                raise ConfigError(f"{path}: checks[{i}].site: no site named {name!r}")
            check["site_id"] = owner.id
        try:
            await check_data.upsert_check(
                db=db, values={**CHECK_DEFAULTS, **check}, flows_dir=flows_dir, policy=policy
            )
        except (site_data.InvalidInput, site_data.Conflict) as exc:
            raise ConfigError(f"{path}: checks[{i}].{exc}") from None
    return {"sites": len(doc["sites"]), "checks": len(doc["checks"])}

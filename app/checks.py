"""Synthetic checks and their runs: keyword-only data functions for routes, CLI and scheduler."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
import yaml
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from app.db import Database, now_ms
from app.models import AlertState, BudgetStatus, Check, CheckRun, Site, table
from app.sites import Conflict, InvalidInput
from probes.safety import TargetPolicy, TargetRefused, Unresolvable

KINDS = ("flow", "lighthouse")
DEVICES = ("mobile", "desktop")
THROTTLING = ("none", "mobile-slow-4g", "desktop-dense-4g")
# The trigger of runs `fieldlab demo seed` generates: numbers for the charts, but nothing ran.
GENERATED = "demo"
FIELDS = ("name", "kind", "target", "site_id", "interval_s", "cron", "jitter_s", "device", "throttling",
          "steps", "flow_file", "runs", "enabled")  # fmt: skip
MAX_TARGET = 2048


def resolve_flow_file(flows_dir: Path, flow_file: str) -> Path:
    """``flow_file`` as a path inside ``flows_dir`` (symlinks resolved), or InvalidInput."""
    root = flows_dir.resolve()
    path = (root / flow_file).resolve()
    if root not in path.parents or path.suffix != ".py":
        raise InvalidInput(f"flow_file: {flow_file!r} must be a .py file inside the flows directory")
    return path


def _steps(raw: Any) -> list[Any]:
    """Declarative steps as a list: given as one (JSON), or as YAML text."""
    if isinstance(raw, str):
        try:
            raw = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise InvalidInput(f"steps: not valid YAML ({str(exc).splitlines()[0]})") from None
    from probes.declarative import DeclarativeError, parse_steps

    try:
        parse_steps(raw)
    except DeclarativeError as exc:
        raise InvalidInput(str(exc) if str(exc).startswith("steps") else f"steps: {exc}") from None
    assert isinstance(raw, list)
    return raw


def _schedule(values: dict[str, Any]) -> None:
    from apscheduler.triggers.cron import CronTrigger

    interval, cron = values.get("interval_s"), values.get("cron")
    if interval is not None and cron:
        raise InvalidInput("schedule: give interval_s or cron, not both")
    if interval is not None and not 1 <= int(interval) <= 7 * 86400:
        raise InvalidInput("interval_s: must be between 1 and 604800 seconds")
    if cron:
        if len(cron) > 100:
            raise InvalidInput("cron: at most 100 characters")
        try:
            CronTrigger.from_crontab(cron)
        except ValueError as exc:
            raise InvalidInput(f"cron: {cron!r} is not a crontab expression ({exc})") from None
    if not 0 <= int(values.get("jitter_s") or 0) <= 3600:
        raise InvalidInput("jitter_s: must be between 0 and 3600")


def validate(values: dict[str, Any], *, flows_dir: Path) -> dict[str, Any]:
    """Check a check's fields (no I/O but the flows directory); errors name the field.
    Returns the cleaned values. :func:`check_target` is the network half."""
    name = str(values.get("name") or "").strip()
    if not name or len(name) > 200:
        raise InvalidInput("name: between 1 and 200 characters")
    kind = values.get("kind")
    if kind not in KINDS:
        raise InvalidInput(f"kind: must be one of {', '.join(KINDS)}, not {kind!r}")
    target = str(values.get("target") or "")
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"target: {target[:200]!r} is not an http(s) URL")
    if len(target) > MAX_TARGET:
        raise InvalidInput(f"target: at most {MAX_TARGET} characters")
    if values.get("device", "desktop") not in DEVICES:
        raise InvalidInput(f"device: must be one of {', '.join(DEVICES)}")
    if values.get("throttling", "none") not in THROTTLING:
        raise InvalidInput(f"throttling: must be one of {', '.join(THROTTLING)}")
    _schedule(values)
    out = {k: v for k, v in values.items() if k in FIELDS}
    out["name"] = name
    steps, flow_file = values.get("steps"), values.get("flow_file")
    if kind == "flow":
        if bool(steps) == bool(flow_file):
            raise InvalidInput("steps: a flow check needs either steps (declarative) or flow_file, not both")
        if flow_file:
            if not resolve_flow_file(flows_dir, flow_file).is_file():
                raise InvalidInput(f"flow_file: {flow_file!r} not found in the flows directory")
        else:
            out["steps"] = _steps(steps)
    else:
        if steps or flow_file:
            raise InvalidInput(
                f"{'steps' if steps else 'flow_file'}: a lighthouse check audits its target only"
            )
        runs = values.get("runs")
        if not 1 <= int(3 if runs is None else runs) <= 9:
            raise InvalidInput("runs: must be between 1 and 9")
    return out


async def check_target(*, target: str, policy: TargetPolicy) -> None:
    """Refuse a target the probes would refuse (scheme, private or metadata address). A name
    that does not resolve yet is accepted: DNS may follow, and every run checks again."""
    try:
        await policy.check_url_async(target)
    except Unresolvable:
        return
    except TargetRefused as exc:
        raise InvalidInput(f"target: {exc}") from None


async def _checked(
    *, db: Database, values: dict[str, Any], flows_dir: Path, policy: TargetPolicy | None
) -> dict[str, Any]:
    clean = validate(values, flows_dir=flows_dir)
    if policy is not None:
        await check_target(target=clean["target"], policy=policy)
    site_id = clean.get("site_id")
    if site_id is not None:
        async with db.read() as session:
            if await session.get(Site, site_id) is None:
                raise InvalidInput(f"site_id: no site with id {site_id}")
    return clean


async def create_check(
    *, db: Database, values: dict[str, Any], flows_dir: Path, policy: TargetPolicy | None = None
) -> Check:
    """``policy``: also refuse targets it refuses (the API and config file always pass one)."""
    clean = await _checked(db=db, values=values, flows_dir=flows_dir, policy=policy)
    check = Check(**clean, created_ms=now_ms())
    try:
        async with db.write() as session:
            session.add(check)
    except IntegrityError:
        raise Conflict(f"name: a check called {clean['name']!r} already exists") from None
    return check


async def update_check(
    *,
    db: Database,
    check_id: int,
    values: dict[str, Any],
    flows_dir: Path,
    policy: TargetPolicy | None = None,
) -> Check | None:
    current = await get_check(db=db, check_id=check_id)
    if current is None:
        return None
    merged = {**current.model_dump(include=set(FIELDS)), **values}
    clean = await _checked(db=db, values=merged, flows_dir=flows_dir, policy=policy)
    async with db.write() as session:
        check = await session.get(Check, check_id)
        if check is None:  # deleted meanwhile
            return None
        for key, value in clean.items():
            setattr(check, key, value)
        session.add(check)
    return check


async def upsert_check(
    *, db: Database, values: dict[str, Any], flows_dir: Path, policy: TargetPolicy | None = None
) -> Check:
    """Create or update by name (checks as code: the config file is the source of truth)."""
    async with db.read() as session:
        existing = (await session.exec(select(Check).where(Check.name == values.get("name")))).first()
    if existing is None or existing.id is None:
        return await create_check(db=db, values=values, flows_dir=flows_dir, policy=policy)
    updated = await update_check(
        db=db, check_id=existing.id, values=values, flows_dir=flows_dir, policy=policy
    )
    assert updated is not None
    return updated


async def delete_check(*, db: Database, check_id: int) -> bool:
    """Delete the check, its runs and their artifacts on disk, and what was judged of it: the
    verdicts and alert states of its ``check:ID`` scope and its deploy-watch ones
    (``regression:check:ID:…`` in its site's scope), which would otherwise stay on the budgets
    page as last judged. False if there is no such check."""
    from app.run_retention import remove_run_dirs, run_ids_of_checks

    async with db.write_conn() as conn:
        run_ids = await run_ids_of_checks(conn, [check_id])
        await conn.execute(sa.delete(table(CheckRun)).where(table(CheckRun).c.check_id == check_id))
        for judged in (table(BudgetStatus), table(AlertState)):
            await conn.execute(
                sa.delete(judged).where(
                    sa.or_(
                        judged.c.scope == f"check:{check_id}",
                        judged.c.budget_id.startswith(f"regression:check:{check_id}:", autoescape=True),
                    )
                )
            )
        result = await conn.execute(sa.delete(table(Check)).where(table(Check).c.id == check_id))
    await remove_run_dirs(db.settings.data_dir, run_ids)
    return bool(result.rowcount)


async def list_checks(*, db: Database) -> Sequence[Check]:
    async with db.read() as session:
        return (await session.exec(select(Check).order_by(Check.id))).all()  # type: ignore[arg-type]


async def get_check(*, db: Database, check_id: int) -> Check | None:
    async with db.read() as session:
        return await session.get(Check, check_id)


async def start_run(*, db: Database, check_id: int, trigger: str, status: str = "running") -> CheckRun:
    run = CheckRun(check_id=check_id, status=status, trigger=trigger, started_ms=now_ms())
    if status != "running":
        run.finished_ms, run.duration_ms = run.started_ms, 0.0
    async with db.write() as session:
        session.add(run)
    return run


async def finish_run(
    *, db: Database, run_id: int, status: str, result: dict[str, Any] | None, error: str | None = None
) -> bool:
    """Store a run's outcome; False if the run is gone (its check or site was deleted while it ran)."""
    finished = now_ms()
    async with db.write() as session:
        run = await session.get(CheckRun, run_id)
        if run is None:
            return False
        run.status, run.result, run.error = status, result, (error or None) and error[:2048]
        run.finished_ms, run.duration_ms = finished, float(finished - run.started_ms)
        session.add(run)
    return True


async def list_runs(
    *, db: Database, check_id: int, limit: int = 50, before_id: int | None = None
) -> Sequence[CheckRun]:
    query = select(CheckRun).where(CheckRun.check_id == check_id)
    if before_id is not None:
        query = query.where(CheckRun.id < before_id)  # type: ignore[operator]
    async with db.read() as session:
        return (await session.exec(query.order_by(CheckRun.id.desc()).limit(limit))).all()  # type: ignore[union-attr]


async def get_run(*, db: Database, run_id: int) -> CheckRun | None:
    async with db.read() as session:
        return await session.get(CheckRun, run_id)

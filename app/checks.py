"""Synthetic checks and their runs: keyword-only data functions for routes, CLI and scheduler."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from app.db import Database, now_ms
from app.models import Check, CheckRun, table
from app.sites import Conflict, InvalidInput

KINDS = ("flow", "lighthouse")
DEVICES = ("mobile", "desktop")
THROTTLING = ("none", "mobile-slow-4g", "desktop-dense-4g")
FIELDS = ("name", "kind", "target", "site_id", "interval_s", "cron", "jitter_s", "device", "throttling",
          "steps", "flow_file", "runs", "enabled")  # fmt: skip


def validate(values: dict[str, Any], *, flows_dir: Path) -> dict[str, Any]:
    """Check a check's fields; errors name the field. Returns the cleaned values."""
    from apscheduler.triggers.cron import CronTrigger

    kind = values.get("kind")
    if kind not in KINDS:
        raise InvalidInput(f"kind: must be one of {', '.join(KINDS)}, not {kind!r}")
    target = str(values.get("target") or "")
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"target: {target!r} is not an http(s) URL")
    if values.get("device", "desktop") not in DEVICES:
        raise InvalidInput(f"device: must be one of {', '.join(DEVICES)}")
    if values.get("throttling", "none") not in THROTTLING:
        raise InvalidInput(f"throttling: must be one of {', '.join(THROTTLING)}")
    interval, cron = values.get("interval_s"), values.get("cron")
    if interval is not None and cron:
        raise InvalidInput("schedule: give interval_s or cron, not both")
    if interval is not None and not 1 <= int(interval) <= 7 * 86400:
        raise InvalidInput("interval_s: must be between 1 and 604800 seconds")
    if cron:
        try:
            CronTrigger.from_crontab(cron)
        except ValueError as exc:
            raise InvalidInput(f"cron: {cron!r} is not a crontab expression ({exc})") from None
    if not 0 <= int(values.get("jitter_s") or 0) <= 3600:
        raise InvalidInput("jitter_s: must be between 0 and 3600")
    if kind == "flow":
        steps, flow_file = values.get("steps"), values.get("flow_file")
        if bool(steps) == bool(flow_file):
            raise InvalidInput("steps: a flow check needs either steps (declarative) or flow_file, not both")
        if flow_file:
            resolved = (flows_dir / flow_file).resolve()
            if flows_dir.resolve() not in resolved.parents or resolved.suffix != ".py":
                raise InvalidInput(f"flow_file: {flow_file!r} must be a .py file inside the flows directory")
            if not resolved.is_file():
                raise InvalidInput(f"flow_file: {flow_file!r} not found in {flows_dir}")
        if steps:
            from probes.declarative import DeclarativeError, flow_from_steps

            try:
                flow_from_steps(steps)
            except DeclarativeError as exc:
                raise InvalidInput(f"steps: {exc}") from None
    elif not 1 <= int(values.get("runs") or 3) <= 9:
        raise InvalidInput("runs: must be between 1 and 9")
    return {k: v for k, v in values.items() if k in FIELDS}


async def create_check(*, db: Database, values: dict[str, Any], flows_dir: Path) -> Check:
    check = Check(**validate(values, flows_dir=flows_dir), created_ms=now_ms())
    try:
        async with db.write() as session:
            session.add(check)
    except IntegrityError:
        raise Conflict(f"name: a check called {values.get('name')!r} already exists") from None
    return check


async def update_check(
    *, db: Database, check_id: int, values: dict[str, Any], flows_dir: Path
) -> Check | None:
    async with db.write() as session:
        check = await session.get(Check, check_id)
        if check is None:
            return None
        merged = {**check.model_dump(include=set(FIELDS)), **values}
        for key, value in validate(merged, flows_dir=flows_dir).items():
            setattr(check, key, value)
        session.add(check)
    return check


async def upsert_check(*, db: Database, values: dict[str, Any], flows_dir: Path) -> Check:
    """Create or update by name (checks as code: the config file is the source of truth)."""
    async with db.read() as session:
        existing = (await session.exec(select(Check).where(Check.name == values["name"]))).first()
    if existing is None or existing.id is None:
        return await create_check(db=db, values=values, flows_dir=flows_dir)
    updated = await update_check(db=db, check_id=existing.id, values=values, flows_dir=flows_dir)
    assert updated is not None
    return updated


async def delete_check(*, db: Database, check_id: int) -> bool:
    async with db.write_conn() as conn:
        await conn.execute(sa.delete(table(CheckRun)).where(table(CheckRun).c.check_id == check_id))
        result = await conn.execute(sa.delete(table(Check)).where(table(Check).c.id == check_id))
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
) -> None:
    finished = now_ms()
    async with db.write() as session:
        run = await session.get(CheckRun, run_id)
        assert run is not None
        run.status, run.result, run.error = status, result, (error or None) and error[:2048]
        run.finished_ms, run.duration_ms = finished, float(finished - run.started_ms)
        session.add(run)


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

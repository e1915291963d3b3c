"""Retention for synthetic runs: run rows after FIELDLAB_RUN_RETENTION_DAYS, their artifacts on
disk (screenshots, traces, Lighthouse reports) after FIELDLAB_ARTIFACT_RETENTION_DAYS.

The two differ on purpose: a run's numbers are a few KB and feed the lab trends for as long as
the field rollups are kept, while its artifacts are ~0.1-1 MB each and a check every five
minutes would fill a disk with them within months. Directories of runs that no longer exist (a
deleted check's) go too. A run's directory is made after its row is committed, so a directory
without a row is never a run in progress.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from app.db import Database, delete_in_chunks
from app.field.rollups import DAY
from app.models import CheckRun, table

log = logging.getLogger(__name__)
CHUNK = 1000


def run_dir(data_dir: str | Path, run_id: int) -> Path:
    """Where a run's artifacts are kept (the scheduler writes them there)."""
    return Path(data_dir) / "artifacts" / str(run_id)


async def run_ids_of_checks(conn: Any, check_ids: list[int]) -> list[int]:
    runs = table(CheckRun)
    return [row[0] for row in await conn.execute(sa.select(runs.c.id).where(runs.c.check_id.in_(check_ids)))]


async def remove_run_dirs(data_dir: str | Path, run_ids: list[int]) -> int:
    """Remove deleted runs' artifact directories now (a deleted check's screenshots and traces
    should not wait for the next retention run); returns how many there were."""

    def remove() -> int:
        removed = 0
        for run_id in run_ids:
            path = run_dir(data_dir, run_id)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        return removed

    return await asyncio.to_thread(remove) if run_ids else 0


def expired_message(run_id: int, artifact_days: int) -> str:
    return (
        f"the artifacts of run {run_id} were removed after {artifact_days} days "
        "(FIELDLAB_ARTIFACT_RETENTION_DAYS); its results are kept"
    )


async def _expired_dirs(db: Database, root: Path, cutoff_ms: int) -> list[Path]:
    dirs = await asyncio.to_thread(
        lambda: (
            {int(p.name): p for p in root.iterdir() if p.is_dir() and p.name.isdigit()}
            if root.is_dir()
            else {}
        )
    )
    ids = sorted(dirs)
    keep: set[int] = set()
    t = table(CheckRun)
    async with db.read_engine.connect() as conn:
        for i in range(0, len(ids), CHUNK):
            rows = await conn.execute(
                sa.select(t.c.id).where(t.c.id.in_(ids[i : i + CHUNK]), t.c.started_ms >= cutoff_ms)
            )
            keep.update(int(row[0]) for row in rows)
    return [dirs[i] for i in ids if i not in keep]


async def prune_runs(
    db: Database, *, data_dir: str | Path, now_ms: int, run_days: int, artifact_days: int
) -> dict[str, int]:
    """Delete expired runs, then the artifact directories of runs expired or gone."""
    t = table(CheckRun)
    removed = {"check_run": await delete_in_chunks(db, t, t.c.started_ms < now_ms - run_days * DAY, chunk=CHUNK),
               "artifact_dirs": 0}  # fmt: skip
    for path in await _expired_dirs(db, Path(data_dir) / "artifacts", now_ms - artifact_days * DAY):
        await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)
        removed["artifact_dirs"] += 1
    if any(removed.values()):
        log.info("run retention removed %s", removed)
    return removed

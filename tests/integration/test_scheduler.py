"""The check scheduler on SQLite and PostgreSQL: runs at the interval, records an overlapping
run as skipped, caps concurrency, runs now on request, and catches up a run missed while down.

The probe here is a small real ProbeRunner that sleeps instead of driving a browser (the
browser runner has its own tests); the database is real."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app import checks as check_data
from app.config import Settings
from app.db import Database
from app.models import Check
from app.scheduler import CheckScheduler


class SleepRunner:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started: list[tuple[int, float]] = []
        self.active = 0
        self.most_active = 0

    async def run(self, check: Check, artifacts: Path) -> tuple[str, dict[str, Any]]:
        assert check.id is not None
        self.started.append((check.id, time.monotonic()))
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.active -= 1
        (artifacts / "note.txt").write_text("ran")
        return "passed", {"status": "passed", "error": None}

    async def close(self) -> None:
        pass


def flow_check(name: str, **over: Any) -> dict[str, Any]:
    return {"name": name, "kind": "flow", "target": "https://shop.example/", "flow_file": "home.py", **over}


@pytest.fixture(autouse=True)
def flows(tmp_path: Path) -> None:
    (tmp_path / "home.py").write_text("async def flow(page, step):\n    await page.goto('/')\n")


async def statuses(db: Database, check_id: int) -> list[str]:
    return [r.status for r in reversed(await check_data.list_runs(db=db, check_id=check_id))]


async def test_runs_at_the_interval_and_records_overlaps_as_skipped(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    runner = SleepRunner(2.5)  # longer than the 1 s interval: every other tick overlaps
    sched = CheckScheduler(db=db, runner=runner, settings=replace(settings, data_dir=str(tmp_path)))
    check = await check_data.create_check(db=db, values=flow_check("tick", interval_s=1), flows_dir=tmp_path)
    assert check.id is not None
    await sched.start()
    try:
        await asyncio.sleep(4.6)
    finally:
        await sched.stop()
    seen = await statuses(db, check.id)
    assert "passed" in seen
    assert "skipped" in seen, seen
    assert runner.most_active == 1  # never two runs of one check at once
    passed = [r for r in await check_data.list_runs(db=db, check_id=check.id) if r.status == "passed"]
    assert (tmp_path / "artifacts" / str(passed[0].id) / "note.txt").is_file()


async def test_flow_concurrency_is_capped(db: Database, settings: Settings, tmp_path: Path) -> None:
    runner = SleepRunner(0.5)
    sched = CheckScheduler(
        db=db, runner=runner, settings=replace(settings, data_dir=str(tmp_path), flow_concurrency=2)
    )
    ids = []
    for i in range(4):
        check = await check_data.create_check(db=db, values=flow_check(f"c{i}"), flows_dir=tmp_path)
        assert check.id is not None
        ids.append(check.id)
    await asyncio.gather(*(sched.execute(i, trigger="manual") for i in ids))
    assert runner.most_active == 2
    for i in ids:
        assert await statuses(db, i) == ["passed"]


async def test_run_now_and_a_second_run_now_while_running_is_skipped(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    runner = SleepRunner(0.5)
    sched = CheckScheduler(db=db, runner=runner, settings=replace(settings, data_dir=str(tmp_path)))
    check = await check_data.create_check(db=db, values=flow_check("manual"), flows_dir=tmp_path)
    assert check.id is not None
    first = await sched.run_now(check.id)
    second = await sched.run_now(check.id)
    assert first.status == "running"
    assert second.status == "skipped"
    await asyncio.sleep(0.8)
    assert sorted(await statuses(db, check.id)) == ["passed", "skipped"]


async def start_briefly(db: Database, runner: SleepRunner, settings: Settings) -> None:
    """Start a scheduler, give it what its start-up catch-up runs, and stop it."""
    sched = CheckScheduler(db=db, runner=runner, settings=settings)
    await sched.start()
    try:
        await asyncio.sleep(0.6)
    finally:
        await sched.stop()


async def test_a_run_missed_while_down_runs_on_start_within_grace(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    runner = SleepRunner(0.1)
    check = await check_data.create_check(
        db=db, values=flow_check("hourly", interval_s=3600), flows_dir=tmp_path
    )
    assert check.id is not None
    run = await check_data.start_run(db=db, check_id=check.id, trigger="schedule")
    assert run.id is not None
    await check_data.finish_run(db=db, run_id=run.id, status="passed", result={})
    # Pretend the last run started 61 minutes ago: one run is 1 minute overdue.
    async with db.write() as session:
        stored = await session.get(type(run), run.id)
        assert stored is not None
        stored.started_ms -= 61 * 60 * 1000
        session.add(stored)
    await start_briefly(db, runner, replace(settings, data_dir=str(tmp_path), misfire_grace_s=300))
    assert len(runner.started) == 1
    assert await statuses(db, check.id) == ["passed", "passed"]


async def test_a_check_with_only_generated_runs_runs_on_start(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    """`fieldlab demo seed` gives the demo checks a generated history; nothing ran, so the
    scheduler runs them at once, as it runs a check that never ran."""
    runner = SleepRunner(0.1)
    check = await check_data.create_check(
        db=db, values=flow_check("hourly", interval_s=3600), flows_dir=tmp_path
    )
    assert check.id is not None
    await check_data.start_run(db=db, check_id=check.id, trigger=check_data.GENERATED, status="passed")
    await start_briefly(db, runner, replace(settings, data_dir=str(tmp_path)))
    assert len(runner.started) == 1
    triggers = [r.trigger for r in reversed(await check_data.list_runs(db=db, check_id=check.id))]
    assert triggers == [check_data.GENERATED, "schedule"]


async def test_a_check_deleted_while_it_runs_drops_the_result_quietly(
    db: Database, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fieldlab.scheduler")
    runner = SleepRunner(0.5)
    seen: list[int] = []

    async def on_run(check: Check, run: Any) -> None:
        seen.append(run.id)

    sched = CheckScheduler(db=db, runner=runner, settings=replace(settings, data_dir=str(tmp_path)))
    sched.on_run = on_run
    check = await check_data.create_check(db=db, values=flow_check("doomed"), flows_dir=tmp_path)
    assert check.id is not None
    execution = asyncio.ensure_future(sched.execute(check.id, trigger="manual"))
    await asyncio.sleep(0.2)  # running now
    assert await check_data.delete_check(db=db, check_id=check.id)
    run = await execution  # no AssertionError from storing a result for a run that is gone
    assert run is not None
    assert await check_data.get_run(db=db, run_id=run.id or 0) is None
    assert seen == []  # no budgets judged, no alerts, for a check that no longer exists
    assert not (tmp_path / "artifacts" / str(run.id)).exists()  # what it wrote went with it
    assert "deleted while it ran" in caplog.text
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]

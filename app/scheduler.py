"""Runs synthetic checks on their schedules (APScheduler 3, in the server's event loop).

* A check's runs never overlap: a run due while the previous one is still going is recorded
  as ``skipped`` rather than queued or run twice.
* At most FIELDLAB_FLOW_CONCURRENCY flows at once; Lighthouse audits one at a time (probes
  enforces that machine-wide with a lock file, so the CI gate on the same box waits too).
* Schedules live in the database with the checks, so they survive restarts; a run missed while
  the server was down still happens on start if it is within FIELDLAB_MISFIRE_GRACE_S.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_SUBMITTED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import SQLAlchemyError

from app import checks as check_data
from app.config import Settings
from app.db import Database
from app.models import Check, CheckRun
from app.observability import Metrics
from app.run_retention import remove_run_dirs

log = logging.getLogger("fieldlab.scheduler")


class ProbeRunner(Protocol):
    """Runs one check and returns ``(status, result)``: status is passed, failed, flaky or
    error; result is the probe's JSON. The real one is app.runner.LocalProbeRunner."""

    async def run(self, check: Check, artifacts: Path) -> tuple[str, dict[str, Any]]: ...

    async def close(self) -> None: ...


class CheckScheduler:
    def __init__(
        self, *, db: Database, runner: ProbeRunner, settings: Settings, metrics: Metrics | None = None
    ) -> None:
        self.db = db
        self.metrics = metrics
        self.runner = runner
        self.settings = settings
        self.artifacts_root = Path(settings.data_dir) / "artifacts"
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._scheduler.add_listener(self._on_max_instances, EVENT_JOB_MAX_INSTANCES)
        self._scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        self._running: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flows = asyncio.Semaphore(settings.flow_concurrency)
        self.lag_s = 0.0  # how late the last scheduled run started (health metric)
        # Called with each finished, stored run (budget evaluation: app/budgets/service.py).
        self.on_run: Callable[[Check, CheckRun], Awaitable[None]] | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._scheduler.start()
        # Also re-read the checks every minute: it heals a start while the database was down and
        # picks up checks that another worker or the config file changed.
        self._scheduler.add_job(self._resync, IntervalTrigger(seconds=60), id="resync", coalesce=True)
        await self._resync()

    async def _resync(self) -> None:
        try:
            await self.sync()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("scheduler could not read the checks (will retry): %s", exc)

    async def stop(self) -> None:
        self._scheduler.shutdown(wait=False)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.runner.close()

    async def sync(self) -> None:
        """Make the jobs match the checks in the database (after start, create, update, delete)."""
        wanted = {c.id: c for c in await check_data.list_checks(db=self.db) if c.id is not None}
        for job in self._scheduler.get_jobs():
            if not job.id.startswith("check-"):
                continue
            check_id = int(job.id.removeprefix("check-"))
            if check_id not in wanted or not self._schedulable(wanted[check_id]):
                job.remove()
        for check in wanted.values():
            if self._schedulable(check):
                await self._add_job(check)

    @staticmethod
    def _schedulable(check: Check) -> bool:
        return check.enabled and (check.interval_s is not None or bool(check.cron))

    async def _add_job(self, check: Check) -> None:
        assert check.id is not None
        trigger: IntervalTrigger | CronTrigger
        if check.cron:
            trigger = CronTrigger.from_crontab(check.cron, timezone="UTC")
            trigger.jitter = check.jitter_s or None
        else:
            assert check.interval_s is not None
            trigger = IntervalTrigger(seconds=check.interval_s, jitter=check.jitter_s or None)
        job_id = f"check-{check.id}"
        existing = self._scheduler.get_job(job_id)
        self._scheduler.add_job(
            self._scheduled, trigger, id=job_id, args=[check.id], replace_existing=True, max_instances=1,
            coalesce=True, misfire_grace_time=self.settings.misfire_grace_s,
        )  # fmt: skip
        # Only a started scheduler runs checks (FIELDLAB_SCHEDULER=0: the API still stores them).
        if existing is None and check.interval_s and self._scheduler.running:
            await self._catch_up(check)

    async def _catch_up(self, check: Check) -> None:
        """Run now if the server was down when a run was due, within the misfire grace, or if
        the check has never run (a new check shows a result at once, not one interval later)."""
        assert check.id is not None
        assert check.interval_s is not None
        last = await check_data.list_runs(db=self.db, check_id=check.id, limit=1)
        if not last or last[0].trigger == check_data.GENERATED:  # the demo's history: nothing ran
            self._spawn(self.execute(check.id, trigger="schedule"))
            return
        due_ms = last[0].started_ms + check.interval_s * 1000
        late_s = time.time() - due_ms / 1000
        if 0 < late_s <= self.settings.misfire_grace_s:
            log.info("check %s missed a run %.0fs ago; running it now", check.name, late_s)
            self._spawn(self.execute(check.id, trigger="schedule"))

    # --- running ----------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _scheduled(self, check_id: int) -> None:
        await self.execute(check_id, trigger="schedule")

    def _on_submitted(self, event: JobSubmissionEvent) -> None:
        if event.scheduled_run_times:
            self.lag_s = max(0.0, time.time() - event.scheduled_run_times[-1].timestamp())
            if self.metrics is not None:
                self.metrics.scheduler_lag.set(self.lag_s)

    def _on_max_instances(self, event: JobExecutionEvent) -> None:
        if not event.job_id.startswith("check-"):
            return
        check_id = int(event.job_id.removeprefix("check-"))
        self._spawn(self._record_skipped(check_id, "schedule"))

    async def _record_skipped(self, check_id: int, trigger: str) -> CheckRun:
        log.warning("check %d: run skipped, the previous one is still running", check_id)
        return await check_data.start_run(db=self.db, check_id=check_id, trigger=trigger, status="skipped")

    async def run_now(self, check_id: int) -> CheckRun:
        """Start a run in the background and return its row (``skipped`` if one is running)."""
        if check_id in self._running:
            return await self._record_skipped(check_id, "manual")
        started: asyncio.Future[CheckRun] = asyncio.get_running_loop().create_future()
        self._spawn(self.execute(check_id, trigger="manual", started=started))
        return await started

    async def execute(
        self, check_id: int, *, trigger: str, started: asyncio.Future[CheckRun] | None = None
    ) -> CheckRun | None:
        check = await check_data.get_check(db=self.db, check_id=check_id)
        if check is None:
            return None
        if check_id in self._running:
            run = await self._record_skipped(check_id, trigger)
            if started is not None:
                started.set_result(run)
            return run
        self._running.add(check_id)
        try:
            run = await check_data.start_run(db=self.db, check_id=check_id, trigger=trigger)
            if started is not None:
                started.set_result(run)
            assert run.id is not None
            began = time.perf_counter()
            status, result, error = await self._run(check, self.artifacts_root / str(run.id))
            if self.metrics is not None:
                self.metrics.run_seconds.labels(check.kind, status).observe(time.perf_counter() - began)
            if not await check_data.finish_run(
                db=self.db, run_id=run.id, status=status, result=result, error=error
            ):
                log.info(
                    "check %s was deleted while it ran (run %d); its result is dropped", check.name, run.id
                )
                await remove_run_dirs(self.settings.data_dir, [run.id])
                return run
            log.info("check %s run %d: %s", check.name, run.id, status)
            if self.on_run is not None and (stored := await check_data.get_run(db=self.db, run_id=run.id)):
                await self.on_run(check, stored)
            return run
        finally:
            self._running.discard(check_id)

    async def _run(self, check: Check, artifacts: Path) -> tuple[str, dict[str, Any] | None, str | None]:
        await asyncio.to_thread(artifacts.mkdir, parents=True, exist_ok=True)
        try:
            if check.kind == "flow":
                async with self._flows:
                    status, result = await self.runner.run(check, artifacts)
            else:
                status, result = await self.runner.run(check, artifacts)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("check %s failed to run", check.name)
            return "error", None, f"{type(exc).__name__}: {exc}"
        return status, result, result.get("error")

    @property
    def running(self) -> frozenset[int]:
        return frozenset(self._running)

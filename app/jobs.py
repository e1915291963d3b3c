"""Periodic in-process jobs (rollups, retention). Each runs in its own task, never overlaps
itself, logs and survives its own failures, and stops with the app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("fieldlab.jobs")


class Periodic:
    def __init__(
        self, name: str, interval_s: float, fn: Callable[[], Awaitable[object]], *, first_delay_s: float = 1.0
    ):
        self.name = name
        self.interval_s = interval_s
        self.fn = fn
        self.first_delay_s = first_delay_s
        self.runs = 0
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def run_once(self) -> None:
        async with self._lock:  # a manual run and the timer never overlap
            try:
                await self.fn()
                self.last_error = None
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("job %s failed", self.name)
            self.runs += 1

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_delay_s)
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"fieldlab-job-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

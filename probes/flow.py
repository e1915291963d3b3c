"""Run a user flow: ``async def flow(page, step)`` with timed steps, lab vitals, resources,
errors and evidence, under hard timeouts and a retry policy.

Timeouts. Playwright's own timeouts are set to the step timeout, so an ordinary wait (a selector
that never shows up, a server that never answers) fails cleanly with Playwright's message and
the step is ``timed-out``. The hard timer (step timeout + 2 s, and the run timeout) is for a
browser that stopped answering - e.g. a renderer stuck in a JavaScript loop, where
``page.evaluate`` never returns: the flow is cancelled and the browser's whole process tree is
killed; the next run gets a fresh browser. A failed step whose page no longer answers a trivial
``evaluate`` within 2 s is treated the same way.

Retries. A failed attempt is retried (fresh context; fresh browser if it was killed) up to
``retries`` times within the run timeout; a run that passes on a retry is ``flaky``.

Traces. Every attempt is traced, since a trace of a failure can only be recorded while it
happens. The first attempt keeps a light trace (actions with their timings, call logs and
errors, console messages): DOM snapshots with network capture and the screencast filmstrip
made a passing check about 30 % slower, and the step screenshots already show each step's
end. A retry, which only happens after a failure, records the full trace.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import importlib.util
import inspect
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from probes.browser import BrowserPool, ChromiumNotFound
from probes.collect import SCREENSHOT, SCREENSHOT_SUFFIX, Recorder
from probes.results import FlowResult, StepResult
from probes.safety import TargetPolicy, TargetRefused
from probes.vitals import Snapshot, step_vitals

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page

StepFn = Callable[[str], AbstractAsyncContextManager[None]]
FlowFn = Callable[["Page", StepFn], Awaitable[None]]
GRACE_S = 2.0  # hard step timer = step timeout + this; also how long a health probe may take


class FlowLoadError(Exception):
    """A flow file that cannot be used; the message names the file."""


def load_flow_file(path: str | Path) -> FlowFn:
    """The ``flow`` of a Python file (or a declarative ``.yml``/``.yaml``/``.json`` file)."""
    path = Path(path)
    if not path.is_file():
        raise FlowLoadError(f"{path}: no such flow file")
    if path.suffix in (".yml", ".yaml", ".json"):
        from probes.declarative import DeclarativeError, load_steps_file

        try:
            return load_steps_file(path)
        except DeclarativeError as exc:
            raise FlowLoadError(f"{path}: {exc}") from None
    name = (
        "fieldlab_flow_" + hashlib.sha1(str(path.resolve()).encode(), usedforsecurity=False).hexdigest()[:12]
    )
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FlowLoadError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise FlowLoadError(f"{path}: cannot load: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, "flow", None)
    if fn is None or not inspect.iscoroutinefunction(fn):
        raise FlowLoadError(f"{path}: defines no `async def flow(page, step)`")
    return cast("FlowFn", fn)


async def _call(flow: FlowFn, page: Page, step: StepFn) -> None:
    await flow(page, step)


async def _raw_screenshot(ctx: BrowserContext, page: Page, path: Path) -> None:
    """A screenshot straight from CDP: Playwright's waits for a pending navigation and for
    fonts, which is exactly what a failed page may never finish."""
    # The session is not detached: on a hung page that would wait too; it ends with the context.
    cdp = await ctx.new_cdp_session(page)
    shot = await cdp.send("Page.captureScreenshot", {"format": "png"})
    await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))


def _message(exc: BaseException) -> str:
    """First part of an error: Playwright appends a long call log after the message."""
    text = str(exc).split("\nCall log:", 1)[0].strip() or type(exc).__name__
    if isinstance(exc, AssertionError) and not str(exc):
        text = "assertion failed"
    return text[:1000]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "step"


def _is_timeout(exc: BaseException) -> bool:
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    return isinstance(exc, PlaywrightTimeout)


@dataclass
class _Config:
    flow: FlowFn
    base_url: str
    pool: BrowserPool
    device: str
    throttling: str
    policy: TargetPolicy
    artifacts_dir: Path
    step_timeout_s: float
    run_timeout_s: float
    blocked: list[str]


class _Attempt:
    def __init__(self, cfg: _Config, number: int) -> None:
        self.cfg = cfg
        self.number = number
        self.dir = cfg.artifacts_dir / f"attempt-{number}"
        self.steps: list[StepResult] = []
        self.artifacts: list[str] = []
        self.error: str | None = None
        self.passed = False
        self.hard_timeout: str | None = None  # "step" or "run"
        self.current: StepResult | None = None
        self.last_step: StepResult | None = None
        self.task: asyncio.Task[None] | None = None
        self.recorder: Recorder | None = None
        self.page: Page | None = None
        self.generation = 0
        self.infrastructure = False
        self.timed_out_in: StepResult | None = None
        self._step_start: Snapshot | None = None
        self._step_reports: list[Snapshot] = []

    def _rel(self, path: Path) -> str:
        rel = str(path.relative_to(self.cfg.artifacts_dir))
        self.artifacts.append(rel)
        return rel

    async def run(self, deadline: float) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = self.cfg
        try:
            async with cfg.pool.context(
                device=cfg.device,
                throttling=cfg.throttling,
                base_url=cfg.base_url,
                policy=cfg.policy,
                blocked=cfg.blocked,
            ) as ctx:
                await self._drive(ctx, deadline)
        except ChromiumNotFound:
            raise
        except Exception as exc:
            if self.error is None and not self.passed:
                self.error = f"browser: {_message(exc)}"
                # Before the flow started: the browser could not be launched or set up.
                self.infrastructure = self.task is None

    async def _drive(self, ctx: BrowserContext, deadline: float) -> None:
        cfg = self.cfg
        self.generation = cfg.pool.generation
        page = self.page = ctx.pages[0]
        ctx.set_default_timeout(cfg.step_timeout_s * 1000)
        ctx.set_default_navigation_timeout(cfg.step_timeout_s * 1000)
        self.recorder = Recorder(page, cfg.base_url)
        full = self.number > 1  # see "Traces" above
        await asyncio.gather(
            self.recorder.start(ctx), ctx.tracing.start(screenshots=full, snapshots=full, sources=False)
        )
        self.task = asyncio.get_running_loop().create_task(_call(cfg.flow, page, self.step))
        done, _ = await asyncio.wait({self.task}, timeout=max(deadline - time.monotonic(), 0.0))
        if not done:
            if self.hard_timeout is None:
                self.hard_timeout, self.timed_out_in = "run", self.current
            self.task.cancel()
            await asyncio.wait({self.task}, timeout=GRACE_S)
        exc = None if not self.task.done() or self.task.cancelled() else self.task.exception()
        if self.hard_timeout is not None:
            limit = cfg.step_timeout_s if self.hard_timeout == "step" else cfg.run_timeout_s
            kind = "" if self.hard_timeout == "step" else "run "
            where = f" in step {self.timed_out_in.name!r}" if self.timed_out_in else " between steps"
            self.error = f"{kind}timed out after {limit:g} s{where}"
            await self._evidence(ctx, page, healthy=False)
            await cfg.pool.kill_tree(generation=self.generation)
        elif exc is not None:
            failed = self.last_step if self.last_step and self.last_step.status != "passed" else None
            self.error = (
                f"step {failed.name!r}: {failed.error}" if failed else f"outside any step: {_message(exc)}"
            )
            healthy = await self._healthy(page)
            await self._evidence(ctx, page, healthy=healthy)
            if not healthy:
                await cfg.pool.kill_tree(generation=self.generation)
        else:
            self.passed = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ctx.tracing.stop(), 10)

    async def _healthy(self, page: Page) -> bool:
        try:
            await asyncio.wait_for(page.evaluate("1"), GRACE_S)
            return True
        except Exception:
            return False

    async def _evidence(self, ctx: BrowserContext, page: Page, *, healthy: bool) -> None:
        """Failure screenshot, trace and (if the page answers) the failed step's vitals."""
        shot = self.dir / "failure.png"
        with contextlib.suppress(Exception):
            await asyncio.wait_for(_raw_screenshot(ctx, page, shot), GRACE_S if not healthy else 10)
        if shot.exists():
            rel = self._rel(shot)
            if self.last_step is not None:
                self.last_step.screenshot = rel
        trace = self.dir / "trace.zip"
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ctx.tracing.stop(path=trace), 15 if healthy else 4)
        if trace.exists():
            self._rel(trace)
        if healthy and self.last_step is not None and self.last_step.status != "passed":
            with contextlib.suppress(Exception):
                end = await asyncio.wait_for(self._snapshot(settle=True), GRACE_S)
                self.last_step.navigations = step_vitals(self._step_start, self._step_reports, end)

    # --- steps --------------------------------------------------------------------------------

    async def _snapshot(self, settle: bool = False, paint: bool = False) -> Snapshot | None:
        assert self.recorder is not None
        try:
            return await asyncio.wait_for(self.recorder.snapshot(settle, paint), self.cfg.step_timeout_s)
        except Exception:
            return None  # about:blank, a closed page, a document mid-navigation

    def step(self, name: str) -> AbstractAsyncContextManager[None]:
        return self._step(str(name))

    def _timeout_message(self) -> str:
        if self.hard_timeout == "run":
            return f"run timed out after {self.cfg.run_timeout_s:g} s"
        return f"timed out after {self.cfg.step_timeout_s:g} s"

    def _on_hard_timeout(self) -> None:
        self.hard_timeout, self.timed_out_in = "step", self.current
        if self.task is not None:
            self.task.cancel()

    @asynccontextmanager
    async def _step(self, name: str) -> AsyncIterator[None]:
        if self.current is not None:
            raise RuntimeError(
                f"step {name!r} started inside step {self.current.name!r}: steps cannot be nested"
            )
        assert self.recorder is not None
        assert self.page is not None
        result = StepResult(name=name, started_at=int(time.time() * 1000))
        self.steps.append(result)
        self.current = self.last_step = result
        timer = asyncio.get_running_loop().call_later(
            self.cfg.step_timeout_s + GRACE_S, self._on_hard_timeout
        )
        try:
            self._step_start = await self._snapshot()
            self._step_reports = []
            t0 = time.perf_counter()
            try:
                yield
            except BaseException as exc:
                result.duration_ms = round((time.perf_counter() - t0) * 1000, 1)
                if self.hard_timeout is not None:
                    result.status = "timed-out"
                    result.error = self._timeout_message()
                else:
                    result.status = "timed-out" if _is_timeout(exc) else "failed"
                    result.error = _message(exc)
                self._collect(result)
                raise
            result.duration_ms = round((time.perf_counter() - t0) * 1000, 1)
            shot = self.dir / f"step-{len(self.steps):02d}-{_slug(name)}{SCREENSHOT_SUFFIX}"
            # Together: the screenshot waits for a frame from the compositor, the snapshot for
            # the page's main thread; neither changes what the other sees.
            end, taken = await asyncio.gather(self._snapshot(settle=True), self.recorder.screenshot(shot))
            if not taken:
                taken = await self._playwright_screenshot(shot)
            if end is not None and end.fcp is None:
                # Nothing painted yet when the step ended (a fresh page in a headless browser may
                # not draw until asked): the screenshot has had a frame made since, and its paint
                # timing is reported once that frame is presented.
                end = await self._snapshot(settle=True, paint=True) or end
            self._collect(result)
            result.navigations = step_vitals(self._step_start, self._step_reports, end)
            if taken:
                result.screenshot = self._rel(shot)
        except asyncio.CancelledError:
            if result.status == "passed":  # cancelled while finishing the step
                result.status, result.error = "timed-out", self._timeout_message()
            raise
        finally:
            timer.cancel()
            self.current = None

    async def _playwright_screenshot(self, path: Path) -> bool:
        """Playwright's screenshot follows the page to its new renderer. A page that cannot be
        captured even so leaves its step without a screenshot: the evidence is missing, but
        the site did nothing wrong."""
        from playwright.async_api import Error as PlaywrightError

        assert self.page is not None
        try:
            await self.page.screenshot(path=path, type="jpeg", quality=SCREENSHOT["quality"])
        except PlaywrightError:
            return False
        return True

    def _collect(self, result: StepResult) -> None:
        assert self.recorder is not None
        bucket = self.recorder.take()
        self._step_reports = bucket.reports
        result.resources = bucket.resources
        result.console_errors = bucket.console_errors
        result.failed_requests = bucket.failed_requests


async def run_flow(
    flow: FlowFn,
    *,
    base_url: str,
    pool: BrowserPool,
    device: str = "desktop",
    throttling: str = "none",
    policy: TargetPolicy,
    artifacts_dir: Path,
    step_timeout_s: float = 30.0,
    run_timeout_s: float = 120.0,
    retries: int = 1,
) -> FlowResult:
    """Run ``flow`` against ``base_url`` once (plus up to ``retries`` retries on failure)."""
    started = time.monotonic()
    result = FlowResult(
        status="error",
        started_at=int(time.time() * 1000),
        base_url=base_url,
        device=device,
        throttling=throttling,
    )
    artifacts_dir = Path(artifacts_dir)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    try:
        await policy.check_url_async(base_url)
    except TargetRefused as exc:
        result.error = str(exc)
        return result
    cfg = _Config(
        flow,
        base_url,
        pool,
        device,
        throttling,
        policy,
        artifacts_dir,
        step_timeout_s,
        run_timeout_s,
        result.blocked_requests,
    )
    deadline = started + run_timeout_s
    for number in range(1, max(retries, 0) + 2):
        attempt = _Attempt(cfg, number)
        try:
            await attempt.run(deadline)
        except ChromiumNotFound as exc:
            result.error = str(exc)
            break
        result.attempts = number
        result.steps = attempt.steps
        result.artifacts += attempt.artifacts
        if attempt.passed:
            result.status = "passed" if number == 1 else "flaky"
            result.error = None
            break
        # A browser that cannot even start is not the site's failure.
        result.status = "error" if attempt.infrastructure else "failed"
        result.error = attempt.error
        result.attempt_errors.append(f"attempt {number}: {attempt.error}")
        if attempt.hard_timeout == "run" or time.monotonic() >= deadline:
            break
    result.duration_ms = round((time.monotonic() - started) * 1000, 1)
    return result

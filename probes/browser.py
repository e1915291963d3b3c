"""Find Chromium, keep one warm browser per process, give each run a fresh, guarded context.

A run's context gets the device's viewport and user agent, the throttling profile on every page
(CDP), the target-policy guard on every page and an egress proxy that enforces the policy on all
of its traffic (see :mod:`probes.safety`). Service workers are blocked: their requests bypass
page-level hooks, and a first-visit lab run gets nothing from them anyway.

The browser is launched lazily, relaunched when it died, and can be killed with its whole
process tree (:meth:`BrowserPool.kill_tree`) when a run hangs it. Each launch carries a unique
``--fieldlab-pool=`` switch so its processes can be found in /proc even after re-parenting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probes import procs
from probes.egress import EgressProxy
from probes.safety import TargetPolicy, guard
from probes.throttling import DESKTOP_UA, DEVICES, THROTTLING, Device, Throttling, apply_throttling

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, CDPSession, Page, Playwright

__all__ = [
    "DEVICES",
    "THROTTLING",
    "BrowserPool",
    "ChromiumNotFound",
    "Device",
    "Throttling",
    "find_chromium",
]

LAUNCH_ARGS = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-dev-shm-usage",
)


class ChromiumNotFound(Exception):
    """No usable Chromium; the message is one line saying where it looked."""


def find_chromium(explicit: str | None = None) -> str:
    """``explicit``, else ``$FIELDLAB_CHROMIUM``, else ``chromium``/``chromium-browser`` on PATH."""
    for source, value in (
        ("given path", explicit),
        ("FIELDLAB_CHROMIUM", os.environ.get("FIELDLAB_CHROMIUM")),
    ):
        if value:
            path = shutil.which(value) if os.sep not in value else value
            if not path or not os.path.isfile(path):
                raise ChromiumNotFound(f"Chromium not found at {value} ({source}): no such file")
            if not os.access(path, os.X_OK):
                raise ChromiumNotFound(f"Chromium not found at {value} ({source}): not executable")
            return path
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    raise ChromiumNotFound(
        "Chromium not found at FIELDLAB_CHROMIUM or on PATH (chromium, chromium-browser); install it or set FIELDLAB_CHROMIUM"
    )


def _version(executable: str) -> str:
    """The major version, for a user agent that matches the engine ("130" if unknown)."""
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return "130"
    match = re.search(r"(\d+)\.\d+\.\d+", out)
    return match.group(1) if match else "130"


class BrowserPool:
    """One warm Chromium per pool; ``async with pool.context(...) as ctx`` per run."""

    def __init__(
        self, chromium: str | None = None, *, extra_args: Sequence[str] = (), launch_timeout_s: float = 30.0
    ) -> None:
        self.executable = find_chromium(chromium)
        self.extra_args = tuple(extra_args)
        self.launch_timeout_s = launch_timeout_s
        self.generation = 0  # bumped on every launch: a run can tell its browser was replaced
        self.pid: int | None = None
        self._marker = ""
        self._crashpad: set[int] = set()
        self._singletons: list[str] = []  # removed after a kill or a crash
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._major = ""
        self._lock = asyncio.Lock()

    @property
    def version(self) -> str:
        return self._major or "130"

    async def browser(self) -> Browser:
        """The warm browser, launched now if there is none or the last one died."""
        async with self._lock:
            if self._browser is not None and self._browser.is_connected() and self._alive():
                return self._browser
            if self._browser is not None:  # died on its own: make sure nothing of it lingers
                await self._kill_locked()
            return await self._launch_locked()

    def _alive(self) -> bool:
        """The driver notices a dead browser only after a while; /proc knows at once."""
        if self.pid is None:
            return True
        proc = procs.read_proc(self.pid)
        return proc is not None and proc.state != "Z" and self._marker in proc.cmdline

    async def _launch_locked(self) -> Browser:
        from playwright.async_api import async_playwright

        if self._playwright is None:
            self._playwright, self._major = await asyncio.gather(
                async_playwright().start(), asyncio.to_thread(_version, self.executable)
            )
        playwright = self._playwright
        assert playwright is not None
        self._marker = f"--fieldlab-pool={uuid.uuid4().hex}"
        args = [
            *LAUNCH_ARGS,
            self._marker,
            f"--user-agent={DESKTOP_UA.format(v=self.version)}",
            *self.extra_args,
        ]
        if os.geteuid() == 0:
            args.append("--no-sandbox")
        crashpad_before = _crashpad_pids()
        self._browser = await playwright.chromium.launch(
            executable_path=self.executable, args=args, timeout=self.launch_timeout_s * 1000
        )
        self.generation += 1
        found = [p for p in procs.chromium_processes(marker=self._marker) if self._marker in p.cmdline]
        self.pid = found[0].pid if found else None
        self._singletons = procs.singleton_dirs(found[0]) if found else []
        self._crashpad = _crashpad_pids() - crashpad_before
        return self._browser

    async def kill_tree(self, *, generation: int | None = None) -> list[int]:
        """SIGKILL the browser and every process below it, reap them; the next run relaunches.
        ``generation``: only if that launch is still the current one (a run must not kill the
        fresh browser another run started after its own was killed)."""
        async with self._lock:
            if generation is not None and generation != self.generation:
                return []
            return await self._kill_locked()

    async def _kill_locked(self) -> list[int]:
        killed: list[int] = []
        # Only a pid that still carries our marker: a browser that died on its own may have
        # had its pid reused by an unrelated process meanwhile.
        if self.pid is not None and self._alive():
            extra = [pid for pid in self._crashpad if pid in _crashpad_pids()]
            killed = await asyncio.to_thread(procs.kill_tree, self.pid, extra=extra)
        # Anything still carrying our marker (e.g. re-parented before we looked) goes too.
        if self._marker:
            for p in procs.chromium_processes(marker=self._marker):
                killed += await asyncio.to_thread(procs.kill_tree, p.pid)
        procs.remove_dead_singletons(self._singletons)
        browser, self._browser, self.pid = self._browser, None, None
        if browser is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(browser.close(), 5)
        return killed

    async def close(self) -> None:
        """Close the browser (killing it if it does not close in time) and the driver."""
        async with self._lock:
            if self._browser is not None:
                try:
                    await asyncio.wait_for(self._browser.close(), 10)
                except Exception:
                    await self._kill_locked()
                else:
                    self._browser = None
            if self._marker and procs.chromium_processes(marker=self._marker):
                await self._kill_locked()
            self.pid = None
            if self._playwright is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._playwright.stop(), 10)
                self._playwright = None

    @asynccontextmanager
    async def context(
        self,
        *,
        device: str = "desktop",
        throttling: str = "none",
        base_url: str | None = None,
        policy: TargetPolicy | None = None,
        blocked: list[str] | None = None,
        **options: Any,
    ) -> AsyncIterator[BrowserContext]:
        """A new context with one page (``ctx.pages[0]``) already throttled and guarded.

        ``policy`` given: every request is checked (page guard + egress proxy) and refused URLs
        are appended to ``blocked``. On exit the context is closed; if that hangs, the whole
        browser tree is killed."""
        if device not in DEVICES:
            raise ValueError(f"device: must be one of {', '.join(DEVICES)}, not {device!r}")
        if throttling not in THROTTLING:
            raise ValueError(f"throttling: must be one of {', '.join(THROTTLING)}, not {throttling!r}")
        profile = THROTTLING[throttling]
        blocked = [] if blocked is None else blocked
        browser = await self.browser()
        generation = self.generation
        proxy = EgressProxy(policy, blocked) if policy is not None else None
        ctx: BrowserContext | None = None
        sessions: list[CDPSession] = []  # throttling lives as long as its session
        tasks: set[asyncio.Task[None]] = set()
        try:
            if proxy is not None:
                options["proxy"] = {"server": await proxy.start(), "bypass": "<-loopback>"}
            if base_url:
                options["base_url"] = base_url
            ctx = await browser.new_context(
                **DEVICES[device].context_options(self.version), service_workers="block", **options
            )
            page = await ctx.new_page()
            if (cdp := await apply_throttling(page, profile)) is not None:
                sessions.append(cdp)

            def on_page(popup: Page) -> None:
                if popup is not page:
                    task = asyncio.get_running_loop().create_task(_throttle_popup(popup, profile, sessions))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)

            ctx.on("page", on_page)
            if policy is not None:
                await guard(ctx, policy, blocked)
            yield ctx
        finally:
            if ctx is not None and browser.is_connected():
                try:
                    await asyncio.wait_for(ctx.close(), 10)
                except Exception:
                    await self.kill_tree(generation=generation)
            if proxy is not None:
                await proxy.close()
            sessions.clear()


async def _throttle_popup(page: Page, profile: Throttling, sessions: list[CDPSession]) -> None:
    with contextlib.suppress(Exception):
        if (cdp := await apply_throttling(page, profile)) is not None:
            sessions.append(cdp)


def _crashpad_pids() -> set[int]:
    """Crashpad handlers Chromium double-forks (so they hang off PID 1); they are ours if they
    appeared during our launch."""
    found = set()
    for p in procs.all_procs().values():
        if p.ppid == 1 and p.state != "Z" and "crashpad" in Path(p.exe or (p.cmdline[:1] or [""])[0]).name:
            found.add(p.pid)
    return found

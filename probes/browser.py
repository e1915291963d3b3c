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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probes import procs
from probes.egress import EgressProxy
from probes.safety import TargetPolicy, guard, record
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
    """One warm Chromium per pool; ``async with pool.context(...) as ctx`` per run.

    ``prewarm``: when two runs in a row asked for the same kind of context (device, throttling,
    target, policy, options), the next one - context, page, throttling, guard and egress proxy -
    is prepared in the background as soon as the second is done, so a run that comes after a
    pause finds it ready instead of paying for it on its own clock. It is the same work, done
    earlier: back-to-back runs gain little. Each run still gets a context no page has used; a
    spare of another kind is closed unused, which is why one run alone does not make one."""

    def __init__(
        self,
        chromium: str | None = None,
        *,
        extra_args: Sequence[str] = (),
        launch_timeout_s: float = 30.0,
        prewarm: bool = True,
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
        self.prewarm = prewarm
        self._last_key: tuple[Any, ...] | None = None
        self._spare: tuple[tuple[Any, ...], asyncio.Task[_Ready]] | None = None
        self._chores: set[asyncio.Task[None]] = set()  # spares being closed

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
        if self._spare is not None:  # it dies with the browser; its task cleans up after itself
            (_, task), self._spare = self._spare, None
            task.cancel()
            self._discard(task)
        killed: list[int] = []
        # Only a pid that still carries our marker: a browser that died on its own may have
        # had its pid reused by an unrelated process meanwhile.
        if self.pid is not None and self._alive():
            extra = [pid for pid in self._crashpad if pid in _crashpad_pids()]
            killed = await asyncio.to_thread(procs.kill_tree, self.pid, extra=extra)
        # Anything still carrying our marker (e.g. re-parented before we looked) goes too.
        for p in self._own_processes():
            killed += await asyncio.to_thread(procs.kill_tree, p.pid)
        procs.remove_dead_singletons(self._singletons)
        browser, self._browser, self.pid = self._browser, None, None
        if browser is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(browser.close(), 5)
        return killed

    def _own_processes(self) -> list[procs.Proc]:
        """This pool's live Chromium processes: those carrying its marker and all below them.
        Not ``procs.chromium_processes(marker=...)``, which also lists every Chromium below
        this Python process - another pool's browser, a Lighthouse audit's - so a pool that
        closed or killed with it took those down too."""
        if not self._marker:
            return []
        table = procs.all_procs()
        found: dict[int, procs.Proc] = {}
        for p in table.values():
            if p.is_chromium and self._marker in p.cmdline:
                found[p.pid] = p
                found.update((d.pid, d) for d in procs.descendants(p.pid, table))
        return [p for p in found.values() if p.state != "Z"]

    async def close(self) -> None:
        """Close the browser (killing it if it does not close in time) and the driver."""
        await self._drop_spare()
        async with self._lock:
            if self._browser is not None:
                try:
                    await asyncio.wait_for(self._browser.close(), 10)
                except Exception:
                    await self._kill_locked()
                else:
                    self._browser = None
            if self._own_processes():
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
        are appended to ``blocked`` (when the context is done). On exit the context is closed;
        if that hangs, the whole browser tree is killed. The context may have been prepared
        while the browser was idle (see :class:`BrowserPool`), but no page has used it."""
        if device not in DEVICES:
            raise ValueError(f"device: must be one of {', '.join(DEVICES)}, not {device!r}")
        if throttling not in THROTTLING:
            raise ValueError(f"throttling: must be one of {', '.join(THROTTLING)}, not {throttling!r}")
        spec = _Spec(device, throttling, base_url, policy, repr(sorted(options.items())), options)
        again, self._last_key = spec.key == self._last_key, spec.key
        ready = await self._take_spare(spec)
        if ready is None:
            browser = await self.browser()
            ready = await self._prepare(browser, spec)
        done = False
        try:
            yield ready.ctx
            done = True
        finally:
            await self._dispose(ready)
            if blocked is not None:
                for url in ready.blocked:
                    record(blocked, url)
            if done and again and self.prewarm:
                self._make_spare(spec)

    # --- the spare context ------------------------------------------------------------------

    def _make_spare(self, spec: _Spec) -> None:
        browser = self._browser
        if self._spare is not None or browser is None or not browser.is_connected():
            return
        task = asyncio.get_running_loop().create_task(self._prepare(browser, spec))
        self._spare = (spec.key, task)

    async def _take_spare(self, spec: _Spec) -> _Ready | None:
        if self._spare is None:
            return None
        (key, task), self._spare = self._spare, None
        if key == spec.key:
            try:
                ready = await asyncio.shield(task)
            except asyncio.CancelledError:
                self._discard(task)
                if task.cancelled():  # by a kill or close, not the caller's cancellation
                    return None
                raise
            except Exception:
                return None  # e.g. the browser died meanwhile: a fresh one, the usual way
            try:
                browser = await self.browser()  # relaunches a dead one, bumping the generation
            except BaseException:
                self._discard(task)
                raise
            if ready.generation == self.generation and ready.browser is browser:
                return ready
        self._discard(task)
        return None

    def _discard(self, task: asyncio.Task[_Ready]) -> None:
        """Close a spare nobody will use, once it is ready (in the background)."""

        async def dispose() -> None:
            with contextlib.suppress(BaseException):
                await self._dispose(await task)

        chore = asyncio.get_running_loop().create_task(dispose())
        self._chores.add(chore)
        chore.add_done_callback(self._chores.discard)

    async def _drop_spare(self) -> None:
        if self._spare is not None:
            (_, task), self._spare = self._spare, None
            task.cancel()
            self._discard(task)
        if self._chores:
            await asyncio.wait(set(self._chores), timeout=15)

    async def _prepare(self, browser: Browser, spec: _Spec) -> _Ready:
        generation = self.generation
        profile = THROTTLING[spec.throttling]
        blocked: list[str] = []
        proxy = EgressProxy(spec.policy, blocked) if spec.policy is not None else None
        sessions: list[CDPSession] = []
        tasks: set[asyncio.Task[None]] = set()
        ctx: BrowserContext | None = None
        options = dict(spec.options)
        try:
            if proxy is not None:
                options["proxy"] = {"server": await proxy.start(), "bypass": "<-loopback>"}
            if spec.base_url:
                options["base_url"] = spec.base_url
            ctx = await browser.new_context(
                **DEVICES[spec.device].context_options(self.version), service_workers="block", **options
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
            if spec.policy is not None:
                await guard(ctx, spec.policy, blocked)
            return _Ready(browser, generation, ctx, proxy, blocked, sessions, tasks)
        except BaseException:
            if ctx is not None and browser.is_connected():
                try:
                    await asyncio.wait_for(ctx.close(), 10)
                except Exception:
                    await self.kill_tree(generation=generation)
            if proxy is not None:
                await proxy.close()
            raise

    async def _dispose(self, ready: _Ready) -> None:
        if ready.browser.is_connected():
            try:
                await asyncio.wait_for(ready.ctx.close(), 10)
            except Exception:
                await self.kill_tree(generation=ready.generation)
        if ready.proxy is not None:
            await ready.proxy.close()
        ready.sessions.clear()


@dataclass(frozen=True)
class _Spec:
    """What a context is made for; two runs with the same ``key`` can use the same kind."""

    device: str
    throttling: str
    base_url: str | None
    policy: TargetPolicy | None
    options_key: str
    options: dict[str, Any]

    @property
    def key(self) -> tuple[Any, ...]:
        # The policy by identity: a spare is guarded by the very policy object the run was given.
        return (self.device, self.throttling, self.base_url, id(self.policy), self.options_key)


@dataclass
class _Ready:
    """A context with its page, throttled and guarded, and what must live as long as it."""

    browser: Browser
    generation: int
    ctx: BrowserContext
    proxy: EgressProxy | None
    blocked: list[str]
    sessions: list[CDPSession]  # throttling lives as long as its session
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


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

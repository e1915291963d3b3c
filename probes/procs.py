"""Process-tree bookkeeping from /proc (psutil is not a dependency): find a browser's
descendants, kill them all, reap what became ours, and count leftovers.

Chromium forks a zygote that forks renderers, and Lighthouse's chrome-launcher starts Chrome
detached in its own session, so neither "kill the process group" nor "kill the child" reaches
everything. The tree is snapshotted first and every member gets SIGKILL; while that happens this
process is a child subreaper, so members orphaned by the kill are re-parented to us (not to PID
1, which in some containers never reaps) and are reaped here.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


@dataclass(frozen=True, slots=True)
class Proc:
    pid: int
    ppid: int
    state: str
    exe: str
    cmdline: tuple[str, ...]

    @property
    def is_chromium(self) -> bool:
        names = (self.exe, self.cmdline[0] if self.cmdline else "")
        return any("chrom" in os.path.basename(n).lower() for n in names)


def read_proc(pid: int) -> Proc | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name in parentheses may itself contain spaces or parentheses.
    fields = stat.rsplit(")", 1)[1].split()
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = ""  # zombies and other users' processes
    args = tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)
    return Proc(pid=pid, ppid=int(fields[1]), state=fields[0], exe=exe, cmdline=args)


def all_procs() -> dict[int, Proc]:
    procs: dict[int, Proc] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (p := read_proc(int(name))) is not None:
            procs[p.pid] = p
    return procs


def descendants(root: int, procs: dict[int, Proc] | None = None) -> list[Proc]:
    """Every process below ``root`` (not ``root`` itself), parents before children."""
    procs = all_procs() if procs is None else procs
    children: dict[int, list[Proc]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p)
    found: list[Proc] = []
    queue = [root]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child.pid)
    return found


def chromium_processes(root: int | None = None, *, marker: str | None = None) -> list[Proc]:
    """Live (non-zombie) Chromium processes below ``root`` (default: this process), plus
    orphans re-parented to PID 1 whose command line carries ``marker`` (a browser of ours)."""
    procs = all_procs()
    found = {p.pid: p for p in descendants(os.getpid() if root is None else root, procs) if p.is_chromium}
    if marker:
        for p in procs.values():
            if p.is_chromium and any(marker in a for a in p.cmdline):
                found[p.pid] = p
                found.update((d.pid, d) for d in descendants(p.pid, procs))
    return [p for p in found.values() if p.state != "Z"]


def _prctl(option: int, arg: int) -> int:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if option == _PR_GET_CHILD_SUBREAPER:
            value = ctypes.c_int(0)
            libc.prctl(option, ctypes.byref(value), 0, 0, 0)
            return value.value
        return int(libc.prctl(option, arg, 0, 0, 0))
    except (OSError, AttributeError):
        return -1


def _freeze(root: int, include_root: bool, extra: Iterable[int]) -> list[Proc]:
    """SIGSTOP ``root``, its descendants and ``extra``, snapshotting again until a snapshot
    finds nothing new: a process forked between a snapshot and its parent's stop (Lighthouse's
    chrome-launcher starting Chrome, Chrome starting a renderer) is caught by the next one. Once
    all are stopped, none can fork, and none can die and orphan an unseen child to PID 1."""
    stopped: dict[int, Proc] = {}
    for _ in range(20):
        procs = all_procs()
        tree = descendants(root, procs)
        if include_root and root in procs:
            tree.insert(0, procs[root])
        tree.extend(procs[pid] for pid in extra if pid in procs)
        new = [p for p in tree if p.pid not in stopped]
        if not new:
            break
        for p in new:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p.pid, signal.SIGSTOP)
            stopped[p.pid] = p
    return list(stopped.values())


def kill_tree(
    root: int, *, include_root: bool = True, extra: Iterable[int] = (), timeout_s: float = 5.0
) -> list[int]:
    """SIGKILL ``root`` and all its descendants (plus ``extra`` pids), wait until they are
    gone and reap those that ended up as our children. Returns the pids that were signalled.

    The tree is frozen first (see ``_freeze``): killed one by one while it still runs, a parent
    could start a child after the snapshot, or die first and hand a child to PID 1, out of reach.
    A pid that was our own child before the kill (e.g. an ``asyncio`` subprocess) is left to
    its owner to reap, so this never steals an exit status from ``subprocess``/``asyncio``.
    """
    me = os.getpid()
    was_subreaper = _prctl(_PR_GET_CHILD_SUBREAPER, 0) == 1
    if not was_subreaper:
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    try:
        tree = _freeze(root, include_root, extra)
        owned_before = {p.pid for p in tree if p.ppid == me}
        leftovers = [d for p in tree for d in singleton_dirs(p)]
        for p in tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p.pid, signal.SIGKILL)
        members = {p.pid for p in tree}
        pending = set(members)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for pid in list(pending):
                now = read_proc(pid)
                if now is None:
                    pending.discard(pid)
                elif now.state != "Z" or now.ppid in members:
                    # Still dying, or its parent is (a dying multi-threaded parent keeps its
                    # children until its last thread exits): it will be re-parented to us.
                    continue
                elif now.ppid != me or pid in owned_before:
                    pending.discard(pid)  # a living parent (the Playwright driver, asyncio) reaps it
                else:
                    with contextlib.suppress(ChildProcessError, OSError):
                        os.waitpid(pid, os.WNOHANG)
            if pending:
                time.sleep(0.02)
    finally:
        if not was_subreaper:
            _prctl(_PR_SET_CHILD_SUBREAPER, 0)
    remove_dead_singletons(leftovers)
    return [p.pid for p in tree]


def singleton_dirs(p: Proc) -> list[str]:
    """A Chromium browser process's /tmp/org.chromium.Chromium.* socket dir: removed on a
    clean exit, left behind by SIGKILL."""
    if not p.is_chromium or any(a.startswith("--type=") for a in p.cmdline):
        return []
    found = []
    for arg in p.cmdline:
        if arg.startswith("--user-data-dir="):
            try:
                target = os.readlink(os.path.join(arg.split("=", 1)[1], "SingletonSocket"))
            except OSError:
                continue
            parent = os.path.dirname(target)
            if os.path.basename(parent).startswith("org.chromium.Chromium."):
                found.append(parent)
    return found


def singleton_dirs_now() -> set[str]:
    tmp = tempfile.gettempdir()
    return {os.path.join(tmp, n) for n in os.listdir(tmp) if n.startswith("org.chromium.Chromium.")}


def remove_dead_singletons(dirs: Iterable[str]) -> None:
    """Remove Chromium singleton dirs whose socket no process has bound any more (a SIGKILLed
    or SIGTERMed Chromium leaves them in /tmp, one per launch)."""
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as f:
            bound = f.read()
    except OSError:
        return
    for d in dirs:
        if os.path.join(d, "SingletonSocket") not in bound:
            shutil.rmtree(d, ignore_errors=True)

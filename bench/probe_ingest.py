"""Beacon ingest while Lighthouse audits run: the second half of bench/probe_bench.py.

fieldlab runs as production runs it (``python -m app serve``, SQLite, one worker, rate limiting
on) and gets wrk + bench/beacon.lua load in windows of the same length, alternating idle and
during back-to-back Lighthouse audits, idle first and last: each audit window is compared with
the idle windows either side of it, so a drift in the box's other load shows instead of being
mistaken for the audit's effect.

The audits run where production runs them: by default through fieldlab's own scheduler
(``POST /api/v1/checks/{id}/run`` of a Lighthouse check), i.e. ``probes.lighthouse.run_lighthouse``
in the server process with its egress proxy on the server's event loop. ``--audit-via bench``
runs ``run_lighthouse`` in the benchmark process instead (only the CPU competition, no shared
event loop). A sampler watches /proc for the Lighthouse processes, so the report says how much
of the window an audit was really running (one audit per machine: another job's audit holding
the lock would show as low coverage) and how many cores it used.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from beacon_harness import (
    CLEAN_EXIT,
    BenchError,
    Load,
    Procs,
    count_stored,
    finish_wrk,
    free_port,
    fresh_database,
    http,
    process_cpu_s,
    start_wrk,
    system_busy_s,
    tail,
    tree_cpu_s,
    wait_up,
)

from probes import procs as proc_table

ORIGIN = "https://shop.example"
RATE_LIMIT = 10_000_000  # far above the offered load: both limiters still run, nothing is throttled
GOAL_SHARE = 0.60  # beacons/s during an audit >= 60 % of idle


@dataclass
class Window:
    name: str
    load: Load
    audit_coverage: float  # share of the window's samples with a Lighthouse process alive
    cores: dict[str, float]  # box, server (without Lighthouse), wrk, lighthouse, other
    tag: str
    stored: int | None = None  # distinct page views of this window, read after the server exited
    lost: int | None = None  # answered 2xx but not stored


@dataclass
class Audit:
    started_s: float  # since the benchmark's clock start
    ended_s: float
    status: str
    error: str | None = None
    performance: float | None = None


@dataclass
class IngestOptions:
    seconds: int
    rounds: int  # audit windows; each between two idle windows
    connections: int
    threads: int
    audit_via: str  # server | bench
    preset: str


class LighthouseSampler(threading.Thread):
    """Every 0.2 s: is a Lighthouse CLI (or its Chrome) running below ``root``, and how much
    CPU have those processes used. A process's last reading before it exits is what counts,
    so up to 0.2 s of each process's CPU is missed (an underestimate, not an overestimate)."""

    def __init__(self, root: int) -> None:
        super().__init__(name="lighthouse-sampler", daemon=True)
        self.root = root
        self.cpu: dict[int, float] = {}  # pid -> last cumulative CPU seconds seen
        self.pids: set[int] = set()
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._samples = self._hits = 0
        self._base: dict[int, float] = {}

    def _roots(self) -> list[proc_table.Proc]:
        return [
            p
            for p in proc_table.descendants(self.root)
            if not p.is_chromium and any("lighthouse" in a for a in p.cmdline)
        ]

    def run(self) -> None:
        while not self._halt.wait(0.2):
            roots = self._roots()
            seen: dict[int, float] = {}
            for p in roots:
                seen.update(process_cpu_s(p.pid))
            with self._lock:
                self._samples += 1
                self._hits += bool(roots)
                self.pids.update(seen)
                for pid, used in seen.items():
                    self.cpu[pid] = max(used, self.cpu.get(pid, 0.0))

    def begin(self) -> None:
        with self._lock:
            self._samples = self._hits = 0
            self._base = dict(self.cpu)

    def end(self) -> tuple[float, float]:
        """(coverage, CPU seconds) since :meth:`begin`."""
        with self._lock:
            used = sum(v - self._base.get(pid, 0.0) for pid, v in self.cpu.items())
            return (self._hits / self._samples if self._samples else 0.0), used

    def running(self) -> bool:
        with self._lock:
            return bool(self._hits)

    def stop(self) -> None:
        """Stop sampling; an audit still running (the benchmark was interrupted) is killed,
        Chrome included: the CLI runs in its own session, so nothing else would end it."""
        self._halt.set()
        self.join(2)
        for p in self._roots():
            proc_table.kill_tree(p.pid)


class AuditLoop(threading.Thread):
    """Back-to-back audits (one Lighthouse run each) until :meth:`finish`; the audit in
    progress is allowed to end, so the next window starts on a quiet server."""

    def __init__(
        self,
        via: str,
        page: str,
        *,
        base: str,
        admin: str,
        preset: str,
        out: Path,
        t0: float,
        check_id: int | None,
    ) -> None:
        super().__init__(name="audit-loop", daemon=True)
        self.via, self.page, self.base, self.admin, self.preset, self.out, self.t0 = (
            via, page, base, admin, preset, out, t0,
        )  # fmt: skip
        self.audits: list[Audit] = []
        self.failure: str | None = None
        self._halt = threading.Event()
        self.check_id = check_id

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                started = time.monotonic() - self.t0
                status, error, perf = self._server_audit() if self.via == "server" else self._bench_audit()
                self.audits.append(
                    Audit(round(started, 2), round(time.monotonic() - self.t0, 2), status, error, perf)
                )
        except Exception as exc:  # reported by the benchmark, which then stops
            self.failure = f"{type(exc).__name__}: {exc}"

    def finish(self, timeout_s: float = 180) -> None:
        self._halt.set()
        self.join(timeout_s)
        if self.is_alive():
            raise BenchError(f"the audit in progress did not end within {timeout_s:g} s")

    # --- through fieldlab's scheduler --------------------------------------------------------

    def _server_audit(self) -> tuple[str, str | None, float | None]:
        run = _api(self.base, self.admin, "POST", f"/api/v1/checks/{self.check_id}/run")
        while run["status"] == "running":
            time.sleep(0.2)
            run = _api(self.base, self.admin, "GET", f"/api/v1/runs/{run['id']}")
        scores = (run.get("result") or {}).get("scores") or {}
        return run["status"], run.get("error"), scores.get("performance")

    # --- in this process ---------------------------------------------------------------------

    def _bench_audit(self) -> tuple[str, str | None, float | None]:
        from probes.browser import find_chromium
        from probes.lighthouse import run_lighthouse
        from probes.safety import TargetPolicy

        host = self.page.split("//", 1)[1].split("/", 1)[0]
        result = asyncio.run(
            run_lighthouse(
                self.page,
                chromium=find_chromium(),
                preset=self.preset,
                runs=1,
                output_dir=self.out / f"audit-{len(self.audits) + 1}",
                policy=TargetPolicy(allow_hosts=[host]),
            )
        )
        return result.status, result.error, result.scores.get("performance")


def _env(tmp: Path, admin: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FIELDLAB_", "PROMETHEUS_MULTIPROC_DIR"))}
    env.update(
        FIELDLAB_ADMIN_TOKEN=admin,
        FIELDLAB_RATE_LIMIT_PER_IP=str(RATE_LIMIT),
        FIELDLAB_RATE_LIMIT_PER_SITE=str(RATE_LIMIT),
        FIELDLAB_ALLOW_PRIVATE_TARGETS="1",  # the audited page is the benchmark's own, on 127.0.0.1
        FIELDLAB_DATA_DIR=str(tmp / "data"),
        FIELDLAB_FLOWS_DIR=str(tmp / "checks"),
    )
    return env


def _window(
    name: str,
    opts: IngestOptions,
    procs: Procs,
    server_pid: int,
    base: str,
    key: str,
    sampler: LighthouseSampler,
) -> Window:
    tag = f"{name[0]}{secrets.token_hex(3)}"
    cpu0, busy0 = process_cpu_s(server_pid), system_busy_s()
    sampler.begin()
    # wrk's own duration is a backstop; it is stopped (and reports) after the window.
    wrk = start_wrk(procs, base, key, tag, seconds=opts.seconds + 60, connections=opts.connections,
                    threads=opts.threads)  # fmt: skip
    started = time.monotonic()
    time.sleep(opts.seconds)
    cpu1 = process_cpu_s(server_pid)
    wrk_cpu, busy = tree_cpu_s(wrk.pid), system_busy_s() - busy0
    elapsed = time.monotonic() - started
    coverage, lh_cpu = sampler.end()
    load = finish_wrk(procs, wrk, interrupt=True, seconds=elapsed)
    server_cpu = sum(v - cpu0.get(p, 0.0) for p, v in cpu1.items() if p not in sampler.pids)
    cores = {"box": busy, "server": server_cpu, "wrk": wrk_cpu, "lighthouse": lh_cpu}
    cores["other"] = max(0.0, busy - server_cpu - wrk_cpu - lh_cpu)
    return Window(name, load, round(coverage, 3), {k: round(v / elapsed, 2) for k, v in cores.items()}, tag)


def _api(base: str, admin: str, method: str, path: str, body: Any = None) -> Any:
    status, raw = http(
        method, base + path, body=body, headers={"Authorization": f"Bearer {admin}"}, timeout=10
    )
    if status >= 300:
        raise BenchError(f"{method} {path} answered {status}: {raw[:300]!r}")
    return json.loads(raw)


def _audit_window(name: str, loop: AuditLoop, sampler: LighthouseSampler, measure: Any) -> Window:
    """Start back-to-back audits, measure once one is seen running, let the last one end."""
    loop.start()
    deadline = time.monotonic() + 90  # Lighthouse may queue behind another job's audit (the lock)
    while not sampler.running() and loop.failure is None and time.monotonic() < deadline:
        sampler.begin()
        time.sleep(0.3)
    if loop.failure or not sampler.running():
        loop.finish()
        raise BenchError(f"no Lighthouse audit started: {loop.failure or 'none seen in 90 s'}")
    window: Window = measure(name)
    loop.finish()
    if loop.failure:
        raise BenchError(f"audit loop failed: {loop.failure}")
    time.sleep(0.5)
    return window


def run_ingest(opts: IngestOptions, page: str, procs: Procs, log: Any = print) -> dict[str, Any]:
    """Idle and audit windows, alternating (idle first and last), against one fieldlab server."""
    t0 = time.monotonic()
    windows: list[Window] = []
    audits: list[Audit] = []
    with tempfile.TemporaryDirectory(prefix="fieldlab-probe-bench-") as tmp_name:
        tmp = Path(tmp_name)
        admin = secrets.token_urlsafe(16)
        env = _env(tmp, admin)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server_log = tmp / "fieldlab.log"
        with fresh_database("sqlite", tmp, procs, env) as url:
            env["FIELDLAB_DATABASE_URL"] = url
            argv = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
            proc = procs.start([*argv, "--workers", "1"], env=env, log=server_log)
            sampler = LighthouseSampler(proc.pid if opts.audit_via == "server" else os.getpid())
            sampler.start()
            try:
                wait_up(proc, f"{base}/readyz", server_log, want=200, timeout=90)
                site = _api(base, admin, "POST", "/api/v1/sites", {"name": "bench-shop", "origins": [ORIGIN]})
                key = site["key"]
                check_id = None
                if opts.audit_via == "server":
                    check = {"name": "bench-audit", "kind": "lighthouse", "target": page, "runs": 1,
                             "device": opts.preset}  # fmt: skip
                    check_id = int(_api(base, admin, "POST", "/api/v1/checks", check)["id"])
                kw: dict[str, Any] = {"connections": opts.connections, "threads": opts.threads}
                warm = finish_wrk(
                    procs, start_wrk(procs, base, key, "warm", seconds=5, **kw), interrupt=False
                )
                if warm.ok == 0:
                    raise BenchError(f"no 2xx during warm-up: {warm.non_2xx} {warm.first_error}")
                time.sleep(0.5)

                def measure(name: str) -> Window:
                    log(f"  {name} ({opts.seconds}s) ...")
                    return _window(name, opts, procs, proc.pid, base, key, sampler)

                for r in range(1, opts.rounds + 1):
                    windows.append(measure(f"idle-{r}"))
                    loop = AuditLoop(opts.audit_via, page, base=base, admin=admin, preset=opts.preset,
                                     out=tmp, t0=t0, check_id=check_id)  # fmt: skip
                    windows.append(_audit_window(f"audit-{r}", loop, sampler, measure))
                    audits += loop.audits
                windows.append(measure(f"idle-{opts.rounds + 1}"))
            finally:
                sampler.stop()
                stop_rc = procs.stop(proc, grace_s=45)
            if stop_rc not in CLEAN_EXIT:
                print(
                    f"  ! fieldlab did not shut down cleanly (exit {stop_rc}):\n{tail(server_log)}",
                    file=sys.stderr,
                )
            for w in windows:
                w.stored = count_stored(url, w.tag)
                # Beacons in flight when wrk was stopped are stored but never counted as answered.
                w.lost = max(0, w.load.ok - w.stored)
    return summarise(windows, audits, opts, stop_rc)


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 2)


def summarise(
    windows: list[Window], audits: list[Audit], opts: IngestOptions, stop_rc: int
) -> dict[str, Any]:
    idle = [w for w in windows if w.name.startswith("idle")]
    busy = [w for w in windows if w.name.startswith("audit")]
    idle_rps, during_rps = _mean([w.load.rps_2xx for w in idle]), _mean([w.load.rps_2xx for w in busy])
    share = during_rps / idle_rps if idle_rps else 0.0
    # Each audit window against the idle windows either side of it (drift cancels out).
    per_round = [
        round(busy[i].load.rps_2xx / _mean([idle[i].load.rps_2xx, idle[i + 1].load.rps_2xx]), 3)
        for i in range(len(busy))
    ]
    return {
        "options": asdict(opts),
        "windows": [asdict(w) for w in windows],
        "audits": [asdict(a) for a in audits],
        "audits_failed": sum(a.status != "passed" for a in audits),
        "idle_rps": idle_rps,
        "idle_rps_min": min(w.load.rps_2xx for w in idle),
        "idle_rps_max": max(w.load.rps_2xx for w in idle),
        "during_rps": during_rps,
        "share": round(share, 3),
        "share_per_round": per_round,
        # Means of the windows' own percentiles.
        "idle_p50_ms": _mean([w.load.p50_ms for w in idle]),
        "idle_p99_ms": _mean([w.load.p99_ms for w in idle]),
        "during_p50_ms": _mean([w.load.p50_ms for w in busy]),
        "during_p99_ms": _mean([w.load.p99_ms for w in busy]),
        "audit_coverage": _mean([w.audit_coverage for w in busy]),
        "lost": sum(w.lost or 0 for w in windows),
        "server_stop_rc": stop_rc,
        "goal_share_min": GOAL_SHARE,
        "passed": share >= GOAL_SHARE and all(w.lost == 0 for w in windows),
    }

"""Lighthouse audits: the npm CLI as a subprocess, N runs, the representative run picked as
Lighthouse CI picks it, reports kept compressed.

* One audit at a time per machine (numbers from concurrent audits on a 2-core box are noise):
  an asyncio lock in-process plus an exclusive ``flock`` on a lock file across processes, so the
  server's scheduler and a ``fieldlab gate`` on the same box queue behind each other.
* Each run has a hard timeout (a hung audit, Lighthouse issue #11615, never ends by itself). The
  CLI runs in its own session; chrome-launcher starts Chrome *detached* (another session), so the
  kill walks the process tree in /proc rather than trusting process groups.
* The target policy is checked first, and Chrome's traffic goes through the policy-enforcing
  egress proxy (:mod:`probes.egress`), so a redirect to a metadata address cannot end up in the
  report's screenshots.
* Lighthouse's CPU slowdown (4x on mobile) emulates its reference phone only on a host of about
  its reference speed; each result records the host's ``benchmark_index`` and the slowdown used,
  and ``cpu_slowdown`` overrides the preset's for hosts that are much slower or faster;
  ``cpu_slowdown="auto"`` calibrates it to the host (:class:`HostCalibration`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gzip
import json
import math
import os
import shutil
import statistics
import tempfile
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from probes import procs
from probes.egress import EgressProxy
from probes.safety import TargetPolicy, TargetRefused

METRICS = (
    "first-contentful-paint", "largest-contentful-paint", "total-blocking-time", "cumulative-layout-shift",
    "speed-index", "interactive", "server-response-time",
)  # fmt: skip
PRESETS = ("mobile", "desktop")
MAX_CPU_SLOWDOWN = 20.0
# The host benchmarkIndex at which the mobile preset's 4x CPU slowdown emulates Lighthouse's
# reference phone (Lighthouse's CPU-throttling calculator puts 4x at about this speed).
REFERENCE_BENCHMARK_INDEX = 1500.0
MOBILE_CPU_SLOWDOWN = 4.0


SLOW_HOST_FACTOR = 1.5  # where Lighthouse's own slow-host warning starts at its default 4x


def calibrated_slowdown(benchmark_index: float) -> float:
    """The mobile CPU slowdown that emulates the reference phone on a host of this speed."""
    wanted = MOBILE_CPU_SLOWDOWN * benchmark_index / REFERENCE_BENCHMARK_INDEX
    return round(min(MAX_CPU_SLOWDOWN, max(1.0, wanted)), 1)


def slow_host_hint(benchmark_index: Any, cpu_slowdown: Any) -> str | None:
    """For a mobile audit: a sentence saying that it stands for a phone over SLOW_HOST_FACTOR
    times slower than Lighthouse's reference, because its host was slow for the slowdown used,
    and which FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN calibrates it; None if it does not."""
    if not isinstance(benchmark_index, int | float) or not isinstance(cpu_slowdown, int | float):
        return None
    if benchmark_index <= 0:
        return None
    slower = cpu_slowdown * REFERENCE_BENCHMARK_INDEX / benchmark_index / MOBILE_CPU_SLOWDOWN
    if slower <= SLOW_HOST_FACTOR:
        return None
    return (
        f"Lighthouse measured this host at benchmarkIndex {benchmark_index:.0f}; with a {cpu_slowdown:g}x CPU"
        f" slowdown its mobile numbers stand for a phone {slower:.1f}x slower than Lighthouse's reference."
        f" FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN={calibrated_slowdown(benchmark_index):g} calibrates it"
        " (or auto, from each host's own runs)."
    )


AUTO = "auto"
# A host within this share of the reference speed keeps its slowdown: benchmarkIndex moves
# 10-20 % between runs with whatever else the host does, and each change of slowdown is a step
# in the trend of every mobile audit.
CALIBRATION_TOLERANCE = 0.2
CALIBRATION_WINDOW = 9


class HostCalibration:
    """The mobile CPU slowdown for ``cpu_slowdown="auto"``: Lighthouse's 4x scaled to this
    host's speed, from the benchmarkIndex its recent runs measured (the median of the last
    CALIBRATION_WINDOW, since one reading is noisy). The slowdown in use changes only when the
    median calls for one more than CALIBRATION_TOLERANCE away from it, so a host near the
    reference speed keeps Lighthouse's own 4x (its reports stay identical to LHCI's) and runs
    from one host stay comparable with each other. One object per host: a server keeps one for
    its lifetime, a ``fieldlab gate`` one per invocation."""

    def __init__(self) -> None:
        self._seen: deque[float] = deque(maxlen=CALIBRATION_WINDOW)
        self._slowdown: float | None = None

    @property
    def slowdown(self) -> float | None:
        """None until a run has measured the host."""
        return self._slowdown

    @property
    def benchmark_index(self) -> float | None:
        """The median of the readings the slowdown is based on."""
        return statistics.median(self._seen) if self._seen else None

    def observe(self, benchmark_index: Any) -> None:
        """Take one run's ``environment.benchmarkIndex`` (any preset: the host is the same)."""
        if isinstance(benchmark_index, bool) or not isinstance(benchmark_index, int | float):
            return
        if not 0 < benchmark_index < math.inf:
            return
        self._seen.append(float(benchmark_index))
        wanted = calibrated_slowdown(statistics.median(self._seen))
        current = self._slowdown or MOBILE_CPU_SLOWDOWN
        self._slowdown = wanted if abs(wanted - current) > CALIBRATION_TOLERANCE * current else current


CHROME_FLAGS = (
    "--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)  # fmt: skip
_LOOP_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def default_lock_path() -> Path:
    return Path(tempfile.gettempdir()) / "fieldlab-lighthouse.lock"


def find_lighthouse(explicit: str | None = None) -> str:
    """``explicit``, else the repository's ``node_modules/.bin/lighthouse``, else PATH."""
    if explicit:
        return explicit
    local = Path(__file__).resolve().parent.parent / "node_modules" / ".bin" / "lighthouse"
    if local.exists():
        return str(local)
    found = shutil.which("lighthouse")
    if not found:
        raise FileNotFoundError(
            "lighthouse not found in node_modules/.bin or on PATH (npm i -E lighthouse@12.2.3)"
        )
    return found


# --- representative run: Lighthouse CI's algorithm ------------------------------------------


def audit_value(lhr: Mapping[str, Any], audit: str) -> float:
    """``(lhr.audits[audit] && lhr.audits[audit].numericValue) || 0``, as LHCI reads it: a
    missing audit, a missing value and 0/NaN all count as 0."""
    entry = (lhr.get("audits") or {}).get(audit)
    value = entry.get("numericValue") if isinstance(entry, Mapping) else None
    if isinstance(value, bool):
        return 1.0 if value else 0.0  # JS: true || 0 -> true -> 1 in arithmetic
    if not isinstance(value, int | float) or math.isnan(value):
        return 0.0
    return float(value)


def choose_representative(lhrs: Sequence[Mapping[str, Any]]) -> int:
    """Index of the run LHCI would call representative (@lhci/utils representative-runs.js).

    Median FCP and median TTI are the values at index ``n // 2`` of the runs sorted by each
    (the upper median for even n); the run with the smallest squared distance to that point
    wins. Sorts are stable, as JavaScript's are, so ties go to the earliest run."""
    if not lhrs:
        raise ValueError("no runs to choose from")
    order = range(len(lhrs))
    mid = len(lhrs) // 2
    fcp = [audit_value(lhr, "first-contentful-paint") for lhr in lhrs]
    tti = [audit_value(lhr, "interactive") for lhr in lhrs]
    median_fcp = fcp[sorted(order, key=lambda i: fcp[i])[mid]]
    median_tti = tti[sorted(order, key=lambda i: tti[i])[mid]]

    def distance(i: int) -> float:
        return (median_fcp - fcp[i]) ** 2 + (median_tti - tti[i]) ** 2

    return sorted(order, key=distance)[0]


# --- results ---------------------------------------------------------------------------------


@dataclass
class LighthouseRun:
    index: int
    duration_ms: float = 0.0
    lhr_path: str | None = None  # gzipped LHR, relative to output_dir
    error: str | None = None
    fcp: float | None = None
    interactive: float | None = None
    benchmark_index: float | None = None  # the host's speed as this run measured it
    # cpu_slowdown="auto" on a host not yet measured: this run measured it at Lighthouse's 4x,
    # and as the host turned out too slow or fast for 4x it is not counted (nor its report kept).
    calibration: bool = False


@dataclass
class LighthouseResult:
    status: str  # passed: a representative run exists; error: none does
    url: str
    preset: str
    started_at: int
    duration_ms: float = 0.0
    runs: list[LighthouseRun] = field(default_factory=list)
    representative: int | None = None  # index into runs
    scores: dict[str, float | None] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    resource_summary: list[dict[str, Any]] = field(default_factory=list)
    lhr_path: str | None = None  # representative run, gzipped JSON
    html_path: str | None = None  # representative run's report
    final_url: str | None = None
    lighthouse_version: str | None = None
    error: str | None = None
    blocked_requests: list[str] = field(default_factory=list)
    benchmark_index: float | None = None  # the host's CPU speed as Lighthouse measured it
    cpu_slowdown: float | None = None  # the CPU slowdown the representative run applied
    warnings: list[str] = field(default_factory=list)  # the representative run's runWarnings

    @property
    def lhr_paths(self) -> list[str]:
        return [r.lhr_path for r in self.runs if r.lhr_path]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lhr_paths": self.lhr_paths}


def summarise(lhr: Mapping[str, Any]) -> dict[str, Any]:
    """Category scores, key metrics and resource-summary rows of one LHR."""
    audits = lhr.get("audits") or {}
    summary = ((audits.get("resource-summary") or {}).get("details") or {}).get("items") or []
    return {
        "scores": {k: c.get("score") for k, c in (lhr.get("categories") or {}).items()},
        "metrics": {m: (audits.get(m) or {}).get("numericValue") for m in METRICS},
        "resource_summary": [
            {k: row.get(k) for k in ("resourceType", "label", "requestCount", "transferSize")}
            for row in summary
        ],
    }


def load_lhr(path: str | Path) -> dict[str, Any]:
    """An LHR from ``.json`` or ``.json.gz``."""
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    data: dict[str, Any] = json.loads(raw)
    return data


# --- the machine-wide lock -------------------------------------------------------------------


@asynccontextmanager
async def audit_lock(path: Path | None = None) -> AsyncIterator[None]:
    """Exclusive use of this machine for one audit (in-process lock, then ``flock``)."""
    loop = asyncio.get_running_loop()
    lock = _LOOP_LOCKS.setdefault(loop, asyncio.Lock())
    async with lock:
        path = path or default_lock_path()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:  # created by another user: a read-only fd can still be flocked
            fd = os.open(path, os.O_RDONLY)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.25)
            yield
        finally:
            os.close(fd)  # releases the flock


# --- running ---------------------------------------------------------------------------------


def _calibrates(calibration: HostCalibration, benchmark_index: float | None, measuring: bool) -> bool:
    """Record the host speed a run measured; True if it was the run measuring the host and the
    host turned out to need another slowdown than the 4x it ran with."""
    calibration.observe(benchmark_index)
    return measuring and calibration.slowdown not in (None, MOBILE_CPU_SLOWDOWN)


def _kill(pid: int) -> None:
    """The CLI, Chrome (its own session) and everything below them; Chrome's profile dir."""
    profiles = [
        a.split("=", 1)[1]
        for p in procs.descendants(pid)
        for a in p.cmdline
        if a.startswith("--user-data-dir=") and "lighthouse" in a
    ]
    # Not killpg first: the CLI would die before the snapshot, and a Chrome it had just started
    # (its own session, so not in the group) would pass to PID 1 out of reach. kill_tree
    # freezes the whole tree, then kills it.
    procs.kill_tree(pid)
    for profile in profiles:
        shutil.rmtree(profile, ignore_errors=True)


async def _one_run(args: list[str], env: dict[str, str], log: Path, timeout_s: float) -> str | None:
    """Run the CLI once; the error, or None."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *args, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    try:
        code = await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        await asyncio.to_thread(_kill, proc.pid)
        await proc.wait()
        return f"timed out after {timeout_s:g} s (killed Lighthouse and its Chrome)"
    finally:
        if proc.returncode is None:  # cancelled: leave nothing behind
            await asyncio.shield(asyncio.to_thread(_kill, proc.pid))
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
    if code != 0:
        tail = (await asyncio.to_thread(log.read_text, errors="replace")).strip().splitlines()[-3:]
        return f"lighthouse exited with {code}: {' | '.join(tail)[:500]}"
    return None


async def run_lighthouse(
    url: str,
    *,
    chromium: str,
    preset: str = "mobile",
    runs: int = 3,
    timeout_s: float = 120.0,
    output_dir: Path,
    lighthouse_bin: str | None = None,
    policy: TargetPolicy,
    lock_path: Path | None = None,
    guard_requests: bool = True,
    cpu_slowdown: float | str | None = None,
    calibration: HostCalibration | None = None,
) -> LighthouseResult:
    """Audit ``url`` ``runs`` times (one audit at a time per machine) and keep the
    representative run. ``guard_requests``: route Chrome through the egress proxy.
    ``cpu_slowdown``: Lighthouse's CPU slowdown multiplier instead of the preset's, or
    ``"auto"``: mobile audits use ``calibration``'s slowdown for this host (a new
    HostCalibration if None); while it has none, the first run measures the host at 4x and,
    if 4x does not fit the host, is not counted, and ``runs`` calibrated runs follow."""
    if preset not in PRESETS:
        raise ValueError(f"preset: must be one of {', '.join(PRESETS)}, not {preset!r}")
    slowdown: float | None = None
    if cpu_slowdown == AUTO:
        calibration = calibration or HostCalibration()
        slowdown = calibration.slowdown if preset == "mobile" else None
    elif isinstance(cpu_slowdown, int | float) and 1 <= cpu_slowdown <= MAX_CPU_SLOWDOWN:
        slowdown = float(cpu_slowdown)
    elif cpu_slowdown is not None:
        raise ValueError(
            f"cpu_slowdown: must be {AUTO!r} or between 1 and {MAX_CPU_SLOWDOWN:g}, not {cpu_slowdown!r}"
        )
    if cpu_slowdown != AUTO:
        calibration = None  # only "auto" reads or feeds a calibration
    measuring = cpu_slowdown == AUTO and preset == "mobile" and slowdown is None
    if preset == "mobile" and slowdown == MOBILE_CPU_SLOWDOWN:
        slowdown = None  # Lighthouse's own 4x is left to its preset: the same runs as LHCI's
    result = LighthouseResult(status="error", url=url, preset=preset, started_at=int(time.time() * 1000))
    started = time.monotonic()
    output_dir = Path(output_dir)
    (output_dir / "runs").mkdir(parents=True, exist_ok=True)
    try:
        await policy.check_url_async(url)
        binary = find_lighthouse(lighthouse_bin)
    except (TargetRefused, FileNotFoundError) as exc:
        result.error = str(exc)
        return result
    flags = list(CHROME_FLAGS) + (["--no-sandbox"] if os.geteuid() == 0 else [])
    env = {**os.environ, "CHROME_PATH": chromium}
    lhrs: list[tuple[int, dict[str, Any]]] = []
    async with audit_lock(lock_path), contextlib.AsyncExitStack() as stack:
        if guard_requests:
            proxy = await stack.enter_async_context(EgressProxy(policy, result.blocked_requests))
            flags += [f"--proxy-server={proxy.url}", "--proxy-bypass-list=<-loopback>"]
        counted = 0  # runs made, failed ones included; a calibration run is not counted
        while counted < runs:
            i = len(result.runs)
            run = LighthouseRun(index=i)
            result.runs.append(run)
            base = output_dir / "runs" / f"run-{i + 1}"
            args = [binary, url, "--output=json", "--output=html", f"--output-path={base}", "--quiet",
                    f"--chrome-flags={' '.join(flags)}", f"--max-wait-for-load={int(min(timeout_s, 45) * 1000)}"]  # fmt: skip
            if preset == "desktop":
                args.append("--preset=desktop")
            if slowdown is not None:
                args.append(f"--throttling.cpuSlowdownMultiplier={slowdown:g}")
            t0 = time.monotonic()
            singletons = procs.singleton_dirs_now()
            run.error = await _one_run(args, env, base.with_suffix(".log"), timeout_s)
            # chrome-launcher stops Chrome with SIGTERM, which leaves its /tmp singleton dir.
            procs.remove_dead_singletons(procs.singleton_dirs_now() - singletons)
            run.duration_ms = round((time.monotonic() - t0) * 1000, 1)
            report = base.with_name(base.name + ".report.json")
            counted += 1
            if run.error is None:
                try:
                    lhr = load_lhr(report)
                except (OSError, ValueError) as exc:
                    run.error = f"no report: {exc}"
                else:
                    run.benchmark_index = (lhr.get("environment") or {}).get("benchmarkIndex")
                    if err := lhr.get("runtimeError"):
                        run.error = f"{err.get('code')}: {err.get('message')}"[:500]
                    elif calibration is not None and _calibrates(calibration, run.benchmark_index, measuring):
                        measuring, run.calibration, counted = False, True, counted - 1
                        slowdown = calibration.slowdown
                    else:
                        measuring = False
                        lhrs.append((i, lhr))
                        run.fcp = audit_value(lhr, "first-contentful-paint")
                        run.interactive = audit_value(lhr, "interactive")
                        gz = report.with_name(f"lhr-{i + 1}.json.gz")
                        gz.write_bytes(gzip.compress(report.read_bytes()))
                        run.lhr_path = str(gz.relative_to(output_dir))
            report.unlink(missing_ok=True)
            if run.error and "timed out" in run.error:
                break  # a hung audit hangs again; do not hold the machine lock for N x timeout
    if lhrs:
        pick = choose_representative([lhr for _, lhr in lhrs])
        index, lhr = lhrs[pick]
        result.representative = index
        result.status = "passed"
        summary = summarise(lhr)
        result.scores, result.metrics = summary["scores"], summary["metrics"]
        result.resource_summary = summary["resource_summary"]
        result.final_url = lhr.get("finalDisplayedUrl") or lhr.get("finalUrl")
        result.lighthouse_version = lhr.get("lighthouseVersion")
        result.benchmark_index = (lhr.get("environment") or {}).get("benchmarkIndex")
        result.cpu_slowdown = ((lhr.get("configSettings") or {}).get("throttling") or {}).get(
            "cpuSlowdownMultiplier"
        )
        result.warnings = [str(w) for w in lhr.get("runWarnings") or []]
        shutil.copyfile(output_dir / str(result.runs[index].lhr_path), output_dir / "lhr.json.gz")
        result.lhr_path = "lhr.json.gz"
        html = output_dir / "runs" / f"run-{index + 1}.report.html"
        if html.exists():
            html.replace(output_dir / "report.html")
            result.html_path = "report.html"
    errors = [f"run {r.index + 1}: {r.error}" for r in result.runs if r.error]
    result.error = "; ".join(errors) or None
    for leftover in (output_dir / "runs").glob("*.report.html"):
        leftover.unlink()
    result.duration_ms = round((time.monotonic() - started) * 1000, 1)
    return result

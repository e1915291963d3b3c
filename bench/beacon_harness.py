"""The plumbing of bench/beacon_bench.py: subprocesses, HTTP, wrk, Prometheus text, databases.

Kept apart so the benchmark itself reads as what it measures. Standard library only (plus
asyncpg, which fieldlab already depends on, for PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "beacon.lua"
PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN_DSN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"
# uvicorn re-raises the SIGTERM it caught once its graceful shutdown is done, so -15 is clean.
CLEAN_EXIT = (0, -signal.SIGTERM)


class BenchError(RuntimeError):
    """Something the benchmark needs did not work; the message says what."""


# --- processes ----------------------------------------------------------------------------


class Procs:
    """Every subprocess started here, each in its own session, so ``close()`` can end each one
    and the workers it forked, on any exit: normal, exception or Ctrl-C."""

    def __init__(self) -> None:
        self._live: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], *, env: dict[str, str], log: Path | None) -> subprocess.Popen[bytes]:
        out: Any = log.open("wb") if log else subprocess.PIPE
        try:
            proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            if log:
                out.close()
        self._live.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], *, grace_s: float) -> int:
        """SIGTERM to the process (uvicorn's supervisor passes it on to its workers), then wait."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            rc = proc.wait(5)
        self.forget(proc)
        return rc

    def forget(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill whatever is left of the process's session (stray workers would hold the port
        and the database) and stop tracking it."""
        self._kill(proc)
        if proc in self._live:
            self._live.remove(proc)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def close(self) -> None:
        for proc in list(self._live):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in list(self._live):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            self.forget(proc)


def process_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) used so far by a process and each live descendant."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[int, float] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        if p in used:
            continue
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            used[p] = (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return used


def tree_cpu_s(pid: int) -> float:
    return sum(process_cpu_s(pid).values())


def system_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait_s: float, threshold_cores: float = 0.25) -> float:
    """Wait (at most ``max_wait_s``) until the box's CPU use over one second, from everyone
    else, is below ``threshold_cores``: other jobs on a 2-core box move the figures a lot.
    Returns the last reading."""
    deadline = time.monotonic() + max_wait_s
    while True:
        before = system_busy_s()
        time.sleep(1)
        busy = system_busy_s() - before
        if busy < threshold_cores or time.monotonic() >= deadline:
            return round(busy, 2)


def postgres_cpu_s() -> float:
    """CPU seconds used so far by the live PostgreSQL server processes on this machine."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            text = stat.read_text()
            if text[text.index("(") + 1 : text.rindex(")")] == "postgres":
                fields = text[text.rindex(")") + 2 :].split()
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- HTTP ---------------------------------------------------------------------------------


def http(
    method: str, url: str, *, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 5
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    hdrs = dict(headers or {})
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_up(proc: subprocess.Popen[bytes], url: str, log: Path, *, want: int | None, timeout: float) -> None:
    """Poll ``url`` until it answers (with status ``want`` if given) or the server dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode} while starting:\n{tail(log)}")
        try:
            status, _ = http("GET", url, timeout=1)
        except (OSError, urllib.error.URLError):
            status = 0
        if status and (want is None or status == want):
            return
        time.sleep(0.1)
    raise BenchError(f"{url} not ready after {timeout:.0f}s:\n{tail(log)}")


def scrape_metrics(base: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value}, labels as printed."""
    status, text = http("GET", f"{base}/metrics")
    if status != 200:
        return {}
    values: dict[str, float] = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[name] = values.get(name, 0.0) + float(value)
    return values


def writer_summary(m: dict[str, float], seconds: float) -> dict[str, Any]:
    """Group-commit evidence from (a delta of) fieldlab's /metrics."""
    batches = m.get("fieldlab_writer_batch_size_count", 0.0)
    beacons = m.get("fieldlab_writer_batch_size_sum", 0.0)
    commit_s = m.get("fieldlab_writer_commit_seconds_sum", 0.0)
    buckets: dict[str, int] = {}
    for key, value in m.items():
        hit = re.fullmatch(r'fieldlab_writer_batch_size_bucket\{le="([^"]+)"\}', key)
        if hit:
            buckets[hit.group(1).removesuffix(".0")] = int(value)
    rejected = {
        k.split('"')[1]: int(v) for k, v in m.items() if k.startswith("fieldlab_beacons_rejected_total{")
    }
    return {
        "batches": int(batches),
        "beacons": int(beacons),
        "batch_size_sum": beacons,
        "mean_batch": round(beacons / batches, 1) if batches else None,
        "batch_size_le": buckets,
        "commit_seconds_sum": round(commit_s, 3),
        "commit_seconds_count": int(m.get("fieldlab_writer_commit_seconds_count", 0.0)),
        "mean_commit_ms": round(1000 * commit_s / batches, 2) if batches else None,
        "commit_busy_share": round(commit_s / seconds, 3) if seconds else None,
        "writer_errors": int(m.get("fieldlab_writer_errors_total", 0.0)),
        "rejected": {k: v for k, v in rejected.items() if v},
    }


# --- databases ----------------------------------------------------------------------------


async def _pg(sql: str, dsn: str = PG_ADMIN_DSN) -> Any:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=3)
    try:
        if sql.startswith("SELECT"):
            return await conn.fetchval(sql)
        return await conn.execute(sql)  # CREATE/DROP DATABASE: outside any transaction
    finally:
        await conn.close()


def postgres_reachable() -> bool:
    try:
        return bool(asyncio.run(_pg("SELECT 1")))
    except Exception:
        return False


@contextlib.contextmanager
def fresh_database(kind: str, tmp: Path, procs: Procs, env: dict[str, str]) -> Iterator[str]:
    """A new, migrated database for one server run; yields its SQLAlchemy URL, drops it after."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp / f'fieldlab-{secrets.token_hex(4)}.db'}"  # `serve` migrates it
        return
    name = f"fieldlab_bench_{secrets.token_hex(5)}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    url = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    try:
        log = tmp / f"upgrade-{name}.log"
        argv = [sys.executable, "-m", "app", "db", "upgrade"]
        proc = procs.start(argv, env={**env, "FIELDLAB_DATABASE_URL": url}, log=log)
        try:
            if proc.wait(120) != 0:
                raise BenchError(f"`fieldlab db upgrade` failed:\n{tail(log)}")
        finally:
            procs.forget(proc)
        yield url
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def count_stored(url: str, tag: str | None = None) -> int:
    """Distinct page views in ``measurement`` (each beacon has its own id), optionally only
    those whose id starts with ``tag-``."""
    sql = "SELECT count(DISTINCT pageview_id) FROM measurement"
    if tag is not None:
        assert re.fullmatch(r"[a-z0-9]+", tag)
        sql += f" WHERE pageview_id LIKE '{tag}-%'"
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.split("///", 1)[1])) as conn:
            return int(conn.execute(sql).fetchone()[0])
    return int(asyncio.run(_pg(sql, url.replace("postgresql+asyncpg", "postgresql"))))


# --- profiling (optional: py-spy from PyPI in the venv) ----------------------------------

# Frames where a thread waits rather than works, which py-spy cannot always tell apart.
_IDLE = ("aiosqlite/core.py:59)", "threading.py", "selectors.py", "queue.py")


_OUTER = ("__main__.py)", "cli.py)", "uvicorn/main.py)", "uvicorn/server.py)", "uvicorn/_compat.py)")


def start_profiler(procs: Procs, pid: int, seconds: int, raw: Path) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print("  (--profile: py-spy not found; `.venv/bin/pip install py-spy`)", file=sys.stderr)
        return None
    argv = [exe, "record", "-p", str(pid), "--subprocesses", "-d", str(seconds), "-r", "97"]
    return procs.start(
        [*argv, "-f", "raw", "-o", str(raw)], env=dict(os.environ), log=raw.with_suffix(".log")
    )


def profile_summary(raw: Path, top: int = 25) -> dict[str, list[str]]:
    """Top frames by own time, and fieldlab/Litestar frames by inclusive time, as shares of the
    busy samples (idle waits left out)."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")[1:]  # drop the process label
        if not frames or not n.isdigit() or frames[-1].endswith(_IDLE):
            continue
        count = int(n)
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for f in {re.sub(r":\d+\)$", ")", f) for f in frames}:
            if ("app/" in f or "litestar/" in f or "uvicorn/" in f) and not f.endswith(_OUTER):
                incl[f] = incl.get(f, 0) + count

    def fmt(d: dict[str, int]) -> list[str]:
        ranked = sorted(d.items(), key=lambda kv: -kv[1])[:top]
        return [f"{100 * n / total:5.1f}%  {name}" for name, n in ranked]

    return {"busy_samples": [str(total)], "own": fmt(own), "inclusive": fmt(incl)} if total else {}


# --- load (wrk + bench/beacon.lua) --------------------------------------------------------


@dataclass
class Load:
    seconds: float  # until the server was told to stop (or wrk's own duration)
    requests: int
    generated: int
    ok: int  # 2xx
    non_2xx: dict[str, int]
    socket_errors: dict[str, int]
    rps_2xx: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    first_error: str = ""


def start_wrk(
    procs: Procs, base: str, key: str, tag: str, *, seconds: int, connections: int, threads: int
) -> subprocess.Popen[bytes]:
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "30s"]
    argv += ["-s", str(LUA), base, "--", key, tag]
    return procs.start(argv, env=dict(os.environ), log=None)


def finish_wrk(
    procs: Procs, proc: subprocess.Popen[bytes], *, interrupt: bool, seconds: float | None = None
) -> Load:
    """Collect wrk's result; ``interrupt`` stops it first (SIGINT makes wrk stop and report)."""
    if interrupt and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=180)
    finally:
        procs.forget(proc)
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise BenchError(f"wrk failed (exit {proc.returncode}):\n{text[-2000:]}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    statuses = {str(k): int(v) for k, v in raw["statuses"].items()}
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    secs = seconds or raw["duration_us"] / 1e6
    pct = raw["latency_us"]["p"]
    return Load(
        seconds=round(secs, 3),
        requests=raw["requests"],
        generated=raw["generated"],
        ok=ok,
        non_2xx={k: v for k, v in statuses.items() if not k.startswith("2")},
        socket_errors={k: v for k, v in raw["errors"].items() if k != "status" and v},
        rps_2xx=round(ok / secs, 1),
        p50_ms=pct["50"] / 1000,
        p90_ms=pct["90"] / 1000,
        p99_ms=pct["99"] / 1000,
        p999_ms=pct["99.9"] / 1000,
        max_ms=raw["latency_us"]["max"] / 1000,
        first_error=raw.get("first_error", ""),
    )

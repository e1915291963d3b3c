"""Beacon ingest benchmark (issue 2, part 11): fieldlab's POST /api/v1/beacon against a no-op.

Both servers run the way production runs them (`python -m app serve --workers W`, and
bench/noop_app.py with the same uvicorn options) as subprocesses, and get the same load from
`wrk` with bench/beacon.lua: realistic page-view beacons (text/plain, Origin, Chrome UA), each
with a unique page-view id. Reported side by side: beacons/s, p50/p99 latency, non-2xx, and
lost = acknowledged (2xx) - stored page views, counted after the server was stopped with SIGTERM
(which drains the writer). Rate limiting stays ON, with limits above the offered load, so its
cost is part of the measurement.

    .venv/bin/python bench/beacon_bench.py [--duration 15] [--connections 64] [--db sqlite|postgres|both]
    .venv/bin/python bench/beacon_bench.py --set FIELDLAB_BATCH_MAX_WAIT_MS=0   # try a setting
    .venv/bin/python bench/beacon_bench.py --sweep --duration 8                  # tuning grid

Results go to bench/results/beacon.json (or beacon_sweep.json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "beacon.lua"
RESULTS = ROOT / "bench" / "results"
PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN_DSN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"
ORIGIN = "https://shop.example"
# Far above anything one load generator can offer, so nothing is throttled but every request
# still pays for both limiters (per IP and per site).
RATE_LIMIT = 10_000_000
GOAL_THROUGHPUT = 0.70  # fieldlab beacons/s >= 70 % of the no-op's
GOAL_P99 = 2.0  # fieldlab p99 <= 2x the no-op's p99
DEFAULT_WORKERS = {"sqlite": 1, "postgres": 2}
# --sweep: the writer knobs worth trying, per database (workers included for PostgreSQL).
SWEEP: dict[str, list[dict[str, str]]] = {
    "sqlite": [
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "0"},
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "2"},
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "5"},
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "10"},
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "5", "FIELDLAB_BATCH_MAX_ROWS": "2000"},
    ],
    "postgres": [
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "0"},
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "5"},
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "10"},
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "5", "FIELDLAB_WORKERS": "1"},
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "5", "FIELDLAB_WORKERS": "3"},
    ],
}


class BenchError(RuntimeError):
    """Something the benchmark needs did not work; the message says what."""


# --- processes ----------------------------------------------------------------------------


class Procs:
    """Every subprocess started here, each in its own session, so ``close()`` can end each one
    (and the workers it forked) on any exit: normal, exception or Ctrl-C."""

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
        """SIGTERM to the process (uvicorn's supervisor passes it to its workers), then wait."""
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
        # Leftover workers of a stopped server would keep its port and database busy.
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


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo, seen = 0.0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- HTTP ---------------------------------------------------------------------------------


def http(
    method: str, url: str, *, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 5
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    hdrs = {"Content-Type": "application/json", **(headers or {})} if data else dict(headers or {})
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
            raise BenchError(f"server exited with {proc.returncode} while starting:\n{_tail(log)}")
        try:
            status, _ = http("GET", url, timeout=1)
        except (OSError, urllib.error.URLError):
            status = 0
        if status and (want is None or status == want):
            return
        time.sleep(0.1)
    raise BenchError(f"{url} not ready after {timeout:.0f}s:\n{_tail(log)}")


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
    """Group-commit evidence from fieldlab's /metrics: batches, mean batch, commit latency."""
    batches = m.get("fieldlab_writer_batch_size_count", 0.0)
    beacons = m.get("fieldlab_writer_batch_size_sum", 0.0)
    commit_s = m.get("fieldlab_writer_commit_seconds_sum", 0.0)
    buckets = {}
    for key, value in m.items():
        hit = re.fullmatch(r'fieldlab_writer_batch_size_bucket\{le="([^"]+)"\}', key)
        if hit:
            buckets[hit.group(1)] = int(value)
    rejected = {
        k.split('"')[1]: int(v) for k, v in m.items() if k.startswith("fieldlab_beacons_rejected_total{")
    }
    return {
        "batches": int(batches),
        "beacons": int(beacons),
        "mean_batch": round(beacons / batches, 1) if batches else None,
        "batch_size_buckets_le": buckets,
        "mean_commit_ms": round(1000 * commit_s / batches, 2) if batches else None,
        "commit_busy_share": round(commit_s / seconds, 3) if seconds else None,
        "accepted_total": int(m.get("fieldlab_beacons_accepted_total", 0.0)),
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
        return await conn.execute(sql)  # CREATE/DROP DATABASE: no transaction, no statement cache
    finally:
        await conn.close()


def postgres_reachable() -> bool:
    try:
        return bool(asyncio.run(_pg("SELECT 1")))
    except Exception:
        return False


STORED_SQL = "SELECT count(DISTINCT pageview_id) FROM measurement"


@contextlib.contextmanager
def fresh_database(kind: str, tmp: Path, procs: Procs, env: dict[str, str]) -> Iterator[str]:
    """A new, migrated database for one server run; yields its SQLAlchemy URL, drops it after."""
    if kind == "sqlite":
        path = tmp / f"fieldlab-{secrets.token_hex(4)}.db"
        yield f"sqlite+aiosqlite:///{path}"  # `serve` migrates SQLite on start
        return
    name = f"fieldlab_bench_{secrets.token_hex(5)}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    url = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    try:
        log = tmp / f"upgrade-{name}.log"
        proc = procs.start(
            [sys.executable, "-m", "app", "db", "upgrade"],
            env={**env, "FIELDLAB_DATABASE_URL": url},
            log=log,
        )
        if proc.wait(120) != 0:
            raise BenchError(f"`fieldlab db upgrade` failed:\n{_tail(log)}")
        procs.forget(proc)
        yield url
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def count_stored(url: str) -> int:
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.split("///", 1)[1])) as conn:
            return int(conn.execute(STORED_SQL).fetchone()[0])
    return int(asyncio.run(_pg(STORED_SQL, url.replace("postgresql+asyncpg", "postgresql"))))


# --- load ---------------------------------------------------------------------------------


@dataclass
class Load:
    seconds: float
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


def run_wrk(
    procs: Procs, base: str, key: str, tag: str, *, seconds: float, connections: int, threads: int
) -> Load:
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "30s",
        "-s",
        str(LUA),
        base,
        "--",
        key,
        tag,
    ]
    proc = procs.start(argv, env=dict(os.environ), log=None)
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    finally:
        procs.forget(proc)
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise BenchError(f"wrk failed (exit {proc.returncode}):\n{text[-2000:]}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    statuses = {str(k): int(v) for k, v in raw["statuses"].items()}
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    secs = raw["duration_us"] / 1e6
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


# --- one server, one run --------------------------------------------------------------------


@dataclass
class Run:
    server: str  # fieldlab | noop
    db: str
    workers: int
    settings: dict[str, str]
    load: Load
    cpu_us_per_beacon: float | None  # server process tree only (PostgreSQL's own CPU excluded)
    acked: int = 0  # 2xx over warm-up and measured run
    sent: int = 0  # requests wrk generated over both
    stored: int | None = None
    lost: int | None = None
    stop_rc: int | None = None
    stop_s: float | None = None
    writer: dict[str, Any] = field(default_factory=dict)


@dataclass
class Options:
    seconds: int
    warmup: int
    connections: int
    threads: int


def bench_env() -> dict[str, str]:
    """The caller's environment without any FIELDLAB_* or multiprocess-metrics settings."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FIELDLAB_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }


def run_server(
    server: str, db: str, workers: int, settings: dict[str, str], opts: Options, procs: Procs, tmp: Path
) -> Run:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    tag = f"{server[0]}{secrets.token_hex(3)}"
    log = tmp / f"{server}-{db}-{tag}.log"
    env = bench_env()
    if server == "noop":
        argv = [sys.executable, "-m", "bench.noop_app", "--port", str(port), "--workers", str(workers)]
        with contextlib.ExitStack() as stack:
            proc = procs.start(argv, env=env, log=log)
            stack.callback(procs.forget, proc)
            wait_up(proc, f"{base}/api/v1/beacon", log, want=None, timeout=60)
            run = _load(server, db, workers, settings, opts, procs, proc, base, "nokey", tag)
            run.stop_s, run.stop_rc = _timed_stop(procs, proc)
            return run
    admin = secrets.token_urlsafe(16)
    env.update(
        FIELDLAB_ADMIN_TOKEN=admin,
        FIELDLAB_RATE_LIMIT_PER_IP=str(RATE_LIMIT),
        FIELDLAB_RATE_LIMIT_PER_SITE=str(RATE_LIMIT),
    )
    env.update(settings)
    with fresh_database(db, tmp, procs, env) as url, contextlib.ExitStack() as stack:
        env["FIELDLAB_DATABASE_URL"] = url
        argv = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--workers", str(workers)]
        proc = procs.start(argv, env=env, log=log)
        stack.callback(procs.forget, proc)
        wait_up(proc, f"{base}/readyz", log, want=200, timeout=90)
        status, body = http(
            "POST",
            f"{base}/api/v1/sites",
            body={"name": "bench-shop", "origins": [ORIGIN]},
            headers={"Authorization": f"Bearer {admin}"},
        )
        if status != 201:
            raise BenchError(f"creating the site answered {status}: {body[:300]!r}")
        key = json.loads(body)["key"]
        before = scrape_metrics(base)
        run = _load(server, db, workers, settings, opts, procs, proc, base, key, tag)
        after = scrape_metrics(base)
        delta = {k: v - before.get(k, 0.0) for k, v in after.items()}
        run.writer = writer_summary(delta, run.load.seconds)
        run.stop_s, run.stop_rc = _timed_stop(procs, proc)
        if run.stop_rc != 0:
            print(f"  ! fieldlab exited with {run.stop_rc} on SIGTERM:\n{_tail(log)}", file=sys.stderr)
        run.stored = count_stored(url)
        run.lost = run.acked - run.stored
        return run


def _load(
    server: str,
    db: str,
    workers: int,
    settings: dict[str, str],
    opts: Options,
    procs: Procs,
    proc: subprocess.Popen[bytes],
    base: str,
    key: str,
    tag: str,
) -> Run:
    kw: dict[str, Any] = {"connections": opts.connections, "threads": opts.threads}
    warm = run_wrk(procs, base, key, f"{tag}w", seconds=opts.warmup, **kw) if opts.warmup > 0 else None
    if warm is not None and warm.ok == 0:
        raise BenchError(f"{server}: no 2xx during warm-up: {warm.non_2xx} {warm.first_error}")
    cpu0 = _tree_cpu_s(proc.pid)
    load = run_wrk(procs, base, key, f"{tag}m", seconds=opts.seconds, **kw)
    cpu = _tree_cpu_s(proc.pid) - cpu0
    return Run(
        server=server,
        db=db,
        workers=workers,
        settings=settings,
        load=load,
        cpu_us_per_beacon=round(1e6 * cpu / load.requests, 1) if load.requests else None,
        acked=load.ok + (warm.ok if warm else 0),
        sent=load.generated + (warm.generated if warm else 0),
    )


def _timed_stop(procs: Procs, proc: subprocess.Popen[bytes]) -> tuple[float, int]:
    started = time.monotonic()
    rc = procs.stop(proc, grace_s=45)
    return round(time.monotonic() - started, 2), rc


# --- report -------------------------------------------------------------------------------


@dataclass
class Verdict:
    throughput_ratio: float
    p99_ratio: float
    lost: int | None
    throughput_ok: bool
    p99_ok: bool
    lost_ok: bool

    @property
    def passed(self) -> bool:
        return self.throughput_ok and self.p99_ok and self.lost_ok


def judge(fl: Run, noop: Run) -> Verdict:
    tr = fl.load.rps_2xx / noop.load.rps_2xx if noop.load.rps_2xx else 0.0
    pr = fl.load.p99_ms / noop.load.p99_ms if noop.load.p99_ms else float("inf")
    # lost < 0 means wrk stopped while some beacons were in flight: committed, never answered.
    lost_ok = fl.lost is not None and fl.lost <= 0 and fl.stop_rc == 0 and not fl.writer.get("writer_errors")
    return Verdict(round(tr, 3), round(pr, 2), fl.lost, tr >= GOAL_THROUGHPUT, pr <= GOAL_P99, lost_ok)


def _mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_pair(fl: Run, noop: Run, v: Verdict) -> None:
    label = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[fl.db]
    tuned = " ".join(f"{k}={val}" for k, val in fl.settings.items())
    print(f"\n== {label}: fieldlab workers={fl.workers} vs no-op workers={noop.workers} {tuned}".rstrip())
    w = "{:<34}{:>12}{:>12}{:>11}  {}"
    print(w.format("", "fieldlab", "no-op", "ratio", "goal"))
    print(
        w.format(
            "beacons/s (2xx)",
            f"{fl.load.rps_2xx:,.0f}",
            f"{noop.load.rps_2xx:,.0f}",
            f"{100 * v.throughput_ratio:.1f} %",
            f">= 70 %  {_mark(v.throughput_ok)}",
        )
    )
    print(
        w.format(
            "latency p50 ms",
            f"{fl.load.p50_ms:.2f}",
            f"{noop.load.p50_ms:.2f}",
            f"{fl.load.p50_ms / noop.load.p50_ms:.2f}x" if noop.load.p50_ms else "",
            "",
        )
    )
    print(
        w.format(
            "latency p99 ms",
            f"{fl.load.p99_ms:.2f}",
            f"{noop.load.p99_ms:.2f}",
            f"{v.p99_ratio:.2f}x",
            f"<= 2x    {_mark(v.p99_ok)}",
        )
    )
    print(
        w.format(
            "latency p99.9 / max ms",
            f"{fl.load.p999_ms:.1f}/{fl.load.max_ms:.0f}",
            f"{noop.load.p999_ms:.1f}/{noop.load.max_ms:.0f}",
            "",
            "",
        )
    )
    print(w.format("non-2xx", _fmt_counts(fl.load.non_2xx), _fmt_counts(noop.load.non_2xx), "", ""))
    if fl.load.socket_errors or noop.load.socket_errors:
        print(
            w.format(
                "socket errors",
                _fmt_counts(fl.load.socket_errors),
                _fmt_counts(noop.load.socket_errors),
                "",
                "",
            )
        )
    print(w.format("server CPU us/request", f"{fl.cpu_us_per_beacon}", f"{noop.cpu_us_per_beacon}", "", ""))
    print(w.format("acknowledged 2xx (incl. warm-up)", f"{fl.acked:,}", "", "", ""))
    print(w.format("stored page views", f"{fl.stored:,}" if fl.stored is not None else "?", "", "", ""))
    note = f"(-{-(v.lost or 0)} = in flight when wrk stopped)" if (v.lost or 0) < 0 else ""
    print(
        w.format("lost = acknowledged - stored", f"{v.lost}", "", "", f"= 0      {_mark(v.lost_ok)} {note}")
    )
    print(w.format("stop on SIGTERM (exit, seconds)", f"{fl.stop_rc}, {fl.stop_s}s", "", "", ""))
    wr = fl.writer
    if wr.get("batches"):
        print(
            f"  writer (measured run): {wr['batches']:,} commits for {wr['beacons']:,} beacons, "
            f"mean batch {wr['mean_batch']} beacons, mean commit {wr['mean_commit_ms']} ms, "
            f"writer busy {100 * (wr['commit_busy_share'] or 0):.0f} % of wall time"
        )
        print(f"  batch-size histogram (cumulative, le): {_fmt_counts(wr['batch_size_buckets_le'])}")
    if wr.get("rejected") or wr.get("writer_errors"):
        print(f"  rejected: {wr.get('rejected')}  writer errors: {wr.get('writer_errors')}")
    print(f"  verdict: {_mark(v.passed)}")


def _fmt_counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k}:{v}" for k, v in d.items()) or "0"


def print_sweep(db: str, noop: Run, runs: list[tuple[Run, Verdict]]) -> None:
    print(
        f"\n== sweep {db}: no-op {noop.load.rps_2xx:,.0f}/s p99 {noop.load.p99_ms:.2f} ms (workers={noop.workers})"
    )
    w = "{:<52}{:>9}{:>8}{:>8}{:>8}{:>8}{:>7}{:>6}"
    print(w.format("settings", "beac/s", "ratio", "p50", "p99", "p99x", "batch", "lost"))
    for run, v in runs:
        s = " ".join(f"{k.removeprefix('FIELDLAB_')}={val}" for k, val in run.settings.items())
        print(
            w.format(
                f"workers={run.workers} {s}",
                f"{run.load.rps_2xx:,.0f}",
                f"{100 * v.throughput_ratio:.0f}%",
                f"{run.load.p50_ms:.1f}",
                f"{run.load.p99_ms:.1f}",
                f"{v.p99_ratio:.2f}",
                f"{run.writer.get('mean_batch')}",
                f"{run.lost}",
            )
        )


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="fieldlab beacon ingest vs a no-op Litestar endpoint (wrk).")
    p.add_argument("--duration", type=int, default=15, help="measured seconds per server (default 15)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up seconds before each measurement")
    p.add_argument("--connections", type=int, default=64, help="concurrent keep-alive connections")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (the box has 2 cores)")
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--workers-sqlite", type=int, default=DEFAULT_WORKERS["sqlite"])
    p.add_argument("--workers-postgres", type=int, default=DEFAULT_WORKERS["postgres"])
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELDLAB_X=V",
        help="extra setting for fieldlab (repeatable), e.g. FIELDLAB_BATCH_MAX_WAIT_MS=0",
    )
    p.add_argument("--sweep", action="store_true", help="run the tuning grid instead of one pair")
    p.add_argument("--out", type=Path, default=None, help="JSON results file")
    p.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed (default: 0)")
    args = p.parse_args(argv)
    for item in args.set:
        if not re.fullmatch(r"FIELDLAB_[A-Z_]+=.*", item):
            p.error(f"--set {item!r}: expected FIELDLAB_NAME=VALUE")
    if not 1 <= args.duration <= 120 or not 0 <= args.warmup <= 30:
        p.error("--duration must be 1..120 s and --warmup 0..30 s")
    return args


def _split_workers(settings: dict[str, str], default: int) -> tuple[int, dict[str, str]]:
    rest = dict(settings)
    workers = int(rest.pop("FIELDLAB_WORKERS", default))
    return workers, rest


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk (or `make bench`)", file=sys.stderr)
        return 2
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if "postgres" in dbs and not postgres_reachable():
        msg = f"PostgreSQL at {PG_HOST}:{PG_PORT} is not reachable"
        if args.db == "postgres":
            print(msg, file=sys.stderr)
            return 2
        print(f"{msg}: SQLite only")
        dbs.remove("postgres")
    opts = Options(
        seconds=args.duration, warmup=args.warmup, connections=args.connections, threads=args.threads
    )
    extra = dict(item.split("=", 1) for item in args.set)
    default_workers = {"sqlite": args.workers_sqlite, "postgres": args.workers_postgres}
    print(
        f"load: wrk -t{opts.threads} -c{opts.connections} -d{opts.seconds:g}s (+{opts.warmup:g}s warm-up), "
        f"unique page-view ids, text/plain, Origin {ORIGIN}, Chrome UA; {os.cpu_count()} cores shared by "
        "wrk, the server and PostgreSQL"
    )
    print(
        f"rate limiting ON: FIELDLAB_RATE_LIMIT_PER_IP = FIELDLAB_RATE_LIMIT_PER_SITE = {RATE_LIMIT:,}/s "
        "(above the offered load: nothing is throttled, both limiters' cost is measured)"
    )

    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "load": asdict(opts) | {"tool": "wrk + bench/beacon.lua", "rate_limit_per_s": RATE_LIMIT},
        "goals": {"throughput_ratio_min": GOAL_THROUGHPUT, "p99_ratio_max": GOAL_P99, "lost": 0},
        "runs": [],
    }
    procs = Procs()
    all_passed = True

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        with tempfile.TemporaryDirectory(prefix="fieldlab-bench-") as tmp_name:
            tmp = Path(tmp_name)
            for db in dbs:
                grid = SWEEP[db] if args.sweep else [extra]
                noops: dict[int, Run] = {}
                swept: list[tuple[Run, Verdict]] = []
                for settings in grid:
                    workers, fl_settings = _split_workers(settings, default_workers[db])
                    if workers not in noops:
                        print(f"\n[{db}] no-op, workers={workers} ...", flush=True)
                        noops[workers] = run_server("noop", db, workers, {}, opts, procs, tmp)
                    print(f"[{db}] fieldlab, workers={workers} {fl_settings or ''} ...", flush=True)
                    fl = run_server("fieldlab", db, workers, fl_settings, opts, procs, tmp)
                    v = judge(fl, noops[workers])
                    all_passed &= v.passed
                    swept.append((fl, v))
                    print_pair(fl, noops[workers], v)
                    results["runs"].append(
                        {
                            "db": db,
                            "fieldlab": asdict(fl),
                            "noop": asdict(noops[workers]),
                            "verdict": asdict(v) | {"passed": v.passed},
                        }
                    )
                if args.sweep:
                    print_sweep(db, next(iter(noops.values())), swept)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping servers", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"\nbenchmark error: {exc}", file=sys.stderr)
        return 2
    finally:
        procs.close()

    out = args.out or RESULTS / ("beacon_sweep.json" if args.sweep else "beacon.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(
        f"\noverall: {_mark(all_passed)}   (results: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out})"
    )
    return 1 if args.strict and not all_passed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Beacon ingest benchmark (issue 2, part 11): fieldlab's POST /api/v1/beacon against a no-op.

Both servers run the way production runs them (``python -m app serve --workers W``, and
bench/noop_app.py with the same uvicorn options) as subprocesses and get the same load from
``wrk`` with bench/beacon.lua: realistic page-view beacons (text/plain, Origin, Chrome UA), each
with a unique page-view id. After a warm-up, one measured wrk run: at ``--duration`` the server
gets SIGTERM *while the load continues*, so the graceful drain is part of the test; wrk is
stopped once the server has exited, so no answered-or-not request is left in doubt.

Reported side by side: beacons/s, p50/p99 latency, non-2xx, server CPU per request, and
lost = acknowledged (2xx) - stored page views of the measured run (each beacon has a unique id,
so stored = count(DISTINCT pageview_id)), read after the server exited. Rate limiting stays ON,
with limits above the offered load, so its cost is part of the measurement.

    .venv/bin/python bench/beacon_bench.py [--duration 15] [--connections 64] [--db sqlite|postgres|both]
    .venv/bin/python bench/beacon_bench.py --set FIELDLAB_BATCH_MAX_WAIT_MS=0   # try a setting
    .venv/bin/python bench/beacon_bench.py --sweep --duration 8                  # tuning grid
    .venv/bin/python bench/beacon_bench.py --profile      # py-spy summary of the fieldlab server

Results: bench/results/beacon.json (beacon_sweep.json for --sweep).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from beacon_harness import (
    CLEAN_EXIT,
    PG_HOST,
    PG_PORT,
    ROOT,
    BenchError,
    Procs,
    count_stored,
    finish_wrk,
    free_port,
    fresh_database,
    http,
    postgres_cpu_s,
    postgres_reachable,
    process_cpu_s,
    profile_summary,
    scrape_metrics,
    start_profiler,
    start_wrk,
    system_busy_s,
    tail,
    tree_cpu_s,
    wait_quiet,
    wait_up,
    writer_summary,
)
from beacon_report import GOAL_P99, GOAL_THROUGHPUT, Run, Verdict, judge, mark, print_pair, print_sweep

RESULTS = ROOT / "bench" / "results"
ORIGIN = "https://shop.example"
# Far above what one load generator offers: nothing is throttled, yet every beacon still goes
# through both limiters (per IP and per site) and pays for them.
RATE_LIMIT = 10_000_000
STOP_GRACE_S = 45  # fieldlab's own graceful timeout is 30 s
# --sweep: writer knobs (and PostgreSQL worker counts) worth trying, set by env vars only.
SWEEP: dict[str, list[dict[str, str]]] = {
    "sqlite": [
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "0"},
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "2"},
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "5"},
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "20"},
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "5", "FIELDLAB_BATCH_MAX_ROWS": "2000"},
    ],
    "postgres": [
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "0"},
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "5"},
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "20"},
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "5", "FIELDLAB_WORKERS": "1"},
        {"FIELDLAB_BATCH_MAX_WAIT_MS": "5", "FIELDLAB_WORKERS": "3"},
    ],
}


@dataclass
class Options:
    seconds: int
    warmup: int
    connections: int
    threads: int
    profile: bool = False  # py-spy the fieldlab server during the measured run
    quiet_wait: int = 0  # seconds to wait at most for other jobs on the box to go quiet


def bench_env() -> dict[str, str]:
    """The caller's environment without FIELDLAB_* or multiprocess-metrics settings."""
    drop = ("FIELDLAB_", "PROMETHEUS_MULTIPROC_DIR")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def run_server(
    server: str, db: str, workers: int, settings: dict[str, str], opts: Options, procs: Procs, tmp: Path
) -> Run:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    tag = f"{server[0]}{secrets.token_hex(3)}"
    log = tmp / f"{server}-{db}-{tag}.log"
    env = bench_env()
    if server == "noop":
        argv = [sys.executable, "-m", "bench.noop_app", "--port", str(port), "--workers", str(workers)]
        proc = procs.start(argv, env=env, log=log)
        try:
            wait_up(proc, f"{base}/api/v1/beacon", log, want=None, timeout=60)
            return _measure(server, db, workers, settings, opts, procs, proc, base, "nokey", tag)
        finally:
            procs.forget(proc)

    admin = secrets.token_urlsafe(16)
    env.update(
        FIELDLAB_ADMIN_TOKEN=admin,
        FIELDLAB_RATE_LIMIT_PER_IP=str(RATE_LIMIT),
        FIELDLAB_RATE_LIMIT_PER_SITE=str(RATE_LIMIT),
        **settings,
    )
    with fresh_database(db, tmp, procs, env) as url:
        env["FIELDLAB_DATABASE_URL"] = url
        argv = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
        proc = procs.start([*argv, "--workers", str(workers)], env=env, log=log)
        try:
            wait_up(proc, f"{base}/readyz", log, want=200, timeout=90)
            status, body = http(
                "POST",
                f"{base}/api/v1/sites",
                body={"name": "bench-shop", "origins": [ORIGIN]},
                headers={"Authorization": f"Bearer {admin}"},
            )
            if status != 201:
                raise BenchError(f"creating the site answered {status}: {body[:300]!r}")
            run = _measure(
                server, db, workers, settings, opts, procs, proc, base, json.loads(body)["key"], tag
            )
        finally:
            procs.forget(proc)
        if run.stop_rc not in CLEAN_EXIT or "Application shutdown complete" not in log.read_text():
            print(
                f"  ! fieldlab did not shut down cleanly (exit {run.stop_rc}):\n{tail(log)}", file=sys.stderr
            )
        run.stored = count_stored(url, f"{tag}m")
        run.stored_total = count_stored(url)
        run.lost = run.acked - run.stored
        return run


def _measure(
    server: str,
    db: str,
    workers: int,
    settings: dict[str, str],
    opts: Options,
    procs: Procs,
    proc: Any,
    base: str,
    key: str,
    tag: str,
) -> Run:
    """Warm up; then load for ``opts.seconds``, SIGTERM the server under load, stop wrk once
    the server has exited."""
    kw: dict[str, Any] = {"connections": opts.connections, "threads": opts.threads}
    warm_ok = 0
    if opts.warmup:
        warm = finish_wrk(
            procs, start_wrk(procs, base, key, f"{tag}w", seconds=opts.warmup, **kw), interrupt=False
        )
        if warm.ok == 0:
            raise BenchError(f"{server}: no 2xx during warm-up: {warm.non_2xx} {warm.first_error}")
        warm_ok = warm.ok
        time.sleep(0.5)  # let the server finish with the requests wrk dropped when it ended
    idle_box = wait_quiet(opts.quiet_wait)
    before = scrape_metrics(base) if server == "fieldlab" else {}
    per0, busy0, pg0 = process_cpu_s(proc.pid), system_busy_s(), postgres_cpu_s()
    # wrk's own duration is only a backstop; it is interrupted once the server is gone.
    wrk = start_wrk(procs, base, key, f"{tag}m", seconds=opts.seconds + STOP_GRACE_S + 30, **kw)
    started = time.monotonic()
    spy, raw = None, Path(tempfile.gettempdir()) / f"fieldlab-prof-{tag}.raw"
    if opts.profile and server == "fieldlab":
        spy = start_profiler(procs, proc.pid, opts.seconds - 1, raw)
    time.sleep(opts.seconds)
    after = scrape_metrics(base) if server == "fieldlab" else {}
    per = {p: used - per0.get(p, 0.0) for p, used in process_cpu_s(proc.pid).items()}
    cpu, wrk_cpu = sum(per.values()), tree_cpu_s(wrk.pid)
    busy, pg_cpu = system_busy_s() - busy0, postgres_cpu_s() - pg0
    elapsed = time.monotonic() - started
    stop_started = time.monotonic()
    stop_rc = procs.stop(proc, grace_s=STOP_GRACE_S)
    stop_s = time.monotonic() - stop_started
    load = finish_wrk(procs, wrk, interrupt=True, seconds=elapsed)
    profile: dict[str, list[str]] = {}
    if spy is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.wait(15)
        procs.forget(spy)
        profile = profile_summary(raw) if raw.exists() else {}
        raw.unlink(missing_ok=True)
        raw.with_suffix(".log").unlink(missing_ok=True)
    return Run(
        server=server,
        db=db,
        workers=workers,
        settings=settings,
        load=load,
        cpu_us_per_request=round(1e6 * cpu / load.ok, 1) if load.ok else None,
        pg_cpu_us_per_request=round(1e6 * pg_cpu / load.ok, 1) if load.ok and db == "postgres" else None,
        idle_box_cores=idle_box,
        other_cpu_cores=round(max(0.0, busy - cpu - wrk_cpu - pg_cpu) / elapsed, 2),
        cpu_cores={
            name: round(value / elapsed, 2)
            for name, value in (("box", busy), ("server", cpu), ("wrk", wrk_cpu), ("postgres", pg_cpu))
        },
        # Per server process, busiest first: shows whether the workers share the load.
        process_cores=sorted(
            (round(used / elapsed, 2) for used in per.values() if used > 0.01 * elapsed), reverse=True
        ),
        warmup_ok=warm_ok,
        stop_rc=stop_rc,
        stop_s=round(stop_s, 2),
        acked=load.ok,
        writer=writer_summary({k: v - before.get(k, 0.0) for k, v in after.items()}, elapsed)
        if after
        else {},
        profile=profile,
    )


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="fieldlab beacon ingest vs a no-op Litestar endpoint, with wrk.")
    p.add_argument("--duration", type=int, default=15, help="measured seconds per server (default 15)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up seconds before each measurement")
    p.add_argument("--connections", type=int, default=64, help="concurrent keep-alive connections")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (2 cores are shared with the server)")
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--workers-sqlite", type=int, default=1, help="fieldlab/no-op workers on SQLite")
    p.add_argument("--workers-postgres", type=int, default=2, help="fieldlab/no-op workers on PostgreSQL")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELDLAB_X=V",
        help="extra fieldlab setting (repeatable), e.g. FIELDLAB_BATCH_MAX_WAIT_MS=0",
    )
    p.add_argument(
        "--sweep", action="store_true", help="run the tuning grid instead of one pair per database"
    )
    p.add_argument(
        "--quiet-wait",
        type=int,
        default=10,
        help="wait up to this many seconds before each measurement for other jobs to go quiet (default 10)",
    )
    p.add_argument("--profile", action="store_true", help="py-spy fieldlab during the measured run")
    p.add_argument("--out", type=Path, default=None, help="JSON results file")
    p.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed (default: exit 0)")
    args = p.parse_args(argv)
    for item in args.set:
        if not re.fullmatch(r"FIELDLAB_[A-Z_]+=.*", item):
            p.error(f"--set {item!r}: expected FIELDLAB_NAME=VALUE")
    if not 1 <= args.duration <= 120 or not 0 <= args.warmup <= 30 or not 1 <= args.connections <= 1000:
        p.error("--duration must be 1..120 s, --warmup 0..30 s, --connections 1..1000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk (`make bench` does it)", file=sys.stderr)
        return 2
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if "postgres" in dbs and not postgres_reachable():
        print(
            f"PostgreSQL at {PG_HOST}:{PG_PORT} is not reachable"
            + ("" if args.db == "postgres" else ": SQLite only")
        )
        if args.db == "postgres":
            return 2
        dbs.remove("postgres")
    opts = Options(args.duration, args.warmup, args.connections, args.threads, args.profile, args.quiet_wait)
    extra = dict(item.split("=", 1) for item in args.set)
    workers_for = {"sqlite": args.workers_sqlite, "postgres": args.workers_postgres}
    print(
        f"load: wrk -t{opts.threads} -c{opts.connections}, {opts.warmup}s warm-up + {opts.seconds}s measured, then "
        f"SIGTERM under load; unique page-view ids, text/plain, Origin {ORIGIN}, Chrome UA; "
        f"{os.cpu_count()} cores shared by wrk, the server and PostgreSQL"
    )
    print(
        f"rate limiting stays ON: FIELDLAB_RATE_LIMIT_PER_IP = FIELDLAB_RATE_LIMIT_PER_SITE = {RATE_LIMIT:,}/s, "
        "above the offered load, so nothing is throttled but both limiters' cost is measured"
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

    # Both end the run through the same cleanup (SIGINT explicitly: a shell may have set it
    # to "ignore" for background jobs).
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        with tempfile.TemporaryDirectory(prefix="fieldlab-bench-") as tmp_name:
            for db in dbs:
                noops: dict[int, Run] = {}
                swept: list[tuple[Run, Verdict]] = []
                for settings in SWEEP[db] if args.sweep else [extra]:
                    fl_settings = dict(settings)
                    workers = int(fl_settings.pop("FIELDLAB_WORKERS", workers_for[db]))
                    if workers not in noops:
                        print(f"\n[{db}] no-op, workers={workers} ...", flush=True)
                        noops[workers] = run_server("noop", db, workers, {}, opts, procs, Path(tmp_name))
                    print(f"[{db}] fieldlab, workers={workers} {fl_settings or ''} ...", flush=True)
                    fl = run_server("fieldlab", db, workers, fl_settings, opts, procs, Path(tmp_name))
                    v = judge(fl, noops[workers])
                    all_passed &= v.passed
                    swept.append((fl, v))
                    print_pair(fl, noops[workers], v)
                    verdict = asdict(v) | {"passed": v.passed}
                    results["runs"].append(
                        {"db": db, "fieldlab": asdict(fl), "noop": asdict(noops[workers]), "verdict": verdict}
                    )
                if args.sweep:
                    print_sweep(db, noops, swept)
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"\nbenchmark error: {exc}", file=sys.stderr)
        return 2
    finally:
        procs.close()
    out = args.out or RESULTS / ("beacon_sweep.json" if args.sweep else "beacon.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    with contextlib.suppress(ValueError):
        out = out.relative_to(ROOT)
    print(f"\noverall: {mark(all_passed)}   (results in {out})")
    return 1 if args.strict and not all_passed else 0


if __name__ == "__main__":
    sys.exit(main())

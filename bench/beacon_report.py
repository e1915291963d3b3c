"""What bench/beacon_bench.py measured, whether it meets the goals, and how it is printed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from beacon_harness import CLEAN_EXIT, Load

GOAL_THROUGHPUT = 0.70  # fieldlab beacons/s >= 70 % of the no-op's
GOAL_P99 = 2.0  # fieldlab p99 <= 2x the no-op's p99


@dataclass
class Run:
    server: str  # fieldlab | noop
    db: str
    workers: int
    settings: dict[str, str]
    load: Load
    cpu_us_per_request: float | None  # server process tree (PostgreSQL's own CPU not included)
    pg_cpu_us_per_request: float | None  # PostgreSQL server processes (PostgreSQL runs only)
    other_cpu_cores: float  # CPU busy on this box beyond server, wrk and PostgreSQL: noise
    idle_box_cores: float  # CPU busy on the box just before the measurement (server idle)
    cpu_cores: dict[str, float]  # busy cores during the measurement: box, server, wrk, postgres
    process_cores: list[float]  # busy cores per server process (supervisor and workers)
    warmup_ok: int = 0
    stop_rc: int | None = None
    stop_s: float | None = None  # SIGTERM to exit, under load
    acked: int = 0  # 2xx of the measured run
    stored: int | None = None  # distinct page views of the measured run
    stored_total: int | None = None  # count(DISTINCT pageview_id) FROM measurement, warm-up included
    lost: int | None = None  # acked - stored
    writer: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, list[str]] = field(default_factory=dict)


NOISE_CORES = 0.25  # other jobs' CPU during a run above this: the pair is not a fair comparison


@dataclass
class Verdict:
    throughput_ratio: float
    p99_ratio: float
    lost: int | None
    throughput_ok: bool
    p99_ok: bool
    lost_ok: bool
    # no-op CPU per 2xx / fieldlab's (PostgreSQL's own CPU included): the throughput ratio the
    # pair would show if both were CPU-bound on a quiet box. Steadier than the measured ratio
    # when other jobs share the machine.
    cpu_ratio: float | None = None
    noisy: bool = False  # other jobs used the CPU during a run: the measured ratios are not fair

    @property
    def passed(self) -> bool:
        return self.throughput_ok and self.p99_ok and self.lost_ok and not self.noisy


def judge(fl: Run, noop: Run) -> Verdict:
    tr = fl.load.rps_2xx / noop.load.rps_2xx if noop.load.rps_2xx else 0.0
    pr = fl.load.p99_ms / noop.load.p99_ms if noop.load.p99_ms else float("inf")
    lost_ok = fl.lost == 0 and fl.stop_rc in CLEAN_EXIT and not fl.writer.get("writer_errors")
    cpu_ratio = None
    if fl.cpu_us_per_request and noop.cpu_us_per_request:
        fl_cpu = fl.cpu_us_per_request + (fl.pg_cpu_us_per_request or 0.0)
        noop_cpu = noop.cpu_us_per_request + (noop.pg_cpu_us_per_request or 0.0)
        cpu_ratio = round(noop_cpu / fl_cpu, 3)
    noisy = max(fl.other_cpu_cores, noop.other_cpu_cores) > NOISE_CORES
    return Verdict(
        round(tr, 3), round(pr, 2), fl.lost, tr >= GOAL_THROUGHPUT, pr <= GOAL_P99, lost_ok, cpu_ratio, noisy
    )


def mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k}:{v}" for k, v in d.items()) or "0"


def print_pair(fl: Run, noop: Run, v: Verdict) -> None:
    label = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[fl.db]
    extra = " ".join(f"{k}={val}" for k, val in fl.settings.items())
    print(f"\n== {label}: fieldlab workers={fl.workers} vs no-op workers={noop.workers} {extra}".rstrip())
    a, b = fl.load, noop.load
    rows: list[tuple[str, str, str, str, str]] = [
        ("", "fieldlab", "no-op", "ratio", "goal"),
        ("beacons/s (2xx)", f"{a.rps_2xx:,.0f}", f"{b.rps_2xx:,.0f}", f"{100 * v.throughput_ratio:.1f}%",
         f">= 70%  {mark(v.throughput_ok)}"),
        ("latency p50 (ms)", f"{a.p50_ms:.2f}", f"{b.p50_ms:.2f}", f"{a.p50_ms / b.p50_ms:.2f}x", ""),
        ("latency p99 (ms)", f"{a.p99_ms:.2f}", f"{b.p99_ms:.2f}", f"{v.p99_ratio:.2f}x",
         f"<= 2x   {mark(v.p99_ok)}"),
        ("latency p99.9 / max (ms)", f"{a.p999_ms:.1f} / {a.max_ms:.0f}", f"{b.p999_ms:.1f} / {b.max_ms:.0f}", "", ""),
        ("non-2xx responses", _counts(a.non_2xx), _counts(b.non_2xx), "", ""),
        ("socket errors (after SIGTERM)", _counts(a.socket_errors), _counts(b.socket_errors), "", ""),
        ("server CPU per 2xx (us)", f"{fl.cpu_us_per_request}", f"{noop.cpu_us_per_request}", "", ""),
        ("server processes' CPU (cores)", " ".join(map(str, fl.process_cores)), " ".join(map(str, noop.process_cores)), "", ""),
        ("other jobs' CPU before / during (cores)", f"{fl.idle_box_cores} / {fl.other_cpu_cores}",
         f"{noop.idle_box_cores} / {noop.other_cpu_cores}", "", "noisy if > 0.25"),
        ("SIGTERM under load: exit, seconds", f"{fl.stop_rc}, {fl.stop_s}", f"{noop.stop_rc}, {noop.stop_s}", "", ""),
        ("acknowledged (2xx, measured run)", f"{fl.acked:,}", "", "", ""),
        ("stored page views (measured run)", f"{fl.stored:,}" if fl.stored is not None else "?", "", "", ""),
        ("lost = acknowledged - stored", f"{v.lost}", "", "", f"= 0     {mark(v.lost_ok)}"),
    ]  # fmt: skip
    if fl.pg_cpu_us_per_request is not None:
        rows.insert(
            8,
            (
                "PostgreSQL CPU per 2xx (us)",
                f"{fl.pg_cpu_us_per_request}",
                f"{noop.pg_cpu_us_per_request}",
                "",
                "",
            ),
        )
    for row in rows:
        print("{:<36}{:>14}{:>14}{:>9}   {}".format(*row))
    if fl.stored is not None and fl.stored > fl.acked:
        print(
            f"  ({fl.stored - fl.acked} stored but never acknowledged: committed, the answer did not reach wrk)"
        )
    print(f"  all page views stored (incl. warm-up): {fl.stored_total:,}; warm-up 2xx: {fl.warmup_ok:,}")
    wr = fl.writer
    if wr.get("batches"):
        print(
            f"  group commit (/metrics, measured run): {wr['batches']:,} commits for {wr['beacons']:,} beacons;"
            f" batch size mean {wr['mean_batch']} (_sum {wr['batch_size_sum']:.0f} / _count {wr['batches']}),"
            f" commit latency mean {wr['mean_commit_ms']} ms (_sum {wr['commit_seconds_sum']} s / _count"
            f" {wr['commit_seconds_count']}); writer busy {100 * (wr['commit_busy_share'] or 0):.0f}% of the time"
        )
        print(f"  batch-size histogram (cumulative, le=): {_counts(wr['batch_size_le'])}")
    if wr.get("rejected") or wr.get("writer_errors"):
        print(f"  rejected by reason: {wr.get('rejected')}; writer errors: {wr.get('writer_errors')}")
    if a.first_error:
        print(f"  first non-2xx answer: {a.first_error[:200]}")
    if fl.profile:
        print(
            f"  py-spy, {fl.profile['busy_samples'][0]} busy samples (the profiler slows the server a little):"
        )
        print("    own time:\n" + "\n".join(f"      {ln}" for ln in fl.profile["own"][:15]))
        print(
            "    inclusive (app/, litestar/, uvicorn/):\n"
            + "\n".join(f"      {ln}" for ln in fl.profile["inclusive"][:25])
        )
    if v.cpu_ratio is not None:
        print(
            f"  CPU per beacon, no-op / fieldlab (PostgreSQL's CPU included): {100 * v.cpu_ratio:.1f}%"
            " = the throughput ratio if both were CPU-bound on a quiet box"
        )
    if v.noisy and v.throughput_ok and v.p99_ok and v.lost_ok:
        print(
            f"  verdict: INCONCLUSIVE (goals met, but other jobs used > {NOISE_CORES} cores during a run,"
            " so the two runs did not have the same machine)"
        )
    elif v.noisy:
        print(f"  verdict: FAIL (other jobs used > {NOISE_CORES} cores during a run: the ratios are noisy)")
    else:
        print(f"  verdict: {mark(v.passed)}")


def print_sweep(db: str, noops: dict[int, Run], runs: list[tuple[Run, Verdict]]) -> None:
    base = ", ".join(
        f"workers={w}: {r.load.rps_2xx:,.0f}/s p99 {r.load.p99_ms:.1f} ms" for w, r in noops.items()
    )
    print(f"\n== sweep {db} (no-op {base})")
    row = "{:<50}{:>9}{:>7}{:>8}{:>8}{:>7}{:>8}{:>7}{:>6}{:>7}"
    head = ("fieldlab settings", "beacon/s", "ratio", "p50ms", "p99ms", "p99x", "us/req", "batch", "lost")
    print(row.format(*head, "other"))
    for run, v in runs:
        s = " ".join(f"{k.removeprefix('FIELDLAB_')}={val}" for k, val in run.settings.items())
        print(
            row.format(
                f"workers={run.workers} {s}",
                f"{run.load.rps_2xx:,.0f}",
                f"{100 * v.throughput_ratio:.0f}%",
                f"{run.load.p50_ms:.1f}",
                f"{run.load.p99_ms:.1f}",
                f"{v.p99_ratio:.1f}",
                f"{run.cpu_us_per_request:.0f}" if run.cpu_us_per_request else "?",
                f"{run.writer.get('mean_batch')}",
                f"{run.lost}",
                f"{run.other_cpu_cores}",
            )
        )

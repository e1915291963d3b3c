"""Synthetic-monitoring benchmark (issue 5, part 9), two ratios measured side by side in one run.

1. Checks per hour of a three-step declarative flow (home, product, search; pages served by the
   benchmark on 127.0.0.1) with one warm ``BrowserPool`` and a new context per check, against
   launching a browser per check (a new ``BrowserPool`` per check, closed after it: Playwright
   driver and Chromium both started and stopped each time). A third mode keeps the driver and
   kills only the browser after each check (``BrowserPool.kill_tree``, what a timed-out run
   costs). Two more run the same flow with Playwright alone, warm and with a driver and
   browser per check: the ratio the flow itself allows, whatever fieldlab does around it. Modes are interleaved, in alternating order, after one untimed run of each, so the
   box's changing load hits them alike; an untimed pause (--settle) before each check keeps one
   check's teardown from being charged to the next. Each run must pass, or the benchmark stops.
2. Beacon ingest (wrk + bench/beacon.lua against ``python -m app serve``) while Lighthouse
   audits run, as a share of idle throughput: see bench/probe_ingest.py.

    .venv/bin/python bench/probe_bench.py [--iterations 10] [--duration 20] [--audit-via server|bench]
    .venv/bin/python bench/probe_bench.py --only flows        # or: --only ingest

Results: bench/results/probe.json. Exit 0 unless --strict and a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from beacon_harness import ROOT, BenchError, Procs, system_busy_s
from probe_ingest import IngestOptions, run_ingest
from probe_site import FLOW_STEPS, serve_shop

from probes import procs as proc_table
from probes.browser import DEVICES, LAUNCH_ARGS, BrowserPool, find_chromium
from probes.declarative import flow_from_steps
from probes.flow import run_flow
from probes.safety import TargetPolicy

RESULTS = ROOT / "bench" / "results"
ONE_STEP: list[dict[str, Any]] = [{"step": "home", "actions": [{"goto": "/"}]}]
GOAL_REUSE = 4.0  # warm-browser checks/hour >= 4x launch-per-check
MODES = {
    "warm": "warm browser, new context per check",
    "cold": "new browser per check (new BrowserPool, closed after)",
    "relaunch": "new browser per check, driver kept (kill_tree after)",
    "pw-warm": "Playwright alone: warm browser, new context per check",
    "pw-cold": "Playwright alone: new driver + browser per check",
}
FLOW_MODES = ("warm", "cold", "relaunch", "pw-warm", "pw-cold")


class BarePlaywright:
    """The same flow with Playwright alone - no fieldlab step recording, vitals, screenshots,
    traces, guard or egress proxy: the reuse ratio this flow allows at best, whatever fieldlab
    does around it (the browser is started as BrowserPool starts it, same switches)."""

    def __init__(self, flow: Any, site: str) -> None:
        self.flow, self.site = flow, site
        self.args = [*LAUNCH_ARGS, *(["--no-sandbox"] if os.geteuid() == 0 else [])]
        self.executable = find_chromium()
        self._pw: Any = None
        self._browser: Any = None

    async def _launch(self) -> tuple[Any, Any]:
        from playwright.async_api import async_playwright

        pw = await async_playwright().start()
        return pw, await pw.chromium.launch(executable_path=self.executable, args=self.args)

    async def _check(self, browser: Any) -> None:
        ctx = await browser.new_context(**DEVICES["desktop"].context_options("130"), base_url=self.site)
        try:
            page = await ctx.new_page()
            await self.flow(page, lambda _name: contextlib.nullcontext())
        finally:
            await ctx.close()

    async def warm(self) -> None:
        if self._browser is None:
            self._pw, self._browser = await self._launch()
        await self._check(self._browser)

    async def cold(self) -> None:
        pw, browser = await self._launch()
        try:
            await self._check(browser)
        finally:
            await browser.close()
            await pw.stop()

    async def close(self) -> None:
        if self._browser is not None:
            await self._browser.close()
            await self._pw.stop()
            self._browser = None


async def flow_rates(
    site: str,
    iterations: int,
    tmp: Path,
    steps: list[dict[str, Any]],
    modes: tuple[str, ...] = FLOW_MODES,
    settle_s: float = 1.0,
) -> dict[str, Any]:
    flow = flow_from_steps(steps)
    policy = TargetPolicy(allow_hosts=[site.split("//", 1)[1]])
    warm, shared = BrowserPool(), BrowserPool()
    bare = BarePlaywright(flow, site)
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    steps_ms: dict[str, list[float]] = {m: [] for m in modes}

    async def check(mode: str, i: int) -> tuple[float, float]:
        out = tmp / f"{mode}-{i}"
        # Untimed: the previous check's leftovers (a closed pool's garbage, its processes' exit)
        # must not be charged to the next check, which may be of another mode.
        gc.collect()
        await asyncio.sleep(settle_s)
        kw: dict[str, Any] = {"base_url": site, "policy": policy, "artifacts_dir": out, "retries": 0}
        t0 = time.perf_counter()
        if mode.startswith("pw-"):
            await (bare.warm() if mode == "pw-warm" else bare.cold())
            return time.perf_counter() - t0, 0.0
        if mode == "warm":
            result = await run_flow(flow, pool=warm, **kw)
        elif mode == "cold":
            pool = BrowserPool()
            try:
                result = await run_flow(flow, pool=pool, **kw)
            finally:
                await pool.close()
        else:
            try:
                result = await run_flow(flow, pool=shared, **kw)
            finally:
                await shared.kill_tree()
        took = time.perf_counter() - t0
        if result.status != "passed":
            raise BenchError(f"{mode} check {i}: {result.status}: {result.error}")
        shutil.rmtree(out, ignore_errors=True)  # screenshots: written by every mode alike, not kept
        return took, sum(s.duration_ms for s in result.steps)

    busy0, started = system_busy_s(), time.monotonic()
    try:
        for mode in modes:  # untimed: the warm pool's launch, page cache, driver start-up
            await check(mode, 0)
        for i in range(1, iterations + 1):
            for mode in modes if i % 2 else modes[::-1]:
                took, in_steps = await check(mode, i)
                seconds[mode].append(took)
                steps_ms[mode].append(in_steps)
            print(
                f"  {i}/{iterations}: " + "  ".join(f"{m} {seconds[m][-1]:.2f}s" for m in modes), flush=True
            )
    finally:
        await warm.close()
        await shared.close()
        await bare.close()
    box_cores = (system_busy_s() - busy0) / (time.monotonic() - started)
    leftover = [p.pid for p in proc_table.chromium_processes()]
    figures = {
        m: {
            "what": MODES[m],
            "seconds": [round(s, 3) for s in seconds[m]],
            "median_s": round(statistics.median(seconds[m]), 3),
            "mean_s": round(statistics.fmean(seconds[m]), 3),
            "checks_per_hour": round(3600 / statistics.fmean(seconds[m])),
            "steps_median_ms": round(statistics.median(steps_ms[m]), 1),
        }
        for m in modes
    }
    per_hour = {m: figures[m]["checks_per_hour"] for m in modes}
    ratio = per_hour["warm"] / per_hour["cold"]
    ceiling = per_hour["pw-warm"] / per_hour["pw-cold"] if "pw-cold" in modes else None
    return {
        "flow": [s["step"] for s in steps],
        "iterations": iterations,
        "settle_s": settle_s,
        "box_busy_cores": round(box_cores, 2),  # whole box, this benchmark included
        "modes": figures,
        "reuse_ratio": round(ratio, 2),
        "reuse_ratio_vs_relaunch": round(per_hour["warm"] / per_hour["relaunch"], 2)
        if "relaunch" in modes
        else None,
        "playwright_alone_ratio": round(ceiling, 2) if ceiling else None,
        "goal_ratio_min": GOAL_REUSE,
        "leftover_chromium": leftover,
        "passed": ratio >= GOAL_REUSE and not leftover,
    }


def mark(ok: bool | None) -> str:
    return "(for scale, no goal)" if ok is None else "PASS" if ok else "FAIL"


def print_flows(r: dict[str, Any]) -> None:
    print(f"\nchecks per hour, flow {' > '.join(r['flow'])}, {r['iterations']} timed checks per mode, one at a "
          f"time; box busy {r['box_busy_cores']:.2f} of {os.cpu_count()} cores")  # fmt: skip
    print(f"  {'mode':56} {'median s':>9} {'mean s':>7} {'checks/h':>9} {'in steps ms':>12}")
    for m in r["modes"].values():
        print(f"  {m['what']:56} {m['median_s']:9.2f} {m['mean_s']:7.2f} {m['checks_per_hour']:9,} "
              f"{m['steps_median_ms']:12.0f}")  # fmt: skip
    relaunch = r["reuse_ratio_vs_relaunch"]
    print(f"  warm reuse vs browser per check: {r['reuse_ratio']:.2f}x (goal >= {r['goal_ratio_min']:g}x)"
          + (f", vs relaunch with the driver kept: {relaunch:.2f}x" if relaunch else "")
          + (f"; Playwright alone: {r['playwright_alone_ratio']:.2f}x" if r.get("playwright_alone_ratio") else "")
          + f"; Chromium processes left: {len(r['leftover_chromium'])}   {mark(r['passed'])}")  # fmt: skip


def print_ingest(r: dict[str, Any]) -> None:
    o = r["options"]
    print(f"\nbeacon ingest, wrk -t{o['threads']} -c{o['connections']}, {o['seconds']}s per window, "
          f"Lighthouse {o['preset']} audits via {o['audit_via']}")  # fmt: skip
    print(f"  {'window':13} {'beacons/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'audit':>6}  "
          f"cores: {'box':>4} {'server':>6} {'wrk':>4} {'LH':>4} {'other':>5}  {'lost':>4}")  # fmt: skip
    for w in r["windows"]:
        c, load = w["cores"], w["load"]
        print(f"  {w['name']:13} {load['rps_2xx']:10,.0f} {load['p50_ms']:7.2f} {load['p99_ms']:7.2f} "
              f"{w['audit_coverage']:6.0%}         {c['box']:4.2f} {c['server']:6.2f} {c['wrk']:4.2f} "
              f"{c['lighthouse']:4.2f} {c['other']:5.2f}  {w['lost']:4}")  # fmt: skip
    failed = f", {r['audits_failed']} failed" if r["audits_failed"] else ""
    rounds = ", ".join(f"{x:.0%}" for x in r["share_per_round"])
    print(f"  audits: {len(r['audits'])}{failed}; idle windows {r['idle_rps_min']:,.0f}..{r['idle_rps_max']:,.0f} "
          f"beacons/s; each audit window / the idle windows either side: {rounds}")  # fmt: skip
    print(f"  during audits / idle: {r['during_rps']:,.0f} / {r['idle_rps']:,.0f} beacons/s = {r['share']:.0%} "
          f"(goal >= {r['goal_share_min']:.0%}); p50 {r['idle_p50_ms']:.2f} -> {r['during_p50_ms']:.2f} ms, "
          f"p99 {r['idle_p99_ms']:.2f} -> {r['during_p99_ms']:.2f} ms   {mark(r['passed'])}")  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="fieldlab synthetic checks: warm-browser reuse; ingest during audits."
    )
    p.add_argument("--iterations", type=int, default=10, help="timed checks per mode (default 10)")
    p.add_argument("--settle", type=float, default=1.0,
                   help="untimed pause before each check, so one check's teardown is not charged to the next")  # fmt: skip
    p.add_argument("--duration", type=int, default=20, help="seconds per beacon window (default 20)")
    p.add_argument("--rounds", type=int, default=2, help="audit windows, each between idle ones (default 2)")
    p.add_argument("--connections", type=int, default=64, help="wrk keep-alive connections (default 64)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--audit-via", choices=["server", "bench"], default="server",
                   help="run audits through fieldlab's scheduler (default) or in this process")  # fmt: skip
    p.add_argument("--preset", choices=["mobile", "desktop"], default="mobile", help="Lighthouse preset")
    p.add_argument("--only", choices=["flows", "ingest"], help="run one half only")
    p.add_argument("--out", type=Path, default=RESULTS / "probe.json", help="JSON results file")
    p.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = p.parse_args(argv)
    if (
        not 1 <= args.iterations <= 200
        or not 0 <= args.settle <= 30
        or not 3 <= args.duration <= 300
        or not 1 <= args.rounds <= 10
        or not 1 <= args.connections <= 1000
    ):
        p.error(
            "--iterations must be 1..200, --settle 0..30 s, --duration 3..300 s, --rounds 1..10, --connections 1..1000"
        )
    return args


def keep_other_half(results: dict[str, Any], out: Path) -> None:
    """``--only`` reruns one half: the other half's figures stay in the results file, each
    marked with the time it was measured, instead of being dropped."""
    try:
        earlier = json.loads(out.read_text())
    except (OSError, ValueError):
        return
    for key in ("flows", "one_step", "ingest"):
        if key not in results and isinstance(earlier.get(key), dict):
            results[key] = {"when": earlier.get("when")} | earlier[key]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.only != "flows" and shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk (`make bench` does it)", file=sys.stderr)
        return 2
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    procs = Procs()
    try:
        with serve_shop() as site, tempfile.TemporaryDirectory(prefix="fieldlab-probe-bench-") as tmp:
            if args.only != "ingest":
                print(f"[flows] {args.iterations} checks per mode against {site} ...", flush=True)
                results["flows"] = asyncio.run(
                    flow_rates(site, args.iterations, Path(tmp), FLOW_STEPS, settle_s=args.settle)
                )
                print_flows(results["flows"])
                print("\n[flows] the same for a one-step check (goto /), warm vs new browser ...", flush=True)
                one = asyncio.run(
                    flow_rates(
                        site,
                        args.iterations,
                        Path(tmp),
                        ONE_STEP,
                        ("warm", "cold", "pw-warm", "pw-cold"),
                        args.settle,
                    )
                )
                results["one_step"] = one | {"passed": None}  # for scale only: the goal is the flow's
                print_flows(results["one_step"])
            if args.only != "flows":
                print(f"\n[ingest] fieldlab on SQLite, 1 worker; audits of {site}/ ...", flush=True)
                opts = IngestOptions(
                    args.duration, args.rounds, args.connections, args.threads, args.audit_via, args.preset
                )
                results["ingest"] = run_ingest(opts, f"{site}/", procs)
                print_ingest(results["ingest"])
    except KeyboardInterrupt:
        print("\ninterrupted; servers and browsers stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"\nbenchmark error: {exc}", file=sys.stderr)
        return 2
    finally:
        procs.close()
    if args.only:
        keep_other_half(results, args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    passed = all(results[k]["passed"] for k in ("flows", "ingest") if k in results)
    out = args.out
    with contextlib.suppress(ValueError):
        out = out.relative_to(ROOT)
    print(f"\noverall: {mark(passed)}   (results in {out})")
    return 1 if args.strict and not passed else 0


if __name__ == "__main__":
    sys.exit(main())

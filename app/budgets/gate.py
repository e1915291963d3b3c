"""``fieldlab gate``: judge Lighthouse reports and flow runs against a budget file, for CI.

Exit 0 when nothing fails, 1 when a budget fails, 2 for a usage or infrastructure problem (a
bad budget file, no reports, Chromium or Lighthouse missing, the URL unreachable), always with
a one-line reason on stderr.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import statistics
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from app.budgets import gateserver, lhci, report
from app.budgets.evaluate import Budgets, Data, evaluate
from app.budgets.load import load_budgets
from app.budgets.regress import Regression, Thresholds
from app.budgets.source import BudgetFileError
from app.budgets.verdict import Verdict, worst
from app.config import Settings
from probes.lighthouse import slow_host_hint

LHCI_NAME = re.compile(r"lhr-\d+\.json")  # the files `lhci assert` reads, and only those
MAX_RUNS = 20  # a gate that audits more often than this is a benchmark, not a check


class GateError(Exception):
    """Usage or infrastructure: the gate cannot judge (exit 2); the message is one line."""


@dataclass
class GateOptions:
    budgets: Path
    lhr: Path | None = None
    url: str | None = None
    runs: int = 3
    flows: list[Path] = field(default_factory=list)
    preset: str = "mobile"
    junit: Path | None = None
    markdown: Path | None = None
    json_out: Path | None = None
    baseline_lhr: Path | None = None
    allow_private: bool = False
    output_dir: Path | None = None
    baseline_server: str | None = None
    upload_server: str | None = None
    branch: str | None = None
    commit: str | None = None
    token: str = ""
    site: int | None = None


@dataclass
class Outcome:
    verdicts: list[Verdict]
    baseline: list[Verdict] | None = None
    regressions: list[Regression] = field(default_factory=list)
    data: Data = field(default_factory=Data)
    budgets: Budgets = field(default_factory=Budgets)


def slow_host_warning(lhrs: Sequence[Mapping[str, Any]]) -> str | None:
    """The calibration hint of the slowest host's mobile report, if it needs one."""
    hints = []
    for lhr in lhrs:
        config = lhr.get("configSettings") or {}
        if config.get("formFactor") != "mobile" or config.get("throttlingMethod") == "provided":
            continue
        index = (lhr.get("environment") or {}).get("benchmarkIndex")
        if hint := slow_host_hint(index, (config.get("throttling") or {}).get("cpuSlowdownMultiplier")):
            hints.append((index, hint))
    if not hints:
        return None
    return f"warning: {min(hints)[1]} (README: Lighthouse on slow or fast hosts)"


def calibration_note(lhrs: Sequence[Mapping[str, Any]]) -> str | None:
    """For FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN=auto: the slowdown the mobile audits ran
    with and the host speed it was calibrated to, so a CI log says what its numbers stand for."""
    configs = [lhr.get("configSettings") or {} for lhr in lhrs]
    slowdowns = {
        (c.get("throttling") or {}).get("cpuSlowdownMultiplier")
        for c in configs
        if c.get("formFactor") == "mobile"
    }
    indexes = [
        i
        for lhr in lhrs
        if isinstance(i := (lhr.get("environment") or {}).get("benchmarkIndex"), int | float)
    ]
    if not slowdowns or not indexes:
        return None
    used = ", ".join(f"{s:g}x" for s in sorted(s for s in slowdowns if isinstance(s, int | float)))
    return (
        f"Lighthouse: mobile CPU slowdown {used}, calibrated to this host"
        f" (benchmarkIndex {statistics.median(indexes):.0f}; FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN=auto)"
    )


def _looks_like_lhr(data: Any) -> bool:
    return isinstance(data, dict) and "audits" in data and "lighthouseVersion" in data


def read_lhrs(path: Path) -> list[dict[str, Any]]:
    """Lighthouse reports from a file or a folder: ``lhr-*.json`` as ``lhci collect`` leaves
    them (in ``.lighthouseci/`` too), else every ``*.json``/``*.json.gz`` that is an LHR."""
    if not path.exists():
        raise GateError(f"--lhr {path}: no such file or folder")
    if path.is_dir() and (path / ".lighthouseci").is_dir() and not list(path.glob("lhr-*.json")):
        path = path / ".lighthouseci"
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.iterdir() if LHCI_NAME.fullmatch(p.name))
        if not files:
            files = sorted(p for p in path.iterdir() if p.name.endswith((".json", ".json.gz")))
    lhrs = []
    for f in files:
        try:
            raw = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
            data = json.loads(raw)
        except (OSError, ValueError) as exc:
            raise GateError(f"{f}: not a readable Lighthouse report: {exc}") from None
        if _looks_like_lhr(data):
            lhrs.append(data)
        elif path.is_file() or LHCI_NAME.fullmatch(f.name):
            raise GateError(f"{f}: not a Lighthouse report (no audits/lighthouseVersion)")
    if not lhrs:
        raise GateError(f"--lhr {path}: no Lighthouse reports (lhr-*.json) found")
    return lhrs


def _reachable(url: str) -> None:
    try:
        # No redirects: only the checked URL is contacted outside the policy-enforcing proxy.
        with httpx.Client(timeout=15, follow_redirects=False, trust_env=False) as client:
            client.get(url)
    except httpx.HTTPError as exc:
        raise GateError(f"URL unreachable: {url} ({type(exc).__name__}: {exc})") from None


def needs_lighthouse(budgets: Budgets, with_flows: bool) -> bool:
    """Audit with Lighthouse when some budget reads it: LHCI configs, ``lighthouse:*`` budgets,
    and lab budgets when no flow is given (with flows, lab budgets read the flows)."""
    if budgets.lhci is not None:
        return True
    metrics = [b.metric for b in budgets.spec.budgets] if budgets.spec is not None else []
    return any(m.startswith("lighthouse:") or (m.startswith("lab:") and not with_flows) for m in metrics)


async def _collect(opts: GateOptions, budgets: Budgets, settings: Settings, workdir: Path) -> Data:
    from probes.browser import BrowserPool, ChromiumNotFound, find_chromium
    from probes.flow import FlowLoadError, load_flow_file, run_flow
    from probes.lighthouse import find_lighthouse, load_lhr, run_lighthouse
    from probes.safety import TargetPolicy, TargetRefused

    assert opts.url is not None
    policy = TargetPolicy(allow_private=opts.allow_private or settings.allow_private_targets)
    try:
        await policy.check_url_async(opts.url)
        chromium = find_chromium(settings.chromium or None)
        flows = [load_flow_file(f) for f in opts.flows]
    except (TargetRefused, ChromiumNotFound, FlowLoadError) as exc:
        raise GateError(str(exc)) from None
    await asyncio.to_thread(_reachable, opts.url)
    lhrs: list[dict[str, Any]] = []
    if needs_lighthouse(budgets, bool(flows)):
        try:
            find_lighthouse()
        except FileNotFoundError as exc:
            raise GateError(str(exc)) from None
        result = await run_lighthouse(
            opts.url, chromium=chromium, preset=opts.preset, runs=opts.runs, output_dir=workdir / "lighthouse",
            policy=policy, timeout_s=settings.lighthouse_timeout_s,
            cpu_slowdown=settings.lighthouse_cpu_slowdown(opts.preset),
        )  # fmt: skip
        if not result.lhr_paths:
            raise GateError(f"Lighthouse produced no report for {opts.url}: {result.error}")
        lhrs = [load_lhr(workdir / "lighthouse" / p) for p in result.lhr_paths]
    flow_runs: list[dict[str, Any]] = []
    if flows:
        pool = BrowserPool(chromium=chromium)
        try:
            for i, flow in enumerate(flows):
                for n in range(opts.runs):
                    run = await run_flow(
                        flow, base_url=opts.url, pool=pool, policy=policy,
                        artifacts_dir=workdir / "flows" / f"{i + 1}-{n + 1}",
                        step_timeout_s=settings.step_timeout_s, run_timeout_s=settings.run_timeout_s,
                    )  # fmt: skip
                    if run.status == "error":
                        raise GateError(f"flow {opts.flows[i]} could not run: {run.error}")
                    flow_runs.append(run.to_dict())
        finally:
            await pool.close()
    return Data(lighthouse=lhrs if lhrs else None, flows=flow_runs if opts.flows else None)


def _check_server_options(opts: GateOptions) -> None:
    if opts.baseline_server and opts.baseline_lhr:
        raise GateError("--baseline and --baseline-lhr exclude each other")
    if (opts.baseline_server or opts.upload_server) and not opts.branch:
        raise GateError("--baseline and --upload need --branch")
    if opts.upload_server and not opts.commit:
        raise GateError("--upload needs --commit SHA")
    if (opts.baseline_server or opts.upload_server) and not opts.token:
        raise GateError(
            "--baseline and --upload need --token (that server's: read for --baseline, deploy or admin for --upload)"
        )


def judge(opts: GateOptions, settings: Settings) -> Outcome:
    """The verdicts (and the baseline's, if any); GateError for exit 2."""
    _check_server_options(opts)
    if (opts.lhr is None) == (opts.url is None):
        raise GateError("give either --lhr DIR (judge existing reports) or --url URL (run Lighthouse/flows)")
    if opts.flows and opts.url is None:
        raise GateError("--flow needs --url (the base URL the flow runs against)")
    if opts.preset not in ("mobile", "desktop"):
        raise GateError(f"--preset must be mobile or desktop, not {opts.preset!r}")
    if not 1 <= opts.runs <= MAX_RUNS:
        raise GateError(f"--runs must be between 1 and {MAX_RUNS}")
    try:
        budgets: Budgets = load_budgets(opts.budgets)
    except BudgetFileError as exc:
        raise GateError(str(exc)) from None
    if opts.url is not None:
        workdir = opts.output_dir or Path(tempfile.mkdtemp(prefix="fieldlab-gate-"))
        data = asyncio.run(_collect(opts, budgets, settings, workdir))
    else:
        assert opts.lhr is not None
        data = Data(lighthouse=read_lhrs(opts.lhr))
    try:
        verdicts = evaluate(data, budgets)
        baseline = (
            evaluate(Data(lighthouse=read_lhrs(opts.baseline_lhr)), budgets) if opts.baseline_lhr else None
        )
    except lhci.LhciConfigError as exc:
        raise GateError(f"{opts.budgets}: {exc}") from None
    outcome = Outcome(verdicts, baseline, data=data, budgets=budgets)
    if opts.baseline_server:
        assert opts.branch is not None
        try:
            stored = gateserver.fetch_baseline(
                server=opts.baseline_server, token=opts.token, branch=opts.branch
            )
        except gateserver.ServerError as exc:
            raise GateError(str(exc)) from None
        thresholds = Thresholds(
            alpha=settings.regress_alpha, min_effect_pct=settings.regress_min_effect_pct,
            min_samples=settings.regress_min_lab_runs,
        )  # fmt: skip
        outcome.baseline, outcome.regressions = gateserver.compare(
            verdicts,
            gateserver.per_run_values(data, budgets),
            stored,
            branch=opts.branch,
            thresholds=thresholds,
        )
    return outcome


def write_outputs(opts: GateOptions, outcome: Outcome) -> None:
    verdicts, baseline = outcome.verdicts, outcome.baseline
    if opts.junit:
        opts.junit.write_text(report.junit_xml(verdicts), encoding="utf-8")
    if opts.markdown:
        text = report.markdown(verdicts, baseline=baseline, regressions=outcome.regressions)
        # The step summary file collects every step's output: add to it, never replace it.
        append = os.environ.get("GITHUB_STEP_SUMMARY") == str(opts.markdown)
        with opts.markdown.open("a" if append else "w", encoding="utf-8") as f:
            f.write(text)
    if opts.json_out:
        payload = {
            "status": worst(verdicts), "verdicts": [v.to_dict() for v in verdicts],
            "regressions": [r.to_dict() for r in outcome.regressions],
        }  # fmt: skip
        opts.json_out.write_text(json.dumps(payload, indent=2), encoding="utf-8")


def run_gate(opts: GateOptions, settings: Settings, console: Console, errors: Console) -> int:
    try:
        outcome = judge(opts, settings)
        verdicts = outcome.verdicts
        report.print_table(verdicts, console, outcome.baseline, outcome.regressions)
        auto = opts.url is not None and settings.lighthouse_cpu_slowdown(opts.preset) == "auto"
        if auto and (note := calibration_note(outcome.data.lighthouse or [])):
            errors.print(note, highlight=False, markup=False, soft_wrap=True)
        if warning := slow_host_warning(outcome.data.lighthouse or []):
            errors.print(warning, highlight=False, markup=False, soft_wrap=True)
        write_outputs(opts, outcome)
        if opts.upload_server:
            assert opts.branch is not None
            assert opts.commit is not None
            try:
                done = gateserver.upload(
                    server=opts.upload_server, token=opts.token, branch=opts.branch, commit=opts.commit,
                    site=opts.site, verdicts=verdicts,
                )  # fmt: skip
            except gateserver.ServerError as exc:
                raise GateError(str(exc)) from None
            errors.print(done, highlight=False, markup=False)
    except GateError as exc:
        errors.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 2
    except OSError as exc:
        errors.print(f"error: cannot write output: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 2
    return 1 if worst(verdicts) == "fail" else 0

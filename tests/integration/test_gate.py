"""``fieldlab gate`` end to end, as CI runs it (a subprocess): on real Lighthouse reports of the
test site (``--lhr``), and running real Lighthouse and a real flow against it (``--url``);
passing and failing, with the JUnit XML and Markdown checked, and the exit-2 reasons."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from gate_site import serve_site, session_lhrs
from typer.testing import CliRunner

from app import cli
from app.budgets.gate import calibration_note
from probes.lighthouse import load_lhr

pytestmark = [pytest.mark.slow, pytest.mark.serial]

PASSING = """\
budgets:
  - {metric: "lighthouse:category:accessibility", fail: 0.5}
  - {metric: "lab:LCP", warn: 2000, fail: 10000}
  - {metric: "lab:bytes", fail: 2000000}
"""
FAILING = """\
defaults: {aggregation: median}
budgets:
  - {metric: "lighthouse:category:performance", warn: 0.99, fail: 0.95}
  - {metric: "lab:bytes:script", fail: 100000, name: "JS bytes"}
  - {metric: "lab:step-duration", step: checkout, fail: 3000}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def lhr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    files = session_lhrs(tmp_path_factory.getbasetemp() / "gate-lhrs")
    out = tmp_path_factory.mktemp("collected") / ".lighthouseci"
    out.mkdir()
    for f in files:
        shutil.copy(f, out / f.name)
    return out


def gate(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "gate", *map(str, args)], capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "COLUMNS": "200", **(env or {})},
    )  # fmt: skip


def test_passing_reports(lhr_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text(PASSING)
    junit, md = tmp_path / "out.xml", tmp_path / "out.md"
    proc = gate("--budgets", tmp_path / "b.yml", "--lhr", lhr_dir, "--junit", junit, "--markdown", md)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("failures") == "0"
    assert int(suite.get("tests") or 0) == 9
    text = md.read_text()
    assert (text.startswith("### ") and "PASS" in text.splitlines()[0]) or "WARN" in text.splitlines()[0]
    assert "| ❌" not in text


def test_failing_reports_with_a_baseline(lhr_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text(FAILING)
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    for f in sorted(lhr_dir.glob("lhr-*.json"))[:1]:  # one run of /fast/ only
        shutil.copy(f, baseline / f.name)
    junit, md = tmp_path / "out.xml", tmp_path / "summary.md"
    md.write_text("earlier step output\n")
    proc = gate("--budgets", tmp_path / "b.yml", "--lhr", lhr_dir, "--junit", junit, "--markdown", md,
                "--baseline-lhr", baseline, env={"GITHUB_STEP_SUMMARY": str(md)})  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout
    assert "JS bytes" in proc.stdout
    root = ET.parse(junit).getroot()
    failures = root.findall(".//testcase/failure")
    names = {c.get("name") for c in root.findall(".//testcase") if c.find("failure") is not None}
    assert "JS bytes (lighthouse)" in names  # the heavy page's 255 KiB of script
    assert len(failures) == int(root.find("testsuite").get("failures"))  # type: ignore[union-attr]
    heavy = next(f for f in failures if "JS bytes" in (f.get("message") or ""))
    assert "limit 97.7 KiB" in (heavy.get("message") or "")
    text = md.read_text()
    assert text.startswith("earlier step output\n### ❌")  # appended to the step summary
    assert "| Δ baseline |" in text
    row = next(line for line in text.splitlines() if line.startswith("| ❌ | JS bytes"))
    assert "/heavy/" in row
    assert "97.7 KiB" in row
    assert "| fail" in row
    fast = next(line for line in text.splitlines() if "JS bytes" in line and "/fast/" in line)
    assert "±0 B" in fast  # same value as the baseline's single run
    assert "step-duration" not in text  # no flows were given: step budgets are not judged


def test_lhci_config(lhr_dir: Path, tmp_path: Path) -> None:
    rc = tmp_path / "lighthouserc.yml"
    rc.write_text("ci:\n  assert:\n    assertions:\n      categories:performance: [warn, {minScore: 0.99}]\n")
    proc = gate("--budgets", rc, "--lhr", lhr_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # warnings do not fail
    assert "warn" in proc.stdout
    rc.write_text("ci:\n  assert:\n    preset: lighthouse:recommended\n")
    assert gate("--budgets", rc, "--lhr", lhr_dir).returncode == 1


def test_reports_from_a_slow_host_get_a_calibration_hint(lhr_dir: Path, tmp_path: Path) -> None:
    """A real report as a host of benchmarkIndex 500 would have made it with the 4x preset (a phone
    3x slower than Lighthouse's reference): the verdicts are unchanged, stderr says how to
    calibrate; the same report from a host of reference speed gets no hint."""
    (tmp_path / "b.yml").write_text(PASSING)
    lhr = json.loads(sorted(lhr_dir.glob("lhr-*.json"))[0].read_text())
    assert (lhr["configSettings"]["formFactor"], lhr["configSettings"]["throttling"]["cpuSlowdownMultiplier"]) == (
        "mobile", 4
    )  # fmt: skip
    for index, hinted in ((500, True), (1500, False)):
        lhr["environment"]["benchmarkIndex"] = index
        (tmp_path / "lhr-1.json").write_text(json.dumps(lhr))
        proc = gate("--budgets", tmp_path / "b.yml", "--lhr", tmp_path / "lhr-1.json")
        assert proc.returncode in (0, 1), proc.stderr
        hint = "benchmarkIndex 500; with a 4x CPU slowdown its mobile numbers stand for a phone 3.0x slower"
        assert (hint in proc.stderr) is hinted, proc.stderr
        assert ("FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN=1.3 calibrates" in proc.stderr) is hinted


def test_the_calibration_note_names_the_slowdown_and_the_host_speed() -> None:
    def lhr(form: str, slowdown: float, index: float | None) -> dict[str, object]:
        return {"configSettings": {"formFactor": form, "throttling": {"cpuSlowdownMultiplier": slowdown}},
                "environment": {"benchmarkIndex": index}}  # fmt: skip

    note = calibration_note([lhr("mobile", 2.1, 780), lhr("mobile", 2.1, 820), lhr("mobile", 2.1, 700)])
    assert note == (
        "Lighthouse: mobile CPU slowdown 2.1x, calibrated to this host (benchmarkIndex 780;"
        " FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN=auto)"
    )
    assert calibration_note([lhr("desktop", 1, 780)]) is None  # nothing was slowed down
    assert calibration_note([lhr("mobile", 2.1, None)]) is None
    assert calibration_note([]) is None


def test_usage_and_infrastructure_errors(lhr_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("budgets:\n  - metric: lab:LCP\n    fail: slow\n")
    good = tmp_path / "good.yml"
    good.write_text(PASSING)
    closed = f"http://127.0.0.1:{free_port()}/"
    cases = [
        (["--budgets", bad, "--lhr", lhr_dir], f"{bad}:3: budgets[0].fail: Expected `float"),
        (["--budgets", good, "--lhr", tmp_path / "nope"], "no such file or folder"),
        (["--budgets", good, "--lhr", tmp_path], "no Lighthouse reports"),
        (["--budgets", good], "give either --lhr DIR"),
        (["--budgets", good, "--url", closed, "--allow-private"], f"URL unreachable: {closed}"),
        (["--budgets", good, "--url", "http://169.254.169.254/"], "169.254.169.254"),
        (["--budgets", good, "--lhr", lhr_dir, "--runs", "0"], "--runs must be between"),
    ]
    # In-process through the same typer app (a subprocess per case costs seconds of imports).
    runner = CliRunner()
    for args, reason in cases:
        result = runner.invoke(cli.app, ["gate", *map(str, args)])
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (args, result.stderr)
        assert reason in lines[0], (args, result.stderr)
    args = ["gate", "--budgets", str(good), "--url", closed, "--allow-private"]
    result = runner.invoke(cli.app, args, env={"FIELDLAB_CHROMIUM": "/nonexistent/chromium"})
    assert result.exit_code == 2
    assert "Chromium not found at /nonexistent/chromium" in result.stderr


@pytest.fixture
def site() -> Iterator[str]:
    yield from serve_site()


FLOW = """\
async def flow(page, step):
    async with step("home"):
        await page.goto("/fast/")
    async with step("checkout"):
        await page.goto("/heavy/")
"""


def test_url_mode_runs_lighthouse_and_a_flow(site: str, tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "b.yml").write_text(
        "budgets:\n"
        '  - {metric: "lighthouse:category:accessibility", fail: 0.9}\n'
        '  - {metric: "lab:bytes:script", step: checkout, fail: 100000}\n'
        '  - {metric: "lab:step-duration", step: home, fail: 20000}\n'
        '  - {metric: "lab:requests", fail: 50}\n'
    )
    junit = tmp_path / "out.xml"
    proc = gate("--budgets", tmp_path / "b.yml", "--url", f"{site}/fast/", "--runs", "2", "--flow", tmp_path / "flow.py",
                "--allow-private", "--junit", junit, "--output-dir", tmp_path / "kept", timeout=400,
                env={"FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN": "auto"})  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the checkout step loads 255 KiB of script
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert cases["bytes:script [checkout] (flow)"].find("failure") is not None
    assert cases["step-duration [home] (flow)"].find("failure") is None
    assert cases["requests (flow)"].find("failure") is None
    assert cases["category:accessibility (lighthouse)"].find("failure") is None  # /fast/ scores 1
    # The kept reports can be judged again later, e.g. by another budget file.
    kept = tmp_path / "kept" / "lighthouse" / "runs"
    lhrs = [load_lhr(p) for p in sorted(kept.glob("lhr-*.json.gz"))]
    assert len(lhrs) == 2  # a run that only measured the host (auto) is not kept
    # Both mobile audits ran with the one CPU slowdown calibrated to this host, and stderr says so.
    slowdowns = {lhr["configSettings"]["throttling"]["cpuSlowdownMultiplier"] for lhr in lhrs}
    assert {lhr["configSettings"]["formFactor"] for lhr in lhrs} == {"mobile"}
    assert len(slowdowns) == 1
    assert f"Lighthouse: mobile CPU slowdown {slowdowns.pop():g}x, calibrated to this host" in proc.stderr
    assert "FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN=auto" in proc.stderr
    assert "calibrates it" not in proc.stderr  # calibrated: no slow-host hint
    (tmp_path / "strict.yml").write_text('budgets:\n  - {metric: "lab:requests", fail: 0}\n')
    again = CliRunner().invoke(
        cli.app, ["gate", "--budgets", str(tmp_path / "strict.yml"), "--lhr", str(kept)]
    )
    assert again.exit_code == 1, again.stdout + again.stderr
    assert "1 fail" in again.stdout

"""``fieldlab gate --upload`` and ``--baseline`` against a real ``fieldlab serve`` on both
databases: builds are stored with deploy markers, and a later build with a real slowdown is
reported as a regression against them while unchanged budgets are not."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from gate_site import session_lhrs
from typer.testing import CliRunner

from app import cli
from tests.conftest import ADMIN, LiveServer

pytestmark = pytest.mark.slow

BUDGETS = """\
budgets:
  - {metric: "lighthouse:audit:largest-contentful-paint", fail: 6000}
  - {metric: "lighthouse:category:accessibility", fail: 0.5}
"""


def gate(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FIELDLAB_")}
    return subprocess.run(
        [sys.executable, "-m", "app", "gate", *map(str, args)], capture_output=True, text=True, timeout=60,
        env={**clean, "COLUMNS": "200", **(env or {})},
    )  # fmt: skip


def test_upload_then_compare_with_the_baseline(
    live_server: LiveServer, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    lhrs = session_lhrs(tmp_path_factory.getbasetemp() / "gate-lhrs")
    (tmp_path / "b.yml").write_text(BUDGETS)
    server = live_server.url
    headers = {"authorization": f"Bearer {ADMIN}"}
    site = httpx.post(
        f"{server}/api/v1/sites", json={"name": "ci", "origins": ["http://127.0.0.1"]}, headers=headers
    )
    site_id = site.json()["id"]
    # CI holds no admin token: a deploy token uploads, a read token is enough for the baseline.
    ci, reader = (
        httpx.post(f"{server}/api/v1/tokens", json={"scope": scope, "name": scope}, headers=headers).json()[
            "token"
        ]
        for scope in ("deploy", "read")
    )

    builds = tmp_path / "build"
    builds.mkdir()
    for f in lhrs:
        shutil.copy(f, builds / f.name)
    proc = gate("--budgets", tmp_path / "b.yml", "--lhr", builds, "--upload", server, "--token", ci,
                "--branch", "main", "--commit", "c0ffee0", "--site", str(site_id))  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "uploaded 6 verdicts as gate:main; marker c0ffee0 on main" in proc.stderr
    runner = CliRunner()  # the next four builds in-process: a subprocess costs seconds of imports
    for i in range(1, 5):
        result = runner.invoke(cli.app, ["gate", "--budgets", str(tmp_path / "b.yml"), "--lhr", str(builds),
                                         "--upload", server, "--token", ci, "--branch", "main",
                                         "--commit", f"c0ffee{i}", "--site", str(site_id)])  # fmt: skip
        assert result.exit_code == 0, result.stdout + result.stderr
        assert f"marker c0ffee{i} on main" in result.stderr
    markers = httpx.get(f"{server}/api/v1/sites/{site_id}/markers", headers=headers).json()
    assert sorted(m["commit"] for m in markers) == [f"c0ffee{i}" for i in range(5)]
    history = httpx.get(
        f"{server}/api/v1/budget-status", params={"scope": "gate:main"}, headers=headers
    ).json()
    assert len(history) == 30

    # A later build whose /fast/ page got 1.5 s slower in every run (edited copies of real reports).
    slower = tmp_path / "slower"
    slower.mkdir()
    for f in lhrs:
        lhr = json.loads(f.read_text())
        if lhr["finalUrl"].endswith("/fast/"):
            lhr["audits"]["largest-contentful-paint"]["numericValue"] += 1500
        (slower / f.name).write_text(json.dumps(lhr))
    md = tmp_path / "out.md"
    proc = gate("--budgets", tmp_path / "b.yml", "--lhr", slower, "--baseline", server, "--token", reader,
                "--branch", "main", "--markdown", md, env={"FIELDLAB_REGRESS_MIN_LAB_RUNS": "3"})  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr  # still within the 6 s budget
    text = md.read_text()
    assert "**Against the baseline**" in text
    lcp = [line for line in text.splitlines() if line.startswith("- audit:largest-contentful-paint")]
    assert len(lcp) == 3
    assert sum("regressed" in line for line in lcp) == 1
    fast_row = next(
        line for line in text.splitlines() if line.startswith("|") and "largest" in line and "/fast/" in line
    )
    assert "+1,500 ms" in fast_row  # delta against the median of the stored builds
    regressed = next(line for line in lcp if "regressed" in line)
    assert re.search(r"\+1500 ms \(p = 0\.0\d+\) since branch main regressed", regressed), regressed

    bad = gate("--budgets", tmp_path / "b.yml", "--lhr", slower, "--upload", server, "--token", "wrong",
               "--branch", "main", "--commit", "x")  # fmt: skip
    assert bad.returncode == 2
    assert "HTTP 401" in bad.stderr
    refused = runner.invoke(cli.app, ["gate", "--budgets", str(tmp_path / "b.yml"), "--lhr", str(slower),
                                      "--upload", server, "--token", reader, "--branch", "main",
                                      "--commit", "x"])  # fmt: skip
    assert refused.exit_code == 2
    assert "HTTP 403" in refused.stderr
    assert "needs an admin or a deploy token" in refused.stderr

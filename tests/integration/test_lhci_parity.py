"""Differential test: fieldlab's LHCI assertion engine against real ``lhci assert`` (0.14.0) on
real Lighthouse reports of pages this test serves (3 pages x 3 runs, generated once per session).

For every config, both must produce the same assertion results (URL, audit, property, kind,
level, passed, actual value) and the same overall outcome (lhci's exit code vs a ``fail``).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from gate_site import session_lhrs

from app.budgets.evaluate import Data, evaluate
from app.budgets.load import load_budgets
from app.budgets.verdict import worst

ROOT = Path(__file__).resolve().parents[2]
LHCI = ROOT / "node_modules" / ".bin" / "lhci"

pytestmark = [pytest.mark.slow, pytest.mark.serial]

EXPLICIT: dict[str, Any] = {
    "categories:performance": ["error", {"minScore": 0.93}],
    "categories.accessibility": ["warn", {"minScore": 0.9}],
    "categories:seo": "error",
    "categories:pwa": "error",  # no such category in Lighthouse 12: auditRan
    "largest-contentful-paint": ["error", {"maxNumericValue": 2600}],
    "first-contentful-paint": ["warn", {"maxNumericValue": 1000, "aggregationMethod": "pessimistic"}],
    "cumulative-layout-shift": ["warn", {"maxNumericValue": 0.1}],
    "unused-javascript": ["error", {"maxLength": 0}],
    "render-blocking-resources": ["warn", {"maxLength": 0, "minScore": 1}],
    "resource-summary:script:size": ["error", {"maxNumericValue": 100000}],
    "resource-summary:total:count": ["warn", {"maxNumericValue": 3}],
    "resource-summary:font:count": ["error", {"maxNumericValue": 0}],
    "user-timings:app-boot": ["error", {"maxNumericValue": 300}],
    "interaction-to-next-paint": "error",  # not applicable in navigation mode
    "no-such-audit": "error",
    "speedIndex": "error",  # camelCase without a kebab twin: LHCI looks it up as off
    "dom-size": ["off", {"maxNumericValue": 1}],
    "total-byte-weight": ["error", {"maxNumericValue": 200000}],
}

CONFIGS: dict[str, dict[str, Any]] = {
    "recommended": {"preset": "lighthouse:recommended"},
    "no-pwa+overrides": {
        "preset": "lighthouse:no-pwa",
        "assertions": {
            "offscreen-images": ["warn", {"minScore": 0.5}],  # merged into ["error", {maxLength: 0}]
            "first-contentful-paint": ["error", {"maxNumericValue": 1000}],
            "uses-http2": "error",
            "largestContentfulPaint": "error",
            "categories:performance": ["error", {"minScore": 0.95}],
        },
    },
    "all": {"preset": "lighthouse:all", "aggregationMethod": "median"},
    "explicit-default": {"assertions": EXPLICIT},
    **{f"explicit-{m}": {"assertions": EXPLICIT, "aggregationMethod": m} for m in
       ("median", "optimistic", "pessimistic", "median-run")},
    "matrix": {
        "assertMatrix": [
            {"matchingUrlPattern": "/heavy/$", "preset": "lighthouse:recommended", "aggregationMethod": "median"},
            {"matchingUrlPattern": "127\\.0\\.0\\.1:\\d+/(fast|shift)/", "assertions": {
                "categories:performance": ["error", {"minScore": 0.95}], "cumulative-layout-shift": ["error", {"maxNumericValue": 0.05}],
            }, "aggregationMethod": "pessimistic"},
            {"assertions": {"categories:best-practices": ["warn", {"minScore": 0.95}]}},
        ]
    },
}  # fmt: skip

BUDGET_JSON = [
    {"path": "/", "timings": [{"metric": "largest-contentful-paint", "budget": 2000}],
     "resourceCounts": [{"resourceType": "total", "budget": 3}]},
    {"path": "/heavy/*", "resourceSizes": [{"resourceType": "script", "budget": 100},
     {"resourceType": "total", "budget": 400}, {"resourceType": "third-party", "budget": 10}],
     "timings": [{"metric": "cumulative-layout-shift", "budget": 0.1}, {"metric": "interactive", "budget": 5000}]},
    {"path": "/shift/$", "resourceCounts": [{"resourceType": "image", "budget": 0}]},
]  # fmt: skip


@pytest.fixture(scope="module")
def lhrs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return session_lhrs(tmp_path_factory.getbasetemp() / "gate-lhrs")


def run_lhci(work: Path, lhr_files: list[Path], rc: dict[str, Any]) -> tuple[int, list[dict[str, Any]], str]:
    """Real ``lhci assert`` in ``work`` (it reads ``.lighthouseci/lhr-*.json`` of the cwd)."""
    store = work / ".lighthouseci"
    store.mkdir(parents=True)
    for f in lhr_files:
        shutil.copy(f, store / f.name)
    rc = json.loads(json.dumps(rc))
    rc["ci"]["assert"]["includePassedAssertions"] = True
    (work / "lighthouserc.json").write_text(json.dumps(rc))
    proc = subprocess.run(
        [str(LHCI), "assert", "--config=lighthouserc.json"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    results = json.loads((store / "assertion-results.json").read_text())
    return proc.returncode, results, proc.stderr


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def lhci_rows(results: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    return Counter(
        (r["url"], r["auditId"], r.get("auditProperty"), r["name"], r["level"], r["passed"],
         round(_num(r["actual"]), 9) if not math.isnan(_num(r["actual"])) else "NaN")
        for r in results
    )  # fmt: skip


def ours(config_path: Path, lhr_files: list[Path]) -> tuple[Counter[tuple[Any, ...]], Any]:
    from app.budgets.lhci import assert_lhrs

    budgets = load_budgets(config_path)
    assert budgets.lhci is not None
    data = [json.loads(f.read_text()) for f in lhr_files]
    rows = Counter(
        (r.url, r.audit_id, r.audit_property, r.name, r.level, r.passed,
         round(r.actual, 9) if not math.isnan(r.actual) else "NaN")
        for r in assert_lhrs(budgets.lhci, data)
    )  # fmt: skip
    verdicts = evaluate(Data(lighthouse=data), budgets)
    return rows, verdicts


def check_parity(work: Path, lhr_files: list[Path], rc: dict[str, Any]) -> tuple[int, int]:
    code, results, stderr = run_lhci(work, lhr_files, rc)
    assert code in (0, 1), stderr[-2000:]
    theirs = lhci_rows(results)
    mine, verdicts = ours(work / "lighthouserc.json", lhr_files)
    if "budgetsFile" in rc["ci"]["assert"]:
        # lhci replaces the options with the converted budgets, dropping includePassedAssertions.
        mine = Counter({row: n for row, n in mine.items() if not row[5]})
        verdicts = [v for v in verdicts if v.status != "pass"]
    assert mine == theirs, (
        f"only lhci: {sorted((theirs - mine).elements())[:10]}\nonly fieldlab: {sorted((mine - theirs).elements())[:10]}"
    )
    # The same set of failing and warning assertions, and the same exit.
    assert Counter(v.status for v in verdicts) == Counter(
        "pass" if r["passed"] else "warn" if r["level"] == "warn" else "fail" for r in results
    )
    assert (worst(verdicts) == "fail") == (code == 1)
    return code, len(results)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_assert_config_parity(name: str, lhrs: list[Path], tmp_path: Path) -> None:
    _code, count = check_parity(tmp_path, lhrs, {"ci": {"assert": CONFIGS[name]}})
    assert count > 0  # every config asserts something on these reports


def test_budgets_file_parity(lhrs: list[Path], tmp_path: Path) -> None:
    (tmp_path / "budget.json").write_text(json.dumps(BUDGET_JSON))
    code, count = check_parity(tmp_path, lhrs, {"ci": {"assert": {"budgetsFile": "budget.json"}}})
    assert count >= 3  # lhci lists only failures here: LCP, counts and script bytes are over budget
    assert code == 1


def test_the_reports_make_aggregation_matter(lhrs: list[Path]) -> None:
    """Guard on the fixture: with identical runs, the aggregation parity tests would prove little."""
    by_url: dict[str, set[float]] = {}
    for f in lhrs:
        lhr = json.loads(f.read_text())
        by_url.setdefault(lhr["finalUrl"], set()).add(
            lhr["audits"]["largest-contentful-paint"]["numericValue"]
        )
    assert len(by_url) == 3
    assert any(len(values) > 1 for values in by_url.values())


@pytest.mark.parametrize("name", ["explicit-median", "explicit-median-run", "matrix"])
def test_even_run_counts(name: str, lhrs: list[Path], tmp_path: Path) -> None:
    """Two runs per URL: the median is then the mean of two runs, and median-run's choice differs."""
    by_url: dict[str, list[Path]] = {}
    for f in lhrs:
        by_url.setdefault(json.loads(f.read_text())["finalUrl"], []).append(f)
    two_each = [f for files in by_url.values() for f in files[:2]]
    check_parity(tmp_path, two_each, {"ci": {"assert": CONFIGS[name]}})

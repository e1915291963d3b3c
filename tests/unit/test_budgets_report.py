"""The gate's reports: JUnit XML that CI systems parse, Markdown that renders as one table."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

from rich.console import Console

from app.budgets.report import fmt, fmt_delta, junit_xml, markdown, print_table, summary_line
from app.budgets.verdict import Verdict

VERDICTS = [
    Verdict("lab:LCP:all@lighthouse:https://s/a", "LCP (lighthouse)", "pass", 1200.0, 2500.0, 1300.0, "ms", 3),
    Verdict("lab:bytes@flow:https://s", "bytes | all", "fail", 400_000.0, 300_000.0, -100_000.0, "B", 3, "median"),
    Verdict("lighthouse:category:seo:all@lighthouse:https://s/a", "category:seo", "warn", 0.85, 0.9, -0.05, "", 3),
    Verdict("field:LCP:p75:all:all", "p75 LCP", "insufficient-data", 2000.0, 2500.0, None, "ms", 12, "12 samples, 100 needed"),
]  # fmt: skip


def test_junit_lists_every_verdict_with_the_right_outcome() -> None:
    root = ET.fromstring(junit_xml(VERDICTS))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    failure = cases["bytes | all"].find("failure")
    assert failure is not None
    assert (
        failure.get("message") == "bytes | all: value 390.6 KiB, limit 293.0 KiB, margin -97.7 KiB (median)"
    )
    assert cases["bytes | all"].get("classname") == "flow:https://s"
    assert cases["p75 LCP"].find("skipped") is not None
    assert cases["LCP (lighthouse)"].find("failure") is None
    assert next(iter(cases)) == "bytes | all"  # worst first


def test_markdown_is_one_table_worst_first() -> None:
    baseline = [Verdict(VERDICTS[0].budget_id, "LCP", "pass", 1000.0, 2500.0, 1500.0, "ms")]
    text = markdown(VERDICTS, baseline=baseline)
    lines = text.splitlines()
    assert lines[0] == "### ❌ fieldlab budgets: FAIL: 1 fail, 1 warn, 1 insufficient-data, 1 pass"
    rows = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| ❌", "| ⚠️", "| ❔", "| ✅"]
    assert rows[0].startswith(
        "| ❌ | bytes \\| all | flow:https://s | 390.6 KiB | 293.0 KiB | — | fail (median) |"
    )
    assert rows[3].endswith("| 1,200 ms | 2,500 ms | +200 ms | pass |")
    assert all(r.count(" | ") == 6 for r in rows)  # the escaped pipe does not add a column


def test_table_and_formats() -> None:
    console = Console(file=io.StringIO(), width=200)
    print_table(VERDICTS, console)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "390.6 KiB" in out
    assert out.strip().endswith("FAIL: 1 fail, 1 warn, 1 insufficient-data, 1 pass")
    assert summary_line([]) == "PASS: no budgets applied"
    assert (fmt(None), fmt(0.1234567), fmt(3.0, "requests"), fmt(512.0, "B")) == (
        "—",
        "0.1235",
        "3 requests",
        "512 B",
    )
    assert (fmt_delta(-20.0, "ms"), fmt_delta(0.0), fmt_delta(None)) == ("-20 ms", "±0", "—")

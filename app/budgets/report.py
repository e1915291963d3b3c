"""The gate's outputs from a list of verdicts: a rich table, JUnit XML (one test case per
verdict, so CI systems list every budget) and Markdown for ``$GITHUB_STEP_SUMMARY`` or a pull
request comment. A baseline (verdicts of an earlier build) adds a delta column."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table

from app.budgets.regress import Regression
from app.budgets.verdict import SEVERITY, Verdict, worst

ICONS = {"pass": "✅", "warn": "⚠️", "fail": "❌", "insufficient-data": "❔"}
COLOURS = {"pass": "green", "warn": "yellow", "fail": "red", "insufficient-data": "dim"}


def fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if unit == "ms":
        return f"{value:,.0f} ms"
    if unit == "B":
        return f"{value / 1024:,.1f} KiB" if abs(value) >= 1024 else f"{value:,.0f} B"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{value:,.0f}" + (f" {unit}" if unit else "")
    return f"{value:.4g}" + (f" {unit}" if unit else "")


def fmt_delta(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = fmt(abs(value), unit)
    return ("+" if value > 0 else "-" if value < 0 else "±") + text


def deltas(verdicts: Sequence[Verdict], baseline: Sequence[Verdict] | None) -> dict[str, float | None]:
    """actual - baseline actual per budget id (None where either side has no value)."""
    if baseline is None:
        return {}
    before = {b.budget_id: b.actual for b in baseline}
    out: dict[str, float | None] = {}
    for v in verdicts:
        old = before.get(v.budget_id)
        out[v.budget_id] = None if v.actual is None or old is None else v.actual - old
    return out


def ordered(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """Worst first, then by name: what a reader needs to act on comes first."""
    return sorted(verdicts, key=lambda v: (-SEVERITY[v.status], v.name, v.budget_id))


def summary_line(verdicts: Sequence[Verdict]) -> str:
    verdicts = list(verdicts)
    counts = Counter(v.status for v in verdicts)
    parts = [f"{counts[s]} {s}" for s in ("fail", "warn", "insufficient-data", "pass") if counts[s]]
    return f"{worst(verdicts).upper()}: " + (", ".join(parts) if parts else "no budgets applied")


def _where(v: Verdict) -> str:
    return v.budget_id.rsplit("@", 1)[1] if "@" in v.budget_id else ""


def print_table(
    verdicts: Sequence[Verdict], console: Console, baseline: Sequence[Verdict] | None = None,
    regressions: Sequence[Regression] = (),
) -> None:  # fmt: skip
    delta = deltas(verdicts, baseline)
    columns = ["", "budget", "where", "value", "limit", "margin"] + (
        ["Δ baseline"] if baseline is not None else []
    )
    table = Table(*columns, show_lines=False)
    for v in ordered(verdicts):
        row = [
            f"[{COLOURS[v.status]}]{v.status}[/]", v.name, _where(v), fmt(v.actual, v.unit),
            fmt(v.limit, v.unit), fmt(v.margin, v.unit),
        ]  # fmt: skip
        if baseline is not None:
            row.append(fmt_delta(delta.get(v.budget_id), v.unit))
        table.add_row(*row)
    console.print(table)
    for r in regressions:
        console.print(f"baseline: {r.summary}", highlight=False, markup=False)
    console.print(summary_line(verdicts), highlight=False)


def junit_xml(verdicts: Sequence[Verdict], *, suite: str = "fieldlab gate") -> str:
    counts = Counter(v.status for v in verdicts)
    root = ET.Element("testsuites", name=suite, tests=str(len(verdicts)), failures=str(counts["fail"]))
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(verdicts)), failures=str(counts["fail"]),
                       errors="0", skipped=str(counts["insufficient-data"]))  # fmt: skip
    for v in ordered(verdicts):
        case = ET.SubElement(ts, "testcase", classname=_where(v) or "budgets", name=v.name)
        text = f"value {fmt(v.actual, v.unit)}, limit {fmt(v.limit, v.unit)}, margin {fmt(v.margin, v.unit)}"
        if v.detail:
            text += f" ({v.detail})"
        if v.status == "fail":
            ET.SubElement(case, "failure", message=f"{v.name}: {text}", type="budget").text = v.budget_id
        elif v.status == "insufficient-data":
            ET.SubElement(case, "skipped", message=f"insufficient data: {v.detail or text}")
        elif v.status == "warn":
            ET.SubElement(case, "system-out").text = f"WARNING {text}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(
    verdicts: Sequence[Verdict], *, title: str = "fieldlab budgets", baseline: Sequence[Verdict] | None = None,
    links: Mapping[str, str] | None = None, regressions: Sequence[Regression] = (),
) -> str:  # fmt: skip
    """A Markdown report: a headline with the overall status, then one table row per budget."""
    delta = deltas(verdicts, baseline)
    lines = [f"### {ICONS[worst(list(verdicts))]} {title}: {summary_line(verdicts)}", ""]
    header = (
        ["", "Budget", "Where", "Value", "Limit"]
        + (["Δ baseline"] if baseline is not None else [])
        + ["Verdict"]
    )
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for v in ordered(verdicts):
        where = _where(v)
        if links and where in links:
            where = f"[{where}]({links[where]})"
        cells = [ICONS[v.status], _md(v.name), _md(where), fmt(v.actual, v.unit), fmt(v.limit, v.unit)]
        if baseline is not None:
            cells.append(fmt_delta(delta.get(v.budget_id), v.unit))
        cells.append(v.status + (f" ({_md(v.detail)})" if v.detail and v.status != "pass" else ""))
        lines.append("| " + " | ".join(cells) + " |")
    if regressions:
        lines += ["", "**Against the baseline** (Mann-Whitney U over runs):", ""]
        lines += [f"- {_md(r.summary)}" for r in regressions]
    return "\n".join(lines) + "\n"

"""The gate's conversation with a fieldlab server: ``--upload`` stores this build's verdicts
(scope ``gate:BRANCH``) and adds a deploy marker; ``--baseline`` fetches the values earlier
uploads stored for a branch and compares this build's runs with them (Mann-Whitney U)."""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import httpx

from app.budgets.evaluate import Budgets, Data, evaluate
from app.budgets.regress import Regression, Thresholds, lab_regression
from app.budgets.verdict import Verdict, worst

MAX_VERDICTS = 1000  # what POST /api/v1/budget-status accepts at once
BASELINE_BUILDS = 5000  # most stored verdicts read for a baseline


class ServerError(Exception):
    """The server could not be used; the message is one line."""


def scope_for(branch: str) -> str:
    return "gate:" + (re.sub(r"[^A-Za-z0-9_.\-]", "-", branch)[:59] or "default")


def _call(method: str, url: str, token: str, **kw: Any) -> Any:
    try:
        with httpx.Client(timeout=30, trust_env=False) as client:
            response = client.request(method, url, headers={"authorization": f"Bearer {token}"}, **kw)
    except httpx.HTTPError as exc:
        raise ServerError(f"server unreachable: {url} ({type(exc).__name__}: {exc})") from None
    if response.status_code >= 400:
        detail = response.text.strip().replace("\n", " ")[:300]
        raise ServerError(f"{method} {url}: HTTP {response.status_code}: {detail}")
    return response.json()


def upload(
    *, server: str, token: str, branch: str, commit: str, site: int | None, verdicts: Sequence[Verdict]
) -> str:
    """Store the verdicts and (with ``site``) a deploy marker; a one-line summary."""
    if len(verdicts) > MAX_VERDICTS:
        raise ServerError(f"{len(verdicts)} verdicts: the server takes at most {MAX_VERDICTS} per build")
    base = server.rstrip("/")
    rows = [v.to_dict() | {"name": v.name[:512], "detail": v.detail[:2048]} for v in verdicts]
    stored = _call(
        "POST", f"{base}/api/v1/budget-status", token, json={"scope": scope_for(branch), "verdicts": rows}
    )
    text = f"uploaded {stored.get('stored', len(rows))} verdicts as {scope_for(branch)}"
    if site is not None:
        message = f"fieldlab gate: {worst(list(verdicts))}"
        _call("POST", f"{base}/api/v1/sites/{site}/markers", token,
              json={"commit": commit, "branch": branch, "message": message})  # fmt: skip
        text += f"; marker {commit[:12]} on {branch}"
    return text


def fetch_baseline(*, server: str, token: str, branch: str) -> dict[str, list[float]]:
    """Values stored for each budget id by earlier uploads of ``branch``, oldest first."""
    rows = _call("GET", f"{server.rstrip('/')}/api/v1/budget-status", token,
                 params={"scope": scope_for(branch), "limit": BASELINE_BUILDS})  # fmt: skip
    if not isinstance(rows, list):
        raise ServerError("unexpected answer from /api/v1/budget-status")
    out: dict[str, list[float]] = {}
    for row in reversed(rows):  # newest first on the wire
        if isinstance(row, dict) and isinstance(row.get("actual"), int | float):
            out.setdefault(str(row.get("budget_id")), []).append(float(row["actual"]))
    return out


def per_run_values(data: Data, budgets: Budgets) -> dict[str, list[float]]:
    """Each budget's value in every single run (each report and each flow run judged alone)."""
    singles = [Data(lighthouse=[lhr]) for lhr in data.lighthouse or []]
    singles += [Data(flows=[run]) for run in data.flows or []]
    out: dict[str, list[float]] = {}
    for single in singles:
        for v in evaluate(single, budgets):
            if v.actual is not None:
                out.setdefault(v.budget_id, []).append(v.actual)
    return out


def _is_minimum(v: Verdict) -> bool:
    """Whether higher is better: the margin's sign convention says so (``actual - limit``)."""
    if v.actual is not None and v.limit is not None and v.margin is not None and v.actual != v.limit:
        return abs(v.margin - (v.actual - v.limit)) < abs(v.margin - (v.limit - v.actual))
    return v.budget_id.startswith(("lighthouse:category", "lighthouse:score")) or ":minScore@" in v.budget_id


def compare(
    verdicts: Sequence[Verdict], current: dict[str, list[float]], baseline: dict[str, list[float]],
    *, branch: str, thresholds: Thresholds,
) -> tuple[list[Verdict], list[Regression]]:  # fmt: skip
    """Baseline verdicts (median of the stored values, for the delta column) and a Mann-Whitney
    comparison per budget that has values on both sides."""
    base_verdicts: list[Verdict] = []
    regressions: list[Regression] = []
    for v in verdicts:
        stored = baseline.get(v.budget_id)
        if not stored:
            continue
        base_verdicts.append(replace(v, actual=statistics.median(stored)))
        minimum = _is_minimum(v)
        regressions.append(lab_regression(
            stored, current.get(v.budget_id, []), metric=v.name, unit=v.unit, since=f"branch {branch}",
            thresholds=thresholds, higher_is_worse=not minimum,
        ))  # fmt: skip
    return base_verdicts, regressions

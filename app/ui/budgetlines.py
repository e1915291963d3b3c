"""Budget lines for the trend charts: the field p75 budgets of FIELDLAB_BUDGETS_FILE that apply
to what a chart shows (its metric, and the view's page group and device), with their page-group
overrides. Read from the budget file itself (app/budgets/load.py), re-read when it changes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from app.budgets.load import load_budgets
from app.budgets.source import BudgetFileError
from app.budgets.spec import Spec

log = logging.getLogger("fieldlab")


def spec_of(state: Any, path: str) -> Spec | None:
    """The budget file's spec, cached in the app state per (path, mtime)."""
    if not path:
        return None
    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        return None
    cached = state.get("ui_budget_spec")
    if cached and cached[0] == (path, mtime):
        spec: Spec | None = cached[1]
        return spec
    try:
        spec = load_budgets(path).spec
    except (BudgetFileError, OSError, ValueError) as exc:
        log.warning("budget lines: cannot read %s: %s", path, exc)
        spec = None
    state["ui_budget_spec"] = ((path, mtime), spec)
    return spec


def lines(spec: Spec | None, *, metric: str, group: str | None, device: str | None) -> dict[str, float]:
    """{"warn": …, "fail": …} of the first field p75 budget for exactly this view, else {}."""
    for budget in spec.budgets if spec else []:
        try:
            parsed = spec.metric(budget) if spec else None
        except ValueError:
            continue
        if parsed is None or parsed.source != "field" or parsed.name != metric or budget.stat != "p75":
            continue
        if budget.device != device:
            continue
        # "*" judges each page group on its own: it draws on a page group's chart, not the site's.
        if not (budget.page_group == group or (budget.page_group == "*" and group is not None)):
            continue
        warn, fail = budget.warn, budget.fail
        override = next(
            (o for o in budget.overrides if o.page_group is not None and o.page_group == group), None
        )
        if override is not None:
            if override.off:
                continue
            warn = override.warn if override.warn is not None else warn
            fail = override.fail if override.fail is not None else fail
        return {k: v for k, v in (("warn", warn), ("fail", fail)) if v is not None}
    return {}

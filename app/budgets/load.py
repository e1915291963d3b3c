"""Reading any budget file the gate accepts: fieldlab's YAML, a Lighthouse CI config
(``lighthouserc.json``/``.yml``, its ``ci.assert`` part) or a Lighthouse ``budget.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.budgets import lhci
from app.budgets.budgetjson import convert_budgets
from app.budgets.evaluate import Budgets
from app.budgets.presets import PRESETS
from app.budgets.source import BudgetFileError, Document, Path_, read
from app.budgets.spec import is_fieldlab_file, load_spec

_ASSERT_KEYS = {"assertions", "preset", "assertMatrix", "budgetsFile", "aggregationMethod", "matchingUrlPattern",
                "includePassedAssertions", "lhr"}  # fmt: skip


def _check_assert(doc: Document, options: dict[str, Any], at: Path_) -> None:
    """Reject, with line and key, what LHCI would reject or silently misread."""
    try:
        matrix = lhci.check_options(options)
    except lhci.LhciConfigError as exc:
        raise doc.error(at, str(exc)) from None
    for i, base in enumerate(matrix):
        where = (*at, "assertMatrix", i) if "assertMatrix" in options else at
        unknown = set(base) - _ASSERT_KEYS
        if unknown:
            raise doc.error((*where, sorted(unknown)[0]), "not an LHCI assert option")
        method = base.get("aggregationMethod")
        if method is not None and method not in lhci.AGGREGATIONS:
            raise doc.error((*where, "aggregationMethod"), f"must be one of {', '.join(lhci.AGGREGATIONS)}")
        preset = base.get("preset")
        if preset is not None and preset not in PRESETS:
            raise doc.error((*where, "preset"), f"unknown preset {preset!r}")
        assertions = base.get("assertions") or {}
        if not isinstance(assertions, dict):
            raise doc.error((*where, "assertions"), "expected an object of assertions")
        for key, value in assertions.items():
            try:
                lhci.normalise(value, key)
            except lhci.LhciConfigError as exc:
                message = str(exc).removeprefix(f"assertions.{key}").lstrip(".: ")
                raise doc.error((*where, "assertions", key), message) from None
            for name in (value[1] if isinstance(value, list) and len(value) > 1 else {}) or {}:
                if name not in lhci.OPTION_KEYS:
                    raise doc.error((*where, "assertions", key, 1, name), "not an assertion option")


def _lhci_options(doc: Document, options: Any, at: Path_) -> dict[str, Any]:
    if not isinstance(options, dict):
        raise doc.error(at, "expected an object (LHCI's `ci.assert`)")
    options = dict(options)
    budgets_file = options.pop("budgetsFile", None)
    options.pop("includePassedAssertions", None)
    options.pop("lhr", None)
    if budgets_file is not None:
        if any(options.get(k) for k in ("assertions", "assertMatrix", "preset")):
            raise doc.error((*at, "budgetsFile"), "Cannot use both budgets AND assertions (as LHCI says)")
        # LHCI resolves it against the working directory; fall back to the config's folder.
        path = Path(str(budgets_file))
        if not path.is_absolute() and not path.exists():
            path = Path(doc.path).parent / path
        budget_doc = read(path)
        return convert_budgets(budget_doc)
    _check_assert(doc, options, at)
    return dict(options)


def load_budgets(path: str | Path) -> Budgets:
    """The budgets in ``path``; BudgetFileError names the file, line and field."""
    if str(path).endswith((".js", ".cjs", ".mjs")):
        raise BudgetFileError(
            f"{path}: JavaScript LHCI configs are not supported; use lighthouserc.json or .yml"
        )
    doc = read(path)
    data = doc.data
    if isinstance(data, list):
        return Budgets(lhci=convert_budgets(doc))
    if is_fieldlab_file(data):
        return Budgets(spec=load_spec(doc))
    if isinstance(data, dict) and "ci" in data:
        ci = data["ci"]
        if not isinstance(ci, dict) or "assert" not in ci:
            raise doc.error(("ci",), "no `ci.assert` section: nothing to judge by")
        return Budgets(lhci=_lhci_options(doc, ci["assert"], ("ci", "assert")))
    if isinstance(data, dict) and set(data) & {"assertions", "preset", "assertMatrix", "budgetsFile"}:
        return Budgets(lhci=_lhci_options(doc, data, ()))
    raise doc.error((), "not a budget file: expected fieldlab's `budgets:`, an LHCI config with "
                    "`ci.assert`, or a Lighthouse budget.json (a list)")  # fmt: skip

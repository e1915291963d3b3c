"""LHCI building blocks against the installed @lhci/utils 0.14.0 JavaScript (run with node):
the presets, the deep merge, kebab-casing, aggregation and the budget.json conversion. The
end-to-end comparison with ``lhci assert`` is tests/integration/test_lhci_parity.py."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest

from app.budgets import lhci
from app.budgets.budgetjson import convert_budgets
from app.budgets.presets import PRESETS, preset_assertions
from app.budgets.source import BudgetFileError, parse_text

UTILS = Path(__file__).resolve().parents[2] / "node_modules" / "@lhci" / "utils" / "src"


def node(script: str, payload: Any = None) -> Any:
    prelude = (
        f"const U = {json.dumps(str(UTILS))};const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
    )
    out = subprocess.run(
        ["node", "-e", prelude + script],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_match_the_installed_package(name: str) -> None:
    theirs = node(f"console.log(JSON.stringify(require(U + '/presets/{name.split(':')[1]}.js').assertions))")
    assert preset_assertions(name) == theirs


def test_merge_matches_lodash_merge() -> None:
    cases = [
        [{"a": ["error", {"maxLength": 0}]}, {"a": ["warn", {"minScore": 0.5}]}],
        [{"a": ["error", {"maxLength": 0}]}, {"a": "off"}],
        [{"a": "off"}, {"a": ["error", {}]}],
        [{"a": ["warn"]}, {"a": ["error", {"x": 1}, 3]}],
        [{"a": {"b": [1, 2, 3]}, "c": 1}, {"a": {"b": [9]}, "d": 2}],
        [[1, [2, 3]], [None, [4]]],
    ]
    theirs = node(
        "const _ = require(U + '/lodash.js');console.log(JSON.stringify(input.map(([a, b]) => _.merge(a, b))))",
        cases,
    )
    assert [lhci.merge(a, b) for a, b in cases] == theirs


def test_kebab_case_matches() -> None:
    words = ["firstContentfulPaint", "categories:performance", "resource-summary:script:size", "App Boot!",
             "--x--Y", "user-timings:appBoot", "ÄbcDef", "a.b:c"]  # fmt: skip
    theirs = node(
        "const _ = require(U + '/lodash.js');"
        "console.log(JSON.stringify(input.map(w => [_.kebabCase(w), _.kebabCase(w, {alphanumericOnly: true})])))",
        words,
    )
    assert [[lhci.kebab_case(w), lhci.kebab_case(w, alphanumeric_only=True)] for w in words] == theirs


def test_aggregation_rules() -> None:
    values = [3.0, 1.0, 2.0, 10.0]
    assert lhci.aggregate(values, "median", "maxNumericValue") == 2.5  # mean of the middle two
    assert lhci.aggregate(values[:3], "median", "minScore") == 2.0
    assert lhci.aggregate(values, "optimistic", "maxNumericValue") == 1.0
    assert lhci.aggregate(values, "optimistic", "minScore") == 10.0
    assert lhci.aggregate(values, "pessimistic", "maxNumericValue") == 10.0
    assert lhci.aggregate(values, "pessimistic", "minScore") == 1.0


def _lhr(url: str, **audits: Any) -> dict[str, Any]:
    return {"finalUrl": url, "lighthouseVersion": "12.2.3", "categories": {"performance": {"score": 0.8}},
            "audits": {k.replace("_", "-"): v for k, v in audits.items()}}  # fmt: skip


def test_pessimistic_fails_when_any_run_has_no_value() -> None:
    lhrs = [_lhr("u", speed_index={"numericValue": 100}), _lhr("u", speed_index={"score": None})]
    opts = {"assertions": {"speed-index": ["error", {"maxNumericValue": 500}]}}
    [ok] = lhci.assert_lhrs(opts, lhrs)
    assert ok.passed
    assert ok.actual == 100
    [bad] = lhci.assert_lhrs({**opts, "aggregationMethod": "pessimistic"}, lhrs)
    assert not bad.passed
    assert math.isnan(bad.actual)
    assert "did not produce a value" in (bad.message or "")


def test_missing_audit_is_audit_ran_failure() -> None:
    lhrs = [_lhr("u", speed_index={"score": 1}), _lhr("u")]
    [row] = lhci.assert_lhrs({"assertions": {"speed-index": "warn"}}, lhrs)
    assert (row.name, row.passed, row.actual, row.values) == ("auditRan", False, 0.0, (1.0, 0.0))
    [row] = lhci.assert_lhrs({"assertions": {"made-up": "error"}}, lhrs[:1])
    assert row.message == '"made-up" is not a known audit.'


def test_matrix_cannot_mix_with_other_options() -> None:
    with pytest.raises(lhci.LhciConfigError, match="assertMatrix"):
        lhci.assert_lhrs({"assertMatrix": [], "preset": "lighthouse:all"}, [])
    with pytest.raises(lhci.LhciConfigError, match="resource-summary"):
        lhci.assert_lhrs({"assertions": {"resource-summary:script": "error"}}, [_lhr("u")])


BUDGETS = [
    {"path": "/", "timings": [{"metric": "interactive", "budget": 5000}]},
    {"path": "/shop/*.html$", "resourceSizes": [{"resourceType": "script", "budget": 125.5},
     {"resourceType": "third-party", "budget": 0}], "resourceCounts": [{"resourceType": "total", "budget": 20}],
     "options": {"firstPartyHostnames": ["*.shop.example"]}},
    {"path": "/a(b)+c.d?", "timings": [{"metric": "cumulative-layout-shift", "budget": 0.1}]},
    {},
]  # fmt: skip


def test_budget_json_converts_as_lhci_does() -> None:
    theirs = node(
        "require(U + '/budgets-converter.js').convertBudgetsToAssertions(input)"
        ".then(r => console.log(JSON.stringify(r)))",
        BUDGETS,
    )
    assert convert_budgets(parse_text(json.dumps(BUDGETS), "budget.json")) == theirs


@pytest.mark.parametrize(
    ("budgets", "line", "message"),
    [
        ('[{"path": "/",\n "timings": [{"metric": "tti", "budget": 1}]}]', 2, "timings[0].metric: must be one of"),
        ('[{"path": "x"}]', 1, "path should start with '/'"),
        ('[{"path": "/a*b*"}]', 1, "at most one '*'"),
        ('[\n {"resourceSizes": [\n  {"resourceType": "script", "budget": "big"}]}]', 3, "budget: expected a number"),
        ('[\n {"resourceCounts": [{"resourceType": "font", "budget": 1},\n {"resourceType": "font", "budget": 2}]}]', 3, "duplicate"),
        ('[{"paths": "/"}]', 1, "[0].paths: unknown field"),
        ('{"path": "/"}', 1, "a list of budgets"),
    ],
)  # fmt: skip
def test_budget_json_errors_name_line_and_field(budgets: str, line: int, message: str) -> None:
    with pytest.raises(BudgetFileError) as caught:
        convert_budgets(parse_text(budgets, "budget.json"))
    assert f"budget.json:{line}:" in str(caught.value)
    assert message in str(caught.value)


EDGE_LHRS = [
    _lhr("https://a.example/", speed_index={"numericValue": 100, "score": 0.95},
         unused_javascript={"score": 0.5, "details": {"items": [{}, {}]}},
         viewport={"score": None, "scoreDisplayMode": "notApplicable"},
         is_on_https={"score": None, "scoreDisplayMode": "informative"},
         errors_in_console={"score": None, "scoreDisplayMode": "error"},
         user_timings={"details": {"items": [{"name": "App Boot", "duration": 12.5}, {"name": "mark", "startTime": 3}]}},
         resource_summary={"details": {"items": [{"resourceType": "script", "transferSize": 900, "requestCount": 2}]}}),
    _lhr("https://a.example/", speed_index={"numericValue": 300, "score": 0.7},
         unused_javascript={"score": 1, "details": {"items": []}},
         viewport={"score": None, "scoreDisplayMode": "notApplicable"},
         is_on_https={"score": None, "scoreDisplayMode": "informative"},
         errors_in_console={"score": None, "scoreDisplayMode": "error"},
         user_timings={"details": {"items": [{"name": "App Boot", "duration": 40}, {"name": "mark", "startTime": 5}]}},
         resource_summary={"details": {"items": [{"resourceType": "script", "transferSize": 700, "requestCount": 1}]}}),
    _lhr("https://b.example/x", speed_index={"numericValue": 50}),
]  # fmt: skip
EDGE_ASSERTIONS = {
    "speed-index": ["error", {"maxNumericValue": 200, "minScore": 0.8}],
    "unusedJavascript": "warn", "unused-javascript": ["warn", {"maxLength": 1}],
    "viewport": "error", "is-on-https": "error", "errors-in-console": ["error", {"minScore": 0}],
    "user-timings:app-boot": ["error", {"maxNumericValue": 20}], "user-timings.mark": ["warn", {"maxNumericValue": 4}],
    "resource-summary:script:size": ["error", {"maxNumericValue": 800}],
    "resource-summary:script:count": ["error", {"maxNumericValue": 1}],
    "categories:performance": ["error", {"minScore": 0.8}], "categories:seo": "warn",
}  # fmt: skip


@pytest.mark.parametrize("method", [None, "median", "optimistic", "pessimistic", "median-run"])
def test_edge_cases_match_lhci(method: str | None) -> None:
    """Scores that are null (notApplicable / informative / error), maxLength, user timings by
    kebab-cased name, resource-summary fallbacks, categories, missing audits - against
    getAllAssertionResults itself."""
    options: dict[str, Any] = {"assertions": EDGE_ASSERTIONS, "includePassedAssertions": True}
    if method:
        options["aggregationMethod"] = method
    theirs = node(
        "const {getAllAssertionResults} = require(U + '/assertions.js');"
        "console.log(JSON.stringify(getAllAssertionResults(input.options, input.lhrs)))",
        {"options": options, "lhrs": EDGE_LHRS},
    )

    def row(
        url: str, audit: str, prop: str | None, name: str, level: str, passed: bool, actual: Any
    ) -> tuple[Any, ...]:
        value = (
            "NaN"
            if actual is None or (isinstance(actual, float) and math.isnan(actual))
            else round(actual, 9)
        )
        return (url, audit, prop, name, level, passed, value)

    mine = sorted(row(r.url, r.audit_id, r.audit_property, r.name, r.level, r.passed, r.actual)
                  for r in lhci.assert_lhrs(options, EDGE_LHRS))  # fmt: skip
    expected = sorted(row(r["url"], r["auditId"], r.get("auditProperty"), r["name"], r["level"], r["passed"], r["actual"])
                      for r in theirs)  # fmt: skip
    assert mine == expected
    assert any(not r[5] for r in mine)
    assert any(r[5] for r in mine)

"""The fieldlab budget file: what it accepts, and errors that name the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.budgets.load import load_budgets
from app.budgets.source import BudgetFileError, parse_text
from app.budgets.spec import load_spec, parse_metric, window_seconds

GOOD = """\
version: 1
defaults:
  aggregation: pessimistic
  window: 24h
  min_samples: 50
budgets:
  - metric: field:LCP
    stat: p75
    page_group: product
    device: mobile
    warn: 2000
    fail: 2500
  - metric: field:INP
    page_group: "*"
    fail: 200
    overrides:
      - {page_group: checkout, fail: 300}
  - metric: lab:step-duration
    step: checkout
    fail: 3000
  - metric: lab:bytes:script
    fail: 300000
    overrides:
      - {url: /admin/, off: true}
  - metric: lighthouse:category:performance
    warn: 0.95
    fail: 0.9
    aggregation: median-run
  - metric: lighthouse:audit:total-blocking-time
    fail: 200
"""


def test_a_full_file_loads() -> None:
    spec = load_spec(parse_text(GOOD, "budgets.yml"))
    assert [b.metric for b in spec.budgets][:3] == ["field:LCP", "field:INP", "lab:step-duration"]
    assert spec.defaults.aggregation == "pessimistic"
    assert window_seconds(spec.defaults.window) == 86400
    assert spec.budgets[1].overrides[0].fail == 300
    assert spec.budgets[3].overrides[0].off


@pytest.mark.parametrize(
    ("text", "metric"),
    [
        ("field:CLS", ("field", "CLS", None)),
        ("lab:requests", ("lab", "requests", None)),
        ("lab:bytes:font", ("lab", "bytes", "font")),
        ("lab:third-party-bytes", ("lab", "third-party-bytes", None)),
        ("lighthouse:score:uses-http2", ("lighthouse", "score", "uses-http2")),
    ],
)
def test_metrics_parse(text: str, metric: tuple[str, str, str | None]) -> None:
    parsed = parse_metric(text)
    assert (parsed.source, parsed.name, parsed.arg) == metric


BAD = [
    ("budgets:\n  - metric: field:LCP\n    fail: fast\n", 3, "budgets[0].fail", "Expected `float"),
    ("budgets:\n  - metric: field:LCPX\n    fail: 1\n", 2, "budgets[0].metric", "unknown metric"),
    ("budgets:\n  - metric: lab:bytes:scripts\n    fail: 1\n", 2, "budgets[0].metric", "TYPE one of"),
    ("budgets:\n  - metric: field:LCP\n    warn: 3000\n    fail: 2500\n", 3, "budgets[0].warn", "at most fail"),
    ("budgets:\n  - metric: lighthouse:category:seo\n    warn: 0.8\n    fail: 0.9\n", 3, "budgets[0].warn", "at least fail"),
    ("budgets:\n  - metric: field:LCP\n", 2, "budgets[0]", "give a fail level"),
    ("budgets:\n  - metric: field:LCP\n    fail: 1\n    stpe: x\n", 4, "budgets[0].stpe", "unknown field"),
    ("budgets:\n  - metric: field:LCP\n    fail: 1\n    window: 7 weeks\n", 4, "budgets[0].window", "30m, 24h or 7d"),
    ("budgets:\n  - metric: field:LCP\n    fail: 1\n    device: phone\n", 4, "budgets[0].device", "Invalid enum value"),
    ("budgets:\n  - metric: field:LCP\n    fail: 1\n    step: home\n", 4, "budgets[0].step", "not field ones"),
    ("budgets:\n  - metric: lab:LCP\n    fail: 1\n    device: mobile\n", 4, "budgets[0].device", "field budgets only"),
    ("budgets:\n  - metric: lab:LCP\n    fail: 1\n    url: '(('\n", 4, "budgets[0].url", "regular expression"),
    ("budgets:\n  - metric: lab:LCP\n    fail: 1\n    aggregation: mean\n", 4, "budgets[0].aggregation", "Invalid enum"),
    ("budgets:\n  - metric: lab:LCP\n    fail: 1\n    overrides:\n      - {fail: 2}\n", 5,
     "budgets[0].overrides[0]", "either `url` or `page_group`"),
    ("budgets:\n  - metric: lab:LCP\n    fail: 1\n  - metric: lab:LCP\n    fail: 2\n", 4, "budgets[1]", "same budget"),
    ("version: 2\nbudgets: []\n", 1, "version", "only version 1"),
    ("budgets:\n  - metric: field:LCP\n    fail: [1\n", 4, "", "not valid YAML"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "field", "message"), BAD)
def test_errors_name_line_and_field(text: str, line: int, field: str, message: str) -> None:
    with pytest.raises(BudgetFileError) as caught:
        load_spec(parse_text(text, "b.yml"))
    error = str(caught.value)
    assert error.startswith(f"b.yml:{line}: {field}") or (not field and error.startswith(f"b.yml:{line}:")), (
        error
    )
    assert message in error


def test_the_loader_recognises_each_kind(tmp_path: Path) -> None:
    (tmp_path / "budgets.yml").write_text(GOOD)
    (tmp_path / "lighthouserc.json").write_text('{"ci": {"assert": {"preset": "lighthouse:no-pwa"}}}')
    (tmp_path / "budget.json").write_text(
        '[{"path": "/", "timings": [{"metric": "interactive", "budget": 1}]}]'
    )
    (tmp_path / "rc-budgets.yml").write_text("ci:\n  assert:\n    budgetsFile: budget.json\n")
    assert load_budgets(tmp_path / "budgets.yml").spec is not None
    assert load_budgets(tmp_path / "lighthouserc.json").lhci == {"preset": "lighthouse:no-pwa"}
    converted = load_budgets(tmp_path / "budget.json").lhci
    assert converted == {
        "assertMatrix": [
            {"matchingUrlPattern": ".*", "assertions": {"interactive": ["error", {"maxNumericValue": 1.0}]}}
        ]
    }
    assert load_budgets(tmp_path / "rc-budgets.yml").lhci == converted


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"ci": {"assert": {"assertions": {"a": "fatal"}}}}', "1: ci.assert.assertions.a: level must be off, warn or error"),
        ('{"ci": {"collect": {}}}', "no `ci.assert` section"),
        ('{"ci": {"assert": {"preset": "lighthouse:best"}}}', "ci.assert.preset: unknown preset"),
        ('{"ci": {"assert": {"assertions": {"a": ["error", {"maxScore": 1}]}}}}', "a[1].maxScore: not an assertion option"),
        ('{"ci": {"assert": {"assertions": {"a": ["error", {"minScore": "x"}]}}}}', "minScore: expected a number"),
        ('{"ci": {"assert": {"aggregationMethod": "mean", "assertions": {"a": "warn"}}}}', "aggregationMethod: must be one of"),
        ('{"ci": {"assert": {"preset": "lighthouse:all", "budgetsFile": "b.json"}}}', "Cannot use both budgets AND assertions"),
        ('{"ci": {"assert": {"assertMatrix": [{}], "preset": "lighthouse:all"}}}', "Cannot use assertMatrix with other options"),
        ('{"ci": {"assert": {}}}', "No assertions to use"),
        ('{"hello": 1}', "not a budget file"),
        ('{"ci": {"assert": {"assertions": {"a": ["warn", {"maxLength": null}]}}}}', "maxLength: expected a number"),
        ('{"ci": {"assert": {"assertions": {"a": ["warn", {"aggregationMethod": "avg"}]}}}}', "assertions.a: aggregationMethod: must be"),
    ],
)  # fmt: skip
def test_lhci_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "lighthouserc.json"
    path.write_text(text)
    with pytest.raises(BudgetFileError, match=r"lighthouserc\.json") as caught:
        load_budgets(path)
    assert message in str(caught.value)

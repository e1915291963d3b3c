"""Declarative (JSON/YAML) flows: validation is pure; runs go through the real runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from probe_helpers import SiteServer, policy_for

from probes.browser import BrowserPool
from probes.declarative import (
    AssertText,
    Click,
    DeclarativeError,
    Fill,
    Goto,
    WaitFor,
    flow_from_steps,
    parse_steps,
)
from probes.flow import FlowLoadError, load_flow_file, run_flow

EXAMPLES = Path(__file__).resolve().parents[2] / "probes" / "examples"


def test_compact_and_explicit_forms() -> None:
    steps = parse_steps(
        [
            {"step": "search", "actions": [
                {"goto": "/"},
                {"fill": {"selector": "#q", "value": "shoes"}},
                {"action": "press", "selector": "#q", "key": "Enter"},
                {"wait_for": {"selector": ".results", "state": "visible", "timeout": 5}},
                {"assert_text": {"selector": "h1", "text": "Results"}},
            ]},
            {"click": "#buy"},
            {"action": "wait_for", "selector": "#done"},
        ]
    )  # fmt: skip
    assert [s.name for s in steps] == ["search", "click #buy", "wait_for #done"]
    goto, fill, press, wait, check = steps[0].actions
    assert goto == Goto(url="/")
    assert fill == Fill(selector="#q", value="shoes")
    assert (press.selector, press.key) == ("#q", "Enter")  # type: ignore[attr-defined]
    assert wait == WaitFor(selector=".results", state="visible", timeout=5)
    assert check == AssertText(selector="h1", text="Results")
    assert steps[1].actions == (Click(selector="#buy"),)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "steps: must be a non-empty list"),
        ({"goto": "/"}, "steps: must be a non-empty list"),
        (
            [{"goto": "/"}, {"goto": "/"}, {"step": "x", "actions": [{"hover": "#a"}]}],
            "steps[2].actions[0]: unknown action 'hover'",
        ),
        (
            [{"step": "x", "actions": [{"click": 3}]}],
            "steps[0].actions[0]: click takes a mapping with selector",
        ),
        ([{"step": "x", "actions": [{"fill": {"selector": "#q"}}]}], None),
        (
            [{"step": "x", "actions": [{"fill": {"selector": "#q", "value": 5}}]}],
            "steps[0].actions[0].value: Expected `str`, got `int`",
        ),
        (
            [{"step": "x", "actions": [{"press": {"selector": "#q"}}]}],
            "steps[0].actions[0].key: required for press",
        ),
        (
            [{"step": "x", "actions": [{"click": {"selector": "#a", "force": True}}]}],
            "steps[0].actions[0]: unknown field 'force'",
        ),
        (
            [{"step": "x", "actions": [{"wait_for": {"selector": "#a", "state": "gone"}}]}],
            "steps[0].actions[0].state: Invalid enum value 'gone'",
        ),
        (
            [{"step": "x", "actions": [{"goto": "file:///etc/passwd"}]}],
            "steps[0].actions[0].url: only http(s) URLs or paths, not file:",
        ),
        (
            [{"step": "x", "actions": [{"goto": "javascript:alert(1)"}]}],
            "steps[0].actions[0].url: only http(s)",
        ),
        (
            [{"step": "x", "actions": [{"goto": "/", "click": "#a"}]}],
            "steps[0].actions[0]: an action has one key",
        ),
        ([{"step": "x", "actions": []}], "steps[0].actions: between 1 and 100 actions"),
        ([{"step": "", "actions": [{"goto": "/"}]}], "steps[0].step: a step needs a name"),
        ([{"step": "x", "actions": [{"goto": "/"}], "extra": 1}], "steps[0]: unknown field 'extra'"),
        ([{"step": 5, "actions": [{"goto": "/"}]}], "steps[0].step: Expected `str`, got `int`"),
        (["goto /"], "steps[0]: an action is a mapping"),
        (
            [{"step": "x", "actions": [{"assert_text": {"selector": "h1", "text": "a", "timeout": 0}}]}],
            "steps[0].actions[0].timeout: must be between 0 and 600",
        ),
    ],
)
def test_validation_errors_name_the_place(spec: Any, message: str | None) -> None:
    if message is None:  # fill without a value fills the empty string: valid
        parse_steps(spec)
        return
    with pytest.raises(DeclarativeError) as info:
        flow_from_steps(spec)
    assert str(info.value).startswith(message), str(info.value)


def test_example_files_are_valid() -> None:
    assert load_flow_file(EXAMPLES / "homepage.yml")
    for name in ("demo_shop.py", "checkout.py"):
        assert load_flow_file(EXAMPLES / name).__name__ == "flow"


def test_bad_steps_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("- step: one\n  actions:\n    - hover: '#x'\n")
    with pytest.raises(FlowLoadError, match=r"bad\.yml: steps\[0\]\.actions\[0\]: unknown action 'hover'"):
        load_flow_file(bad)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(FlowLoadError, match=r"junk\.json: cannot read"):
        load_flow_file(tmp_path / "junk.json")


SHOP = """<!doctype html><h1>Shop</h1><input id="q"><button id="go" onclick="
  document.getElementById('out').textContent = 'Results for ' + document.getElementById('q').value">search</button>
<p id="out"></p><a id="next" href="/cart">cart</a>"""


@pytest.mark.browser
@pytest.mark.slow
async def test_declarative_flow_runs_and_failing_assert_names_the_step(
    pool: BrowserPool, site: SiteServer, tmp_path: Path
) -> None:
    site.html("/", SHOP)
    site.html("/cart", "<h1>Cart</h1><p id='cart'>Your cart is empty.</p>")
    spec: list[dict[str, Any]] = [
        {"step": "search", "actions": [
            {"goto": "/"},
            {"fill": {"selector": "#q", "value": "shoes"}},
            {"press": {"selector": "#q", "key": "Tab"}},
            {"click": "#go"},
            {"assert_text": {"selector": "#out", "text": "Results for shoes"}},
        ]},
        {"click": "#next"},
        {"step": "cart", "actions": [
            {"wait_for": {"selector": "#cart", "state": "visible"}},
            {"assert_text": {"selector": "#cart", "text": "empty"}},
        ]},
    ]  # fmt: skip
    ok = await run_flow(
        flow_from_steps(spec),
        base_url=site.url,
        pool=pool,
        policy=policy_for(site),
        artifacts_dir=tmp_path / "ok",
    )
    assert ok.status == "passed", ok.error
    assert [(s.name, s.status) for s in ok.steps] == [
        ("search", "passed"),
        ("click #next", "passed"),
        ("cart", "passed"),
    ]
    assert [n.url for n in ok.steps[1].navigations if n.kind == "navigation"] == [f"{site.url}/cart"]

    spec[2]["actions"][1] = {"assert_text": {"selector": "#cart", "text": "2 items", "timeout": 1}}
    bad = await run_flow(
        flow_from_steps(spec),
        base_url=site.url,
        pool=pool,
        policy=policy_for(site),
        artifacts_dir=tmp_path / "bad",
        retries=0,
    )
    assert bad.status == "failed"
    assert bad.error == (
        "step 'cart': assert_text: '#cart' does not contain '2 items' after 1 s (its text: 'Your cart is empty.')"
    )
    assert [s.status for s in bad.steps] == ["passed", "passed", "failed"]
    assert "attempt-1/failure.png" in bad.artifacts

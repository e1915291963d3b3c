"""Notification bodies, pure: the README's payload examples are what the code sends."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.budgets.alerts import AlertEvent
from app.budgets.notify import describe, duration, generic_payload, slack_payload
from app.budgets.verdict import Verdict

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
BUDGET = "field:LCP:p75:/product/:id:mobile"
NAME = "LCP p75 /product/:id mobile"


def readme_json(after: str) -> object:
    """The first ```json block after the line starting with ``after``."""
    tail = README[README.index(after) :]
    block = re.search(r"```json\n(.*?)```", tail, re.S)
    assert block is not None
    return json.loads(block.group(1))


def test_generic_example_in_the_readme_is_what_is_sent() -> None:
    v = Verdict(BUDGET, NAME, "pass", 2310.0, 2500.0, 190.0, "ms", 1840)
    event = AlertEvent("recovered", "fail", v, 1_795_766_400_000, 1_795_758_900_000)
    assert generic_payload(event, "site:1") == readme_json("Generic JSON (")


def test_slack_example_in_the_readme_is_what_is_sent() -> None:
    v = Verdict(BUDGET, NAME, "fail", 2740.0, 2500.0, -240.0, "ms", 1910)
    event = AlertEvent("failing", "fail", v, 1_795_766_400_000, 1_795_766_400_000)
    assert slack_payload(event, "site:1") == readme_json("Slack-compatible (")


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (45_000, "45s"),
        (60_000, "1m"),
        (7_500_000, "2h 5m"),
        (3 * 86_400_000 + 4 * 3_600_000 + 60_000, "3d 4h"),
    ],
)
def test_durations_read_like_people_write_them(ms: int, text: str) -> None:
    assert duration(ms) == text


def test_warn_reminders_and_values_without_unit_or_samples() -> None:
    v = Verdict("lh:performance", "performance score", "warn", 0.82, 0.9, -0.08)
    event = AlertEvent("still-failing", "warn", v, 10_000_000, 10_000_000 - 5_400_000)
    assert describe(event) == "WARN performance score is still failing for 1h 30m: 0.82 (limit 0.9)"

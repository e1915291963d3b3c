"""The alert state machine, pure: K of N, warn and fail bands, silence without data, re-notify."""

from __future__ import annotations

import pytest

from app.budgets.alerts import AlertEvent, AlertPolicy, BudgetState, step
from app.budgets.verdict import Status, Verdict

MIN = 60_000


def verdict(status: Status, actual: float = 3000.0) -> Verdict:
    limit = 2500.0 if status != "warn" else 2000.0
    return Verdict(
        "field:shop:LCP:p75", "LCP p75 /product mobile", status, actual, limit, limit - actual, "ms", 500
    )


def feed(
    statuses: str, policy: AlertPolicy, state: BudgetState | None = None, start: int = 0
) -> tuple[BudgetState, list[AlertEvent]]:
    """Letters: p pass, w warn, f fail, i insufficient-data; one evaluation a minute."""
    names: dict[str, Status] = {"p": "pass", "w": "warn", "f": "fail", "i": "insufficient-data"}
    state = state or BudgetState()
    events: list[AlertEvent] = []
    for i, letter in enumerate(statuses):
        state, fired = step(state, verdict(names[letter]), now_ms=start + i * MIN, policy=policy)
        events += fired
    return state, events


def kinds(events: list[AlertEvent]) -> list[tuple[str, str, int]]:
    return [(e.kind, e.band, e.at_ms // MIN) for e in events]


def test_fires_once_k_of_the_last_n_breach_not_before() -> None:
    policy = AlertPolicy(k=3, n=5)
    state, events = feed("fpfp", policy)
    assert events == []
    assert state.fail.state == "ok"
    state, events = feed("fpfpf", policy)
    assert kinds(events) == [("failing", "fail", 4)]  # 3 of the last 5
    assert state.fail.state == "failing"
    assert state.fail.failing_since_ms == 4 * MIN


def test_breaches_that_fall_out_of_the_window_do_not_count() -> None:
    # f p p p p f p f: at the last f the window (last 5) is p p f p f — only 2 breaches.
    _, events = feed("fppppfpf", AlertPolicy(k=3, n=5))
    assert events == []


def test_nothing_is_sent_while_the_state_is_unchanged() -> None:
    _, events = feed("fff" + "f" * 20, AlertPolicy(k=3, n=5))
    assert kinds(events) == [("failing", "fail", 2)]


def test_recovers_when_fewer_than_k_breach_and_says_for_how_long() -> None:
    policy = AlertPolicy(k=2, n=3)
    state, events = feed("ff" + "f" * 5 + "pp", policy)
    assert kinds(events) == [("failing", "fail", 1), ("recovered", "fail", 8)]
    recovered = events[-1]
    assert recovered.failing_for_ms == 7 * MIN
    assert state.fail.state == "recovered"
    state, more = step(state, verdict("pass"), now_ms=9 * MIN, policy=policy)
    assert more == []
    assert state.fail.state == "ok"


def test_one_good_run_in_a_bad_streak_does_not_recover() -> None:
    _, events = feed("fffpfff", AlertPolicy(k=3, n=5))
    assert kinds(events) == [("failing", "fail", 2)]


def test_it_can_fail_again_after_recovering() -> None:
    _, events = feed("ffpppff", AlertPolicy(k=2, n=3))
    assert kinds(events) == [("failing", "fail", 1), ("recovered", "fail", 3), ("failing", "fail", 6)]


def test_warn_and_fail_bands_are_separate() -> None:
    policy = AlertPolicy(k=1, n=1)
    # warn, then fail, then back to warn, then pass.
    state, events = feed("wfwp", policy)
    assert kinds(events) == [
        ("failing", "warn", 0),
        ("failing", "fail", 1),
        ("recovered", "fail", 2),
        ("recovered", "warn", 3),
    ]
    assert state.warn.state == "recovered"
    assert state.fail.state == "ok"


def test_a_jump_past_both_levels_notifies_once() -> None:
    state, events = feed("fp", AlertPolicy(k=1, n=1))
    assert kinds(events) == [("failing", "fail", 0), ("recovered", "fail", 1)]
    assert state.warn.state == "recovered"  # the warn band moved too, silently


def test_insufficient_data_stays_silent_and_does_not_heal() -> None:
    policy = AlertPolicy(k=2, n=2)
    state, events = feed("iiiiii", policy)
    assert events == []
    assert state == BudgetState()
    # Failing, then the data dries up: no recovery is claimed, and the window is untouched.
    state, events = feed("ff" + "iiii", policy)
    assert kinds(events) == [("failing", "fail", 1)]
    assert state.fail.state == "failing"
    assert state.fail.window == (True, True)


def test_renotify_repeats_while_failing_at_the_interval() -> None:
    policy = AlertPolicy(k=1, n=1, renotify_ms=3 * MIN)
    _, events = feed("f" * 8 + "p", policy)
    assert kinds(events) == [
        ("failing", "fail", 0),
        ("still-failing", "fail", 3),
        ("still-failing", "fail", 6),
        ("recovered", "fail", 8),
    ]
    assert events[1].failing_for_ms == 3 * MIN


def test_state_survives_a_round_trip_through_storage() -> None:
    policy = AlertPolicy(k=2, n=4, renotify_ms=MIN)
    state, _ = feed("wffp", policy)
    assert BudgetState.from_dict(state.to_dict()) == state
    assert state.summary == "failing"


def test_event_keys_are_unique_per_transition() -> None:
    _, events = feed("ffppff", AlertPolicy(k=2, n=2))
    assert len({e.key for e in events}) == len(events) == 3


@pytest.mark.parametrize(("k", "n"), [(0, 3), (4, 3)])
def test_policy_rejects_impossible_k_of_n(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="K"):
        AlertPolicy(k=k, n=n)

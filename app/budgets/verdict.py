"""What judging one number against one budget produces (pure data, no I/O)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["pass", "warn", "fail", "insufficient-data"]

# Worst first: a report's overall status is the worst of its verdicts ("off" budgets make none).
SEVERITY: dict[Status, int] = {"fail": 3, "warn": 2, "insufficient-data": 1, "pass": 0}


@dataclass(frozen=True, slots=True)
class Verdict:
    """One budget judged once.

    ``budget_id`` is stable across evaluations (the alert state machine keys on it), e.g.
    ``field:shop:LCP:p75:/product/:id:mobile`` or ``lhci:performance:minScore:https://…``.
    ``limit`` is the bound of the band that decided (the fail bound for ``fail`` and ``pass``,
    the warn bound for ``warn``). ``margin`` is signed so that positive means within budget
    (``limit - actual`` for a maximum, ``actual - limit`` for a minimum).
    """

    budget_id: str
    name: str
    status: Status
    actual: float | None
    limit: float | None
    margin: float | None
    unit: str = ""
    samples: int | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def worst(verdicts: list[Verdict]) -> Status:
    """The overall status of a set of verdicts (``pass`` when there are none)."""
    return max((v.status for v in verdicts), key=SEVERITY.__getitem__, default="pass")

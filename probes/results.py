"""Flow run results: plain dataclasses whose ``to_dict()`` is JSON-safe (the app stores it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from probes.collect import Resources
from probes.vitals import Navigation

# passed: first attempt passed; flaky: passed on a retry; failed: no attempt passed;
# error: the run could not happen (target refused, no browser) - not the site's fault.
RUN_STATUSES = ("passed", "flaky", "failed", "error")
STEP_STATUSES = ("passed", "failed", "timed-out")


@dataclass
class StepResult:
    name: str
    status: str = "passed"
    started_at: int = 0  # epoch ms
    duration_ms: float = 0.0
    error: str | None = None
    navigations: list[Navigation] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    console_errors: list[dict[str, Any]] = field(default_factory=list)
    failed_requests: list[dict[str, Any]] = field(default_factory=list)
    screenshot: str | None = None  # relative to the run's artifacts_dir

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FlowResult:
    status: str
    started_at: int  # epoch ms
    base_url: str
    device: str
    throttling: str
    duration_ms: float = 0.0
    attempts: int = 0
    error: str | None = None
    steps: list[StepResult] = field(default_factory=list)  # of the last attempt
    attempt_errors: list[str] = field(default_factory=list)  # why each failed attempt failed
    blocked_requests: list[str] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)  # relative to artifacts_dir

    @property
    def ok(self) -> bool:
        return self.status in ("passed", "flaky")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

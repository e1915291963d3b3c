"""The real ProbeRunner: runs checks in this process with probes/ (one warm browser, a new
context per run; Lighthouse as a subprocess, one audit at a time machine-wide)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from app.checks import resolve_flow_file
from app.config import Settings
from app.models import Check
from app.observability import Metrics

if TYPE_CHECKING:
    from probes.browser import BrowserPool
    from probes.lighthouse import HostCalibration
    from probes.safety import TargetPolicy

# The API's proxy tracer: a no-op unless app/tracing.py installed a provider.
tracer = trace.get_tracer("fieldlab.runner")
FLOW_RETRIES = 1  # one retry: a run that passes only on it is recorded as flaky


def target_policy(settings: Settings) -> TargetPolicy:
    """The one policy every check is held to: at creation, before a run and on each request."""
    from probes.safety import TargetPolicy

    return TargetPolicy(allow_private=settings.allow_private_targets, allow_hosts=settings.target_hosts())


class LocalProbeRunner:
    def __init__(
        self, settings: Settings, *, pool: BrowserPool | None = None, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._pool = pool  # made on first use (no browser at start) unless one is given
        self._owns_pool = pool is None
        self.policy = target_policy(settings)
        # This host's speed as its audits measure it (FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN=auto);
        # made with the first audit, kept for the process's life: the host does not change.
        self.host_calibration: HostCalibration | None = None

    @property
    def pool(self) -> BrowserPool:
        if self._pool is None:
            from probes.browser import BrowserPool

            self._pool = BrowserPool(chromium=self.settings.chromium or None)
        return self._pool

    async def run(self, check: Check, artifacts: Path) -> tuple[str, dict[str, Any]]:
        attributes: dict[str, str | int] = {"fieldlab.check.id": check.id or 0, "fieldlab.check.kind": check.kind,
                      "fieldlab.check.name": check.name, "url.full": check.target}  # fmt: skip
        with tracer.start_as_current_span(f"probe {check.kind}", attributes=attributes) as span:
            if check.kind == "flow":
                status, result = await self._flow(check, artifacts)
            else:
                status, result = await self._lighthouse(check, artifacts)
            span.set_attribute("fieldlab.run.status", status)
            return status, result

    async def _flow(self, check: Check, artifacts: Path) -> tuple[str, dict[str, Any]]:
        from probes.declarative import flow_from_steps
        from probes.flow import load_flow_file, run_flow

        if check.steps:
            flow = flow_from_steps(check.steps)
        else:
            assert check.flow_file is not None
            # Resolved again at run time: a symlink swapped since creation must not lead outside.
            flow = load_flow_file(resolve_flow_file(Path(self.settings.flows_dir), check.flow_file))
        result = await run_flow(
            flow,
            base_url=check.target,
            pool=self.pool,
            device=check.device,
            throttling=check.throttling,
            policy=self.policy,
            artifacts_dir=artifacts,
            step_timeout_s=self.settings.step_timeout_s,
            run_timeout_s=self.settings.run_timeout_s,
            retries=FLOW_RETRIES,
        )
        out = result.to_dict()
        return str(out["status"]), out

    async def _lighthouse(self, check: Check, artifacts: Path) -> tuple[str, dict[str, Any]]:
        from probes.browser import find_chromium
        from probes.lighthouse import HostCalibration, run_lighthouse

        self.host_calibration = self.host_calibration or HostCalibration()
        started = time.perf_counter()
        outcome = "error"
        with tracer.start_as_current_span(
            "lighthouse", attributes={"fieldlab.lighthouse.runs": check.runs}
        ) as span:
            try:
                preset = "desktop" if check.device == "desktop" else "mobile"
                result = await run_lighthouse(
                    check.target,
                    chromium=find_chromium(self.settings.chromium or None),
                    preset=preset,
                    runs=check.runs,
                    timeout_s=self.settings.lighthouse_timeout_s,
                    output_dir=artifacts,
                    policy=self.policy,
                    cpu_slowdown=self.settings.lighthouse_cpu_slowdown(preset),
                    calibration=self.host_calibration,
                )
                outcome = lighthouse_status(result.status, attempted=bool(result.runs))
                span.set_attribute("fieldlab.lighthouse.outcome", outcome)
            finally:
                if self.metrics is not None:
                    self.metrics.lighthouse_seconds.labels(outcome).observe(time.perf_counter() - started)
        return outcome, result.to_dict()

    async def close(self) -> None:
        if self._pool is not None and self._owns_pool:
            await self._pool.close()


def lighthouse_status(probe_status: str, *, attempted: bool) -> str:
    """An audit with a representative run passed (runs that failed are named in ``error``).
    None usable: ``failed`` if Lighthouse ran and the page could not be audited (the site's
    problem), ``error`` if it never ran (target refused, Lighthouse missing)."""
    if probe_status == "passed":
        return "passed"
    return "failed" if attempted else "error"

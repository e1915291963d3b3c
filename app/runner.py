"""The real ProbeRunner: runs checks in this process with probes/ (one warm browser, a new
context per run; Lighthouse as a subprocess, one audit at a time machine-wide)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.config import Settings
from app.models import Check


class LocalProbeRunner:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: Any = None  # probes.browser.BrowserPool, made on first use (no browser at start)
        self._policy: Any = None

    @property
    def pool(self) -> Any:
        if self._pool is None:
            from probes.browser import BrowserPool

            self._pool = BrowserPool(chromium=self.settings.chromium or None)
        return self._pool

    @property
    def policy(self) -> Any:
        if self._policy is None:
            from probes.safety import TargetPolicy

            self._policy = TargetPolicy(allow_private=self.settings.allow_private_targets)
        return self._policy

    async def run(self, check: Check, artifacts: Path) -> tuple[str, dict[str, Any]]:
        if check.kind == "flow":
            return await self._flow(check, artifacts)
        return await self._lighthouse(check, artifacts)

    async def _flow(self, check: Check, artifacts: Path) -> tuple[str, dict[str, Any]]:
        from probes.declarative import flow_from_steps
        from probes.flow import load_flow_file, run_flow

        if check.steps:
            flow = flow_from_steps(check.steps)
        else:
            assert check.flow_file is not None
            flow = load_flow_file(Path(self.settings.flows_dir) / check.flow_file)
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
            retries=1,
        )
        out = result.to_dict()
        return str(out["status"]), out

    async def _lighthouse(self, check: Check, artifacts: Path) -> tuple[str, dict[str, Any]]:
        from probes.browser import find_chromium
        from probes.lighthouse import run_lighthouse

        result = await run_lighthouse(
            check.target,
            chromium=find_chromium(self.settings.chromium or None),
            preset="desktop" if check.device == "desktop" else "mobile",
            runs=check.runs,
            timeout_s=self.settings.lighthouse_timeout_s,
            output_dir=artifacts,
            policy=self.policy,
        )
        out = result.to_dict()
        return ("failed" if out.get("error") else "passed"), out

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

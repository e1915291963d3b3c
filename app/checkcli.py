"""`fieldlab check run`: one flow, from the command line, no server needed."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from app.config import Settings


def _fmt_ms(value: Any) -> str:
    return f"{value:,.0f} ms" if isinstance(value, int | float) else "—"


def print_result(result: dict[str, Any], console: Console) -> None:
    colour = {"passed": "green", "flaky": "yellow"}.get(result["status"], "red")
    console.print(f"[bold {colour}]{result['status'].upper()}[/] in {_fmt_ms(result.get('duration_ms'))}"
                  f" ({result.get('attempts', 1)} attempt(s))")  # fmt: skip
    if result.get("error"):
        console.print(f"[red]{result['error']}[/]")
    steps = Table(
        "step", "status", "duration", "LCP", "CLS", "INP", "requests", "bytes", "3rd-party", "errors"
    )
    for step in result.get("steps", []):
        vitals: dict[str, Any] = {}
        for nav in step.get("navigations", []):
            vitals.update({k: v for k, v in nav.get("vitals", {}).items() if v is not None})
        res = step.get("resources", {})
        cls = vitals.get("CLS")
        steps.add_row(
            step["name"], step["status"], _fmt_ms(step.get("duration_ms")), _fmt_ms(vitals.get("LCP")),
            f"{cls:.3f}" if isinstance(cls, int | float) else "—", _fmt_ms(vitals.get("INP")),
            str(res.get("total_count", "—")), f"{res.get('total_bytes', 0):,}",
            f"{res.get('third_party_share', 0):.0%}",
            str(len(step.get("console_errors", [])) + len(step.get("failed_requests", []))),
        )  # fmt: skip
    console.print(steps)
    if result.get("blocked_requests"):
        console.print(f"[yellow]blocked by target policy:[/] {', '.join(result['blocked_requests'][:5])}")
    for path in result.get("artifacts", []):
        console.print(f"artifact: {path}")


def run_flow_once(
    *,
    flow_file: Path,
    url: str,
    as_json: bool,
    device: str,
    throttling: str,
    allow_private: bool,
    artifacts: Path | None,
    settings: Settings,
    console: Console,
    errors: Console,
) -> int:
    from probes.browser import BrowserPool, ChromiumNotFound
    from probes.flow import FlowLoadError, load_flow_file, run_flow
    from probes.safety import TargetPolicy, TargetRefused

    try:
        flow = load_flow_file(flow_file)
        policy = TargetPolicy(allow_private=allow_private)
        policy.check_url(url)
    except (FlowLoadError, TargetRefused) as exc:
        errors.print(f"[red]error:[/red] {exc}")
        return 2
    out_dir = artifacts or Path(tempfile.mkdtemp(prefix="fieldlab-run-"))

    async def go() -> dict[str, Any]:
        pool = BrowserPool(chromium=settings.chromium or None)
        try:
            result = await run_flow(
                flow, base_url=url, pool=pool, device=device, throttling=throttling, policy=policy,
                artifacts_dir=out_dir, step_timeout_s=settings.step_timeout_s, run_timeout_s=settings.run_timeout_s,
            )  # fmt: skip
            return result.to_dict()
        finally:
            await pool.close()

    try:
        result = asyncio.run(go())
    except ChromiumNotFound as exc:
        errors.print(f"[red]error:[/red] {exc}")
        return 2
    result["artifacts_dir"] = str(out_dir)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print_result(result, console)
    return 0 if result["status"] == "passed" else 1

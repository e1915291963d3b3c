"""`fieldlab check run`: one flow, from the command line, no server needed.

Exit status: 0 passed (also flaky: it passed on a retry, printed as FLAKY with a warning),
1 failed, 2 usage or infrastructure error (bad flow file, refused target, no Chromium, a run
that could not happen) with a one-line reason on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.config import Settings

if TYPE_CHECKING:
    from playwright.async_api import Page
    from rich.status import Status

    from probes.flow import FlowFn, StepFn


def _fmt_ms(value: Any) -> str:
    return f"{value:,.0f} ms" if isinstance(value, int | float) else "—"


def _fmt_bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return "—"
    return f"{value / 1024:,.1f} KiB" if value >= 1024 else f"{value:,.0f} B"


def print_result(result: dict[str, Any], console: Console) -> None:
    colour = {"passed": "green", "flaky": "yellow"}.get(result["status"], "red")
    console.print(f"[bold {colour}]{result['status'].upper()}[/] in {_fmt_ms(result.get('duration_ms'))}"
                  f" ({result.get('attempts', 1)} attempt(s))")  # fmt: skip
    if result["status"] == "flaky":
        console.print("[yellow]warning:[/] it passed only on a retry; earlier attempts failed:")
        for line in result.get("attempt_errors", []):
            console.print(f"  {line}", markup=False, soft_wrap=True)
    elif result.get("error"):
        console.print(f"[red]{escape(result['error'])}[/]", soft_wrap=True)
    # A plain frame and short headers: the table fits 80 columns, which is what a pipe gets.
    steps = Table("step", "status", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("time", "LCP", "CLS", "INP", "req", "bytes", "3p", "errors"):
        steps.add_column(column, justify="right", no_wrap=True)
    for step in result.get("steps", []):
        vitals: dict[str, Any] = {}
        for nav in step.get("navigations", []):
            vitals.update({k: v for k, v in nav.get("vitals", {}).items() if v is not None})
        res = step.get("resources", {})
        cls = vitals.get("CLS")
        steps.add_row(
            step["name"], step["status"], _fmt_ms(step.get("duration_ms")), _fmt_ms(vitals.get("LCP")),
            f"{cls:.3f}" if isinstance(cls, int | float) else "—", _fmt_ms(vitals.get("INP")),
            str(res.get("total_count", "—")), _fmt_bytes(res.get("total_bytes", 0)),
            f"{res.get('third_party_share', 0):.0%}",
            str(len(step.get("console_errors", [])) + len(step.get("failed_requests", []))),
        )  # fmt: skip
    if result.get("steps"):
        console.print(steps)
    if result.get("blocked_requests"):
        blocked = escape(", ".join(result["blocked_requests"][:5]))
        console.print(f"[yellow]blocked by target policy:[/] {blocked}", soft_wrap=True)
    root = Path(result.get("artifacts_dir", "."))
    for path in result.get("artifacts", []):
        console.print(f"artifact: {root / path}", markup=False, soft_wrap=True)


def _with_progress(flow: FlowFn, status: Status | None) -> FlowFn:
    """The flow, telling the spinner which step it is in."""
    if status is None:
        return flow

    async def wrapped(page: Page, step: StepFn) -> None:
        def named(name: str) -> AbstractAsyncContextManager[None]:
            status.update(f"step [bold]{name}[/]")
            return step(name)

        await flow(page, named)

    return wrapped


@contextlib.contextmanager
def _spinner(errors: Console, show: bool) -> Iterator[Status | None]:
    if not show or not errors.is_terminal:
        yield None
        return
    with errors.status("starting Chromium") as status:
        yield status


def run_flow_once(
    *,
    flow_file: Path,
    url: str,
    as_json: bool,
    device: str,
    throttling: str,
    allow_private: bool,
    allow_hosts: tuple[str, ...] = (),
    retries: int = 1,
    artifacts: Path | None,
    settings: Settings,
    console: Console,
    errors: Console,
) -> int:
    from probes.browser import BrowserPool, ChromiumNotFound
    from probes.flow import FlowLoadError, load_flow_file, run_flow
    from probes.safety import TargetPolicy, TargetRefused

    def fail(reason: str) -> int:
        # One line whatever the width: scripts and CI logs grep it.
        errors.print(f"[red]error:[/red] {escape(reason)}", highlight=False, soft_wrap=True)
        return 2

    try:
        flow = load_flow_file(flow_file)
        policy = TargetPolicy(allow_private=allow_private, allow_hosts=allow_hosts)
        policy.check_url(url)
        pool = BrowserPool(chromium=settings.chromium or None)
    except (FlowLoadError, TargetRefused, ChromiumNotFound) as exc:
        return fail(str(exc))
    out_dir = artifacts or Path(tempfile.mkdtemp(prefix="fieldlab-run-"))

    async def go(status: Status | None) -> dict[str, Any]:
        try:
            result = await run_flow(
                _with_progress(flow, status), base_url=url, pool=pool, device=device, throttling=throttling,
                policy=policy, artifacts_dir=out_dir, step_timeout_s=settings.step_timeout_s,
                run_timeout_s=settings.run_timeout_s, retries=retries,
            )  # fmt: skip
            return result.to_dict()
        finally:
            await pool.close()

    try:
        with _spinner(errors, show=True) as status:
            result = asyncio.run(go(status))
    except Exception as exc:  # the browser could not start, the driver died, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return fail(f"{type(exc).__name__}: {first}")
    result["artifacts_dir"] = str(out_dir)
    if as_json:
        print(json.dumps(result, indent=2))
        if result["status"] == "flaky":
            errors.print("[yellow]warning:[/] FLAKY: it passed only on a retry", highlight=False)
    else:
        print_result(result, console)
    if result["status"] == "error":
        return fail(str(result.get("error") or "the run could not happen"))
    return 0 if result["status"] in ("passed", "flaky") else 1

"""``python -m probes FLOW --url BASE``: run one flow once, without a server.

Exit status: 0 passed (also ``flaky``: it passed on a retry, and says so), 1 failed, 2 usage or
infrastructure error (bad flow file, target refused, no Chromium) with a one-line reason on
stderr. ``fieldlab check run`` is the same with the app's settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from probes.browser import DEVICES, THROTTLING, BrowserPool, ChromiumNotFound
from probes.flow import FlowLoadError, load_flow_file, run_flow
from probes.safety import TargetPolicy, TargetRefused


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m probes", description="Run a fieldlab flow once.")
    p.add_argument(
        "flow", type=Path, help="flow file: Python (async def flow(page, step)) or .yml/.json steps"
    )
    p.add_argument("--url", required=True, help="target base URL (http or https)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--device", choices=sorted(DEVICES), default="desktop")
    p.add_argument("--throttling", choices=list(THROTTLING), default="none")
    p.add_argument("--allow-private", action="store_true", help="allow loopback/private/link-local targets")
    p.add_argument("--artifacts", type=Path, help="where screenshots and traces go (default: a new temp dir)")
    p.add_argument("--retries", type=int, default=1)
    p.add_argument("--step-timeout", type=float, default=30.0, metavar="S")
    p.add_argument("--run-timeout", type=float, default=120.0, metavar="S")
    p.add_argument("--chromium", help="Chromium executable (default: $FIELDLAB_CHROMIUM, then PATH)")
    return p


def _fmt(value: Any, unit: str = " ms") -> str:
    return "-" if value is None else f"{value:.0f}{unit}" if unit else f"{value:.3f}"


def _human(result: dict[str, Any], artifacts: Path) -> str:
    lines = [
        f"{result['status'].upper()} in {result['duration_ms']:.0f} ms ({result['attempts']} attempt(s))"
    ]
    if result["error"]:
        lines.append(f"  error: {result['error']}")
    for s in result["steps"]:
        res = s["resources"]
        lines.append(
            f"  [{s['status']}] {s['name']}: {s['duration_ms']:.0f} ms, {res['total_count']} requests, "
            f"{res['total_bytes']:,} bytes ({res['third_party_share']:.0%} third-party), "
            f"{len(s['console_errors'])} console errors, {len(s['failed_requests'])} failed requests"
        )
        for nav in s["navigations"]:
            v = nav["vitals"]
            lines.append(
                f"      {nav['kind']} {nav['url']}: TTFB {_fmt(v.get('TTFB'))} FCP {_fmt(v.get('FCP'))} "
                f"LCP {_fmt(v.get('LCP'))} CLS {_fmt(v.get('CLS'), '')} INP {_fmt(v.get('INP'))}"
            )
    for url in result["blocked_requests"][:10]:
        lines.append(f"  blocked: {url}")
    lines.extend(f"  artifact: {artifacts / a}" for a in result["artifacts"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        flow = load_flow_file(args.flow)
        policy = TargetPolicy(allow_private=args.allow_private)
        policy.check_url(args.url)
        pool = BrowserPool(args.chromium)
    except (FlowLoadError, TargetRefused, ChromiumNotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    artifacts = args.artifacts or Path(tempfile.mkdtemp(prefix="fieldlab-run-"))

    async def go() -> dict[str, Any]:
        try:
            result = await run_flow(
                flow, base_url=args.url, pool=pool, device=args.device, throttling=args.throttling, policy=policy,
                artifacts_dir=artifacts, step_timeout_s=args.step_timeout, run_timeout_s=args.run_timeout,
                retries=args.retries,
            )  # fmt: skip
            return result.to_dict()
        finally:
            await pool.close()

    try:
        result = asyncio.run(go())
    except Exception as exc:  # the browser could not start, the driver died, ...
        print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 2
    result["artifacts_dir"] = str(artifacts)
    print(json.dumps(result, indent=2) if args.json else _human(result, artifacts))
    if result["status"] == "error":
        print(f"error: {result['error']}", file=sys.stderr)
        return 2
    return 0 if result["status"] in ("passed", "flaky") else 1


if __name__ == "__main__":
    sys.exit(main())

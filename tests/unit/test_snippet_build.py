"""The snippet build: reproducible from source, and within its size budget."""

from __future__ import annotations

import subprocess
from pathlib import Path

import brotli

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "static" / "fieldlab.js"
BUDGET_BROTLI_BYTES = 2500


def test_committed_build_matches_the_source() -> None:
    """`build.mjs --check` rebuilds in memory and fails if static/fieldlab.js differs."""
    result = subprocess.run(
        ["node", "rum-snippet/build.mjs", "--check"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_is_within_the_size_budget() -> None:
    size = len(brotli.compress(BUILD.read_bytes(), quality=11))
    assert size <= BUDGET_BROTLI_BYTES, f"fieldlab.js is {size} B brotli, budget {BUDGET_BROTLI_BYTES} B"

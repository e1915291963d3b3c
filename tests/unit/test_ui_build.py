"""The dashboard's asset build: committed output matches the sources, names carry the content
hash, precompressed siblings decode to the file, and each page's JavaScript is within budget."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
from pathlib import Path

import brotli

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "static" / "ui"
JS_BUDGET_BROTLI = 60 * 1024  # issue 7: JavaScript per page ≤ 60 KB brotli


def test_committed_build_matches_the_sources() -> None:
    result = subprocess.run(
        ["node", "app/ui/assets/build.mjs", "--check"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_names_are_fingerprints_and_variants_match() -> None:
    manifest = json.loads((OUT / "manifest.json").read_text())
    assert set(manifest) == {"ui.css", "charts.css", "charts.js"}
    for name in manifest.values():
        raw = (OUT / name).read_bytes()
        assert hashlib.sha256(raw).hexdigest()[:12] in name
        assert brotli.decompress((OUT / f"{name}.br").read_bytes()) == raw
        assert gzip.decompress((OUT / f"{name}.gz").read_bytes()) == raw


def test_javascript_per_page_is_within_budget() -> None:
    manifest = json.loads((OUT / "manifest.json").read_text())
    snippet = len(brotli.compress((ROOT / "static" / "fieldlab.js").read_bytes(), quality=11))
    charts = len((OUT / f"{manifest['charts.js']}.br").read_bytes())
    # The heaviest page (trends) carries the snippet and the chart code; nothing else.
    assert snippet + charts <= JS_BUDGET_BROTLI, f"{snippet + charts} B brotli"

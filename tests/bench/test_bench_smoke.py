"""Keeps the benchmark harness from rotting: a few seconds at a low rate, figures checked
for shape and sanity (not speed; speed is for `python -m bench`, run by hand)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_bench_runs_and_writes_results(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "run",
            "--backend",
            "sqlite",
            "--duration",
            "2",
            "--rate",
            "20",
            "--skip-ceilings",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "captures accepted/s" in result.stdout
    [path] = tmp_path.glob("sqlite-*.json")
    report = json.loads(path.read_text())
    rex = report["rex"]
    assert rex["captures_accepted"] > 0
    assert rex["errors"] == 0
    assert rex["backlog_after_drain"] == 0
    assert rex["deliveries_total"] == rex["captures_accepted"]
    assert rex["latency_ms"]["p50"] is not None
    assert rex["peak_rss_mib"]["serve"] > 0

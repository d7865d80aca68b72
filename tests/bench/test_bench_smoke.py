"""Keeps the benchmark harness from rotting: a few seconds at a low rate, figures checked
for shape and sanity (not speed; speed is for `python -m bench`, run by hand)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_bench_run_writes_figures_and_targets(tmp_path: Path) -> None:
    result = _bench(
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
    )
    assert "captures accepted/s" in result.stdout
    assert "targets:" in result.stdout
    [path] = tmp_path.glob("sqlite-*.json")
    assert path.with_suffix(".png").exists()
    report = json.loads(path.read_text())
    rex = report["rex"]
    assert rex["captures_accepted"] > 0
    assert rex["errors"] == 0
    assert rex["backlog_after_drain"] == 0
    assert rex["deliveries_total"] == rex["captures_accepted"]
    assert rex["latency_ms"]["p50"] is not None
    assert rex["peak_rss_mib"]["serve"] > 0
    assert {t["target"].split(" ")[0] for t in report["targets"]} >= {"p99", "every"}


def test_bench_backlog_drains(tmp_path: Path) -> None:
    result = _bench("backlog", "--backend", "sqlite", "--events", "300", "--out", str(tmp_path))
    assert "deliveries/s" in result.stdout
    [path] = tmp_path.glob("sqlite-backlog-*.json")
    rex = json.loads(path.read_text())["rex"]
    assert rex["delivered"] == 300
    assert rex["left"] == 0
    assert rex["peak_rss_mib"]["serve"] > 0


@pytest.mark.postgres
def test_bench_postgres_run(tmp_path: Path, postgres_url: str) -> None:
    result = _bench(
        "run",
        "--backend",
        "postgres",
        "--workers",
        "1",
        "--duration",
        "2",
        "--rate",
        "20",
        "--skip-ceilings",
        "--postgres-url",
        postgres_url,
        "--out",
        str(tmp_path),
    )
    assert "captures accepted/s" in result.stdout
    rex = json.loads(next(tmp_path.glob("postgres-*.json")).read_text())["rex"]
    assert rex["deliveries_total"] == rex["captures_accepted"] > 0
    assert set(rex["peak_rss_mib"]) == {"serve", "worker1"}


def test_bench_console_times_every_page(tmp_path: Path) -> None:
    """`python -m bench console` at a toy size: every page answers 200 and has figures."""
    result = _bench(
        "console", "--contacts", "200", "--deliveries", "2000", "--requests", "2",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert "target p95 <= 50 ms" in result.stdout
    report = json.loads((tmp_path / "console-sqlite.json").read_text())
    assert set(report["http"]) >= {"home", "webhooks", "delivery", "events", "settings"}
    assert all(f["p95_ms"] > 0 for f in report["queries"].values())

"""Figures against the issue's targets, a printed table, and JSON + PNG outputs."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

MEMORY_LIMIT_MIB = 200.0
BACKLOG_GROWTH_LIMIT_MIB = 16.0


def _ratio(value: float | None, ceiling: float | None) -> str:
    if not value or not ceiling:
        return ""
    return f"{value / ceiling:.2f} x {ceiling:g}"


def keeping_up(rex: dict[str, Any]) -> bool:
    """Deliveries kept up: at the end of the load at most one second of captures (x fan-out)
    was still waiting to be delivered."""
    return bool(rex["backlog_at_end_of_load"] <= max(rex["captures_per_s"], 50.0))


def targets(report: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for every target of issue 7 that this run speaks to."""
    rows: list[tuple[str, str, bool | None]] = []
    rex, ceilings = report["rex"], report.get("ceilings", {})
    if report["kind"] == "backlog":
        growth = max(rex["rss_growth_mib"].values(), default=0.0)
        rows.append(
            (
                f"{report['events']:,}-event backlog drains, RSS growth <= "
                f"{BACKLOG_GROWTH_LIMIT_MIB:g} MiB",
                f"{rex['left']} left, growth {growth:g} MiB",
                rex["left"] == 0 and growth <= BACKLOG_GROWTH_LIMIT_MIB,
            )
        )
        return rows
    fastapi = ceilings.get("bare_fastapi_req_per_s")
    if report["backend"] == "sqlite" and report["rate"] is None and report["fanout"] == 1:
        goal = 0.5 * fastapi if fastapi else None
        rows.append(
            (
                "SQLite captures/s >= 0.5 x bare FastAPI, deliveries keeping up",
                f"{rex['captures_per_s']:g}/s vs {goal or 0:g}; backlog at end "
                f"{rex['backlog_at_end_of_load']}",
                None if goal is None else rex["captures_per_s"] >= goal and keeping_up(rex),
            )
        )
    if report["rate"] is not None:
        latency = rex["latency_ms"]
        limit = 10 if report["rate"] <= 50 else 50
        rows.append(
            (
                f"p99 capture->delivery <= {limit} ms at {report['rate']:g}/s",
                f"p50 {latency['p50']} ms, p99 {latency['p99']} ms at {rex['captures_per_s']:g}/s",
                None
                if latency["p99"] is None
                else latency["p99"] <= limit and rex["captures_per_s"] >= 0.98 * report["rate"],
            )
        )
    if report["backend"] == "postgres" and report["fanout"] == 1:
        rows.append(
            (
                f"PostgreSQL, serve --workers {report.get('api_processes', 1)} + "
                f"{report['workers']} workers: >= 3,000 captures/s delivered end to end",
                f"{rex['deliveries_per_s']:g} deliveries/s; backlog at end "
                f"{rex['backlog_at_end_of_load']}",
                rex["deliveries_per_s"] >= 3000 and keeping_up(rex),
            )
        )
    if report["fanout"] >= 10:
        rows.append(
            (
                f"fan-out to {report['fanout']} endpoints: >= 5,000 deliveries/s",
                f"{rex['deliveries_per_s']:g} deliveries/s",
                rex["deliveries_per_s"] >= 5000,
            )
        )
    peak = rex["peak_rss_mib"]
    if peak:
        short = "" if report["duration"] >= 60 else f" (a {report['duration']:g} s run, not 60 s)"
        name, most = max(peak.items(), key=lambda item: item[1])
        rows.append(
            (
                f"every process RSS < {MEMORY_LIMIT_MIB:g} MiB through a 1-minute full load{short}",
                f"peak {most:g} MiB ({name})",
                most < MEMORY_LIMIT_MIB,
            )
        )
    return rows


def print_report(report: dict[str, Any]) -> None:
    rex, ceilings = report["rex"], report.get("ceilings", {})
    if report["kind"] == "backlog":
        print(
            f"\nRex backlog drain: {report['backend']}, {report['events']:,} events, "
            f"{report['workers'] or 'embedded'} worker(s), {report['cores']} cores"
        )
        rows: list[tuple[str, Any, str]] = [
            ("seeded in s", rex["seeded_seconds"], "through rex.outbox.events"),
            ("delivered", rex["delivered"], f"{rex['left']} left"),
            ("drain s", rex["drain_seconds"], ""),
            ("deliveries/s", rex["deliveries_per_s"], ""),
        ]
        rows += [(f"peak RSS {n} MiB", v, "") for n, v in rex["peak_rss_mib"].items()]
        rows += [(f"RSS growth {n} MiB", v, "") for n, v in rex["rss_growth_mib"].items()]
    else:
        mode = f"rate {report['rate']:g}/s" if report["rate"] else "max (closed loop)"
        workers = f", {report['workers']} workers" if report["workers"] else ""
        workers += f", serve --worker {report.get('serve_worker')}"
        if report.get("api_processes", 1) > 1:
            workers += f" --workers {report['api_processes']}"
        print(
            f"\nRex benchmark: {report['backend']}{workers}, {report['duration']:g} s, {mode}, "
            f"{report['connections']} connections, fan-out {report['fanout']}, "
            f"{report['cores']} cores"
        )
        database = ceilings.get("sqlite3_two_row_commits_per_s") or ceilings.get(
            "asyncpg_two_statement_txn_per_s"
        )
        rows = [
            (
                "captures accepted/s",
                rex["captures_per_s"],
                _ratio(rex["captures_per_s"], ceilings.get("bare_fastapi_req_per_s"))
                + " bare FastAPI",
            ),
            ("", "", _ratio(rex["captures_per_s"], database) + " raw database transactions"),
            (
                "deliveries/s (during load)",
                rex["deliveries_per_s"],
                _ratio(rex["deliveries_per_s"], ceilings.get("raw_aiohttp_posts_per_s"))
                + " raw aiohttp posts",
            ),
            ("backlog at end of load", rex["backlog_at_end_of_load"], ""),
            (
                "backlog after drain",
                rex["backlog_after_drain"],
                f"drained in {rex['drain_seconds']} s",
            ),
            ("duplicates", rex["duplicates"], ""),
            ("capture->delivery p50 ms", rex["latency_ms"]["p50"], ""),
            ("capture->delivery p95 ms", rex["latency_ms"]["p95"], ""),
            ("capture->delivery p99 ms", rex["latency_ms"]["p99"], ""),
            ("errors", rex["errors"], json.dumps(rex["statuses"])),
        ]
        rows += [(f"peak RSS {n} MiB", v, "") for n, v in rex["peak_rss_mib"].items()]
        rows += [(name, value, "ceiling, same run") for name, value in ceilings.items()]
    for name, value, note in rows:
        print(f"  {name:<32} {value!s:>10}  {note.strip()}")
    checks = targets(report)
    if checks:
        print("  targets:")
        for goal, measured, met in checks:
            verdict = "n/a" if met is None else ("met" if met else "MISSED")
            print(f"    [{verdict:>6}] {goal}: {measured}")
    report["targets"] = [
        {"target": goal, "measured": measured, "met": met} for goal, measured, met in checks
    ]


def write_outputs(report: dict[str, Any], out: Path, label: str | None = None) -> Path:
    """``<out>/<label>-<time>.json`` (figures, targets) and a PNG chart beside it."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = out / f"{label or report['backend']}-{stamp}.json"
    series = report.pop("series")
    path.write_text(json.dumps(report, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  (matplotlib not installed: no chart; pip install -e '.[bench]')")
        return path
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    if report["kind"] == "backlog":
        times = [t for t, _ in series["progress"]]
        axes[0].plot(times, [c for _, c in series["progress"]])
        axes[0].set_xlabel("seconds since the worker started")
        axes[0].set_ylabel("deliveries received")
        axes[1].axis("off")
    else:
        latencies = series["latencies_ms"]
        if latencies:
            axes[0].hist(latencies, bins=60)
            axes[0].set_xlabel("capture -> delivery latency (ms)")
            axes[0].set_ylabel("captures")
            axes[0].set_title(f"p50 {statistics.median(latencies):.1f} ms")
        start = series["start"]
        seconds = [int(t - start) for t in series["completions"]]
        if seconds:
            counts = [0] * (max(seconds) + 1)
            for second in seconds:
                counts[second] += 1
            axes[1].plot(range(len(counts)), counts, label="captures/s")
        per_second = series["deliveries_per_second"]
        if per_second:
            first = int(start)
            xs = sorted(per_second)
            axes[1].plot([x - first for x in xs], [per_second[x] for x in xs], label="deliveries/s")
        axes[1].set_xlabel("seconds since start")
        axes[1].legend()
    for name, values in series["rss_mib"].items():
        axes[2].plot([i * 0.5 for i in range(len(values))], values, label=name)
    axes[2].set_xlabel("seconds")
    axes[2].set_ylabel("RSS (MiB)")
    if series["rss_mib"]:
        axes[2].legend()
    figure.tight_layout()
    figure.savefig(path.with_suffix(".png"), dpi=100)
    plt.close(figure)
    return path

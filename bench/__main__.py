"""Benchmark harness: Rex as a user runs it, a load generator, and the machine's ceilings.

    python -m bench run --backend sqlite --duration 20 --max
    python -m bench run --backend sqlite --duration 20 --rate 1000
    python -m bench run --backend postgres --workers 2 --duration 20 --max
    python -m bench run --backend postgres --workers 2 --api-workers 2 --duration 20 --max
    python -m bench run --backend sqlite --serve-worker process --duration 20 --max
    python -m bench run --backend sqlite --fanout 10 --duration 20 --max
    python -m bench backlog --backend sqlite --events 100000
    python -m bench all            # every figure of the docs/performance.md table
    python -m bench run --backend sqlite --duration 3 --rate 50 --skip-ceilings   # smoke
    python -m bench console --backend sqlite --contacts 100000 --deliveries 1000000

Everything runs on 127.0.0.1; every loop is bounded by a duration and a request count.
Prints a table (each Rex figure as a ratio to its ceiling, measured in the same run, and
each target of the performance issue as met or missed), writes JSON and a PNG chart to
--out (default bench/results/).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from bench.backlog import run_backlog
from bench.report import print_report, write_outputs
from bench.run import run_benchmark

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES = os.environ.get(
    "REX_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1/postgres"
)


def _run(args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    options = {
        "backend": args.backend,
        "duration": args.duration,
        "rate": None if args.max else args.rate,
        "connections": args.connections,
        "workers": args.workers,
        "fanout": args.fanout,
        "endpoint_concurrency": args.endpoint_concurrency,
        "drain_timeout": args.drain_timeout,
        "skip_ceilings": args.skip_ceilings,
        "postgres_url": args.postgres_url,
        "serve_worker": args.serve_worker,
        "api_processes": args.api_workers,
    }
    options.update(overrides)
    return asyncio.run(run_benchmark(**options))


def _backlog(args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    options = {
        "backend": args.backend,
        "events": args.events,
        "workers": args.workers,
        "endpoint_concurrency": args.endpoint_concurrency,
        "drain_timeout": args.drain_timeout,
        "postgres_url": args.postgres_url,
    }
    options.update(overrides)
    return asyncio.run(run_backlog(**options))


def _show(report: dict[str, Any], out: Path, label: str | None = None) -> None:
    print_report(report)
    path = write_outputs(report, out, label)
    print(f"\n  results: {path}")


def run_all(args: argparse.Namespace) -> None:
    """docs/performance.md's table: every target of the performance issue, in turn."""
    cores = os.cpu_count() or 2
    plan: list[tuple[str, Any]] = [
        ("sqlite-max", lambda: _run(args, backend="sqlite", duration=60.0, rate=None)),
        *(
            (
                f"{backend}-rate{rate:g}",
                lambda backend=backend, rate=rate: _run(
                    args, backend=backend, duration=20.0, rate=rate, skip_ceilings=True,
                    workers=cores, api_processes=cores if backend == "postgres" else 1,
                ),
            )
            for backend in ("sqlite", "postgres")
            for rate in (50.0, args.rate)
        ),
        (
            "postgres-max",
            lambda: _run(
                args, backend="postgres", duration=20.0, rate=None, workers=cores,
                api_processes=cores,
            ),
        ),
        (
            "sqlite-fanout10",
            lambda: _run(
                args, backend="sqlite", duration=20.0, rate=None, fanout=10, skip_ceilings=True
            ),
        ),
        (
            "postgres-fanout10",
            lambda: _run(
                args, backend="postgres", duration=20.0, rate=None, fanout=10, workers=cores,
                api_processes=cores, skip_ceilings=True,
            ),
        ),
        ("sqlite-backlog", lambda: _backlog(args, backend="sqlite")),
        ("postgres-backlog", lambda: _backlog(args, backend="postgres", workers=cores)),
    ]  # fmt: skip
    for label, measure in plan:
        print(f"\n=== {label} ===", flush=True)
        _show(measure(), args.out, label)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="one load benchmark")
    backlog = sub.add_parser("backlog", help="queue N events, then time the drain")
    every = sub.add_parser("all", help="every figure of the docs/performance.md table")
    console = sub.add_parser("console", help="seed N contacts and M deliveries; time pages")
    console.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    console.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    console.add_argument("--contacts", type=int, default=100_000)
    console.add_argument("--deliveries", type=int, default=1_000_000)
    console.add_argument("--requests", type=int, default=50, help="requests per page")
    console.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    for command in (run, backlog, every):
        command.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
        command.add_argument("--workers", type=int, default=2, help="rex workers (postgres)")
        command.add_argument("--drain-timeout", type=float, default=300.0)
        command.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
        command.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    for command in (run, backlog, every):
        command.add_argument(
            "--endpoint-concurrency",
            type=int,
            default=None,
            help="max_concurrency of each endpoint (default: Rex's default)",
        )
    for command in (run, every):
        command.add_argument("--duration", type=float, default=20.0)
        command.add_argument("--connections", type=int, default=64)
        command.add_argument("--fanout", type=int, default=1, help="endpoints subscribed")
        command.add_argument("--skip-ceilings", action="store_true")
        command.add_argument(
            "--serve-worker",
            choices=["process", "inline", "none"],
            default=None,
            help="rex serve --worker (default: inline on SQLite; none on PostgreSQL)",
        )
        command.add_argument(
            "--api-workers", type=int, default=1, help="rex serve --workers N (PostgreSQL)"
        )
    group = run.add_mutually_exclusive_group()
    group.add_argument("--rate", type=float, default=None, help="open-loop captures per second")
    group.add_argument("--max", action="store_true", help="closed loop, as fast as it goes")
    every.add_argument("--rate", type=float, default=1000.0, help="rate of the latency run")
    every.set_defaults(max=False)
    for command in (backlog, every):
        command.add_argument("--events", type=int, default=100_000, help="backlog size")
    args = parser.parse_args()
    if args.command == "run":
        if args.rate is None:
            args.max = True
        _show(_run(args), args.out)
    elif args.command == "console":
        from bench.console import print_console_report, run_console

        report = run_console(
            backend=args.backend,
            contacts=args.contacts,
            deliveries=args.deliveries,
            requests=args.requests,
            postgres_url=args.postgres_url,
        )
        print_console_report(report)
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"console-{args.backend}.json"
        path.write_text(json.dumps(report, indent=2, default=str))
        print(f"\n  results: {path}")
    elif args.command == "backlog":
        _show(_backlog(args), args.out, f"{args.backend}-backlog")
    else:
        run_all(args)


if __name__ == "__main__":
    main()

"""Benchmark harness: Rex as a user runs it, a load generator, and the machine's ceilings.

    python -m bench run --backend sqlite --duration 20 --max
    python -m bench run --backend postgres --workers 2 --duration 20 --rate 1000
    python -m bench run --backend sqlite --duration 3 --rate 50 --skip-ceilings   # smoke

Everything runs on 127.0.0.1; every loop is bounded by --duration and a request count.
Prints a table (each Rex figure as a ratio to its ceiling), writes JSON and a PNG chart to
--out (default bench/results/).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
REX = str(Path(sys.executable).with_name("rex"))
MAX_REQUESTS = 2_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class LoadResult:
    sent: dict[str, float] = field(default_factory=dict)  # email -> send time (accepted only)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    started: float = 0.0
    ended: float = 0.0
    timeline: list[float] = field(default_factory=list)  # completion times of accepted requests

    @property
    def accepted(self) -> int:
        return len(self.sent)

    @property
    def rate(self) -> float:
        return self.accepted / max(self.ended - self.started, 1e-9)


async def generate_load(
    url: str, *, duration: float, rate: float | None, connections: int
) -> LoadResult:
    """POST leads to ``url``: open loop at ``rate``/s, or closed loop with ``connections``."""
    result = LoadResult()
    run_id = uuid.uuid4().hex[:8]
    counter = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            nonlocal counter
            counter += 1
            email = f"b{run_id}-{counter}@example.com"
            body = {
                "email": email,
                "first_name": "Bench",
                "source": "bench",
                "metadata": {"utm_source": "bench", "landing_page": "/pricing"},
            }
            sent_at = time.time()
            try:
                async with session.post(url, json=body) as response:
                    await response.read()
                    result.statuses[response.status] = result.statuses.get(response.status, 0) + 1
                    if 200 <= response.status < 300:
                        result.sent[email] = sent_at
                        result.timeline.append(time.time())
                    else:
                        result.errors += 1
            except (aiohttp.ClientError, OSError):
                result.errors += 1

        result.started = time.time()
        deadline = time.monotonic() + duration
        if rate:
            interval = 1 / rate
            tasks: set[asyncio.Task[None]] = set()
            next_at = time.monotonic()
            while time.monotonic() < deadline and counter < MAX_REQUESTS:
                if len(tasks) < connections * 4:
                    task = asyncio.create_task(one())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if tasks:
                await asyncio.wait(tasks, timeout=30)
        else:

            async def loop() -> None:
                while time.monotonic() < deadline and counter < MAX_REQUESTS:
                    await one()

            await asyncio.gather(*(loop() for _ in range(connections)))
        result.ended = time.time()
    return result


async def raw_aiohttp_posts(url: str, *, duration: float, connections: int) -> float:
    """Ceiling for delivery: signed-size JSON posts/s from aiohttp to the same receiver."""
    body = json.dumps({"id": "evt_x", "event": "contact.created", "data": {"email": None}})
    done = 0
    deadline = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < deadline and done < MAX_REQUESTS:
                async with session.post(url, data=body) as response:
                    await response.read()
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(connections)))
        return done / (time.monotonic() - started)


async def receiver_stats(base: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/stats") as response:
        return await response.json()  # type: ignore[no-any-return]


class Processes:
    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def create_postgres_database(admin_url: str) -> tuple[str, str]:
    import sqlalchemy as sa

    name = f"rex_bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", admin_url, "-qc", f'CREATE DATABASE "{name}"'], check=True)
    return name, sa.make_url(admin_url).set(database=name).render_as_string(False)


async def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="rex-bench-"))
    procs = Processes()
    env = {
        **os.environ,
        "REX_ALLOW_PRIVATE_DESTINATIONS": "1",
        "REX_CAPTURE_RATE_LIMIT": "off",
        "REX_CAPTURE_WORKSPACE_RATE_LIMIT": "off",
        "REX_LOG_LEVEL": "warning",
    }
    pg_name = None
    if args.backend == "sqlite":
        env["REX_DATABASE_URL"] = f"sqlite:///{work}/bench.db"
    else:
        pg_name, env["REX_DATABASE_URL"] = create_postgres_database(args.postgres_url)
    report: dict[str, Any] = {
        "backend": args.backend,
        "duration": args.duration,
        "rate": args.rate,
        "connections": args.connections,
        "fanout": args.fanout,
        "machine": os.uname().nodename,
        "cores": os.cpu_count(),
    }
    try:
        receiver_port = free_port()
        receiver = procs.start(
            [sys.executable, "-m", "bench.receiver", str(receiver_port)], env, work / "receiver.log"
        )
        wait_for_port(receiver_port, receiver)
        receiver_url = f"http://127.0.0.1:{receiver_port}"

        key = (
            subprocess.run(
                [REX, "keys", "create", "--name", "bench"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        rex_port = free_port()
        serve = [REX, "serve", "--port", str(rex_port)]
        rex_procs = {}
        if args.backend == "postgres":
            serve.append("--no-worker")
        rex_procs["serve"] = procs.start(serve, env, work / "serve.log")
        wait_for_port(rex_port, rex_procs["serve"])
        for index in range(args.workers if args.backend == "postgres" else 0):
            rex_procs[f"worker{index + 1}"] = procs.start(
                [REX, "worker"], env, work / f"worker{index}.log"
            )
        rex_url = f"http://127.0.0.1:{rex_port}"
        async with aiohttp.ClientSession(headers={"X-Api-Key": key}) as session:
            for _ in range(args.fanout):
                body = {"url": f"{receiver_url}/hook", "events": ["contact.created"]}
                async with session.post(f"{rex_url}/webhooks", json=body) as response:
                    assert response.status == 201, await response.text()

        load = await generate_load(
            f"{rex_url}/capture",
            duration=args.duration,
            rate=args.rate,
            connections=args.connections,
        )
        at_end = await receiver_stats(receiver_url)
        expected = load.accepted * args.fanout
        drain_started = time.monotonic()
        stats = at_end
        while stats["count"] < expected and time.monotonic() - drain_started < args.drain_timeout:
            await asyncio.sleep(0.25)
            stats = await receiver_stats(receiver_url)
        latencies = [
            (stats["arrivals"][email] - sent) * 1000
            for email, sent in load.sent.items()
            if email in stats["arrivals"]
        ]
        arrivals = sorted(stats["arrivals"].values())
        in_window = sum(1 for t in arrivals if t <= load.ended) * args.fanout
        report["rex"] = {
            "captures_accepted": load.accepted,
            "captures_per_s": round(load.rate, 1),
            "deliveries_per_s": round(in_window / max(load.ended - load.started, 1e-9), 1),
            "deliveries_total": stats["count"],
            "backlog_at_end_of_load": expected - at_end["count"],
            "backlog_after_drain": expected - stats["count"],
            "drain_seconds": round(time.monotonic() - drain_started, 2),
            "latency_ms": {
                name: round(value, 1) if value is not None else None
                for name, value in (
                    ("p50", percentile(latencies, 50)),
                    ("p95", percentile(latencies, 95)),
                    ("p99", percentile(latencies, 99)),
                )
            },
            "errors": load.errors,
            "statuses": load.statuses,
            "peak_rss_mib": {name: peak_rss_mib(p.pid) for name, p in rex_procs.items()},
        }
        report["series"] = {
            "latencies_ms": latencies,
            "completions": load.timeline,
            "arrivals": arrivals,
            "start": load.started,
        }
        if not args.skip_ceilings:
            report["ceilings"] = await measure_ceilings(args, env, work, procs, receiver_url)
    finally:
        procs.stop_all()
        if pg_name:
            subprocess.run(
                [
                    "psql",
                    args.postgres_url,
                    "-qc",
                    f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)',
                ],
                check=False,
            )
    return report


async def measure_ceilings(
    args: argparse.Namespace, env: dict[str, str], work: Path, procs: Processes, receiver: str
) -> dict[str, float]:
    seconds = min(args.duration, 10.0)
    ceilings: dict[str, float] = {}
    for kind in ("starlette", "fastapi"):
        port = free_port()
        process = procs.start(
            [sys.executable, "-m", "bench.ceilings", kind, str(port)], env, work / f"{kind}.log"
        )
        wait_for_port(port, process)
        load = await generate_load(
            f"http://127.0.0.1:{port}/capture",
            duration=seconds,
            rate=None,
            connections=args.connections,
        )
        ceilings[f"bare_{kind}_req_per_s"] = round(load.rate, 1)
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    ceilings["raw_aiohttp_posts_per_s"] = round(
        await raw_aiohttp_posts(f"{receiver}/hook", duration=seconds, connections=args.connections),
        1,
    )
    return ceilings


def ratio(value: float | None, ceiling: float | None) -> str:
    if not value or not ceiling:
        return ""
    return f"{value / ceiling:.2f} x ceiling"


def print_report(report: dict[str, Any]) -> None:
    rex, ceilings = report["rex"], report.get("ceilings", {})
    mode = f"rate {report['rate']}/s" if report["rate"] else "max"
    print(
        f"\nRex benchmark: {report['backend']}, {report['duration']} s, {mode}, "
        f"{report['connections']} connections, fan-out {report['fanout']}, "
        f"{report['cores']} cores"
    )
    rows = [
        (
            "captures accepted/s",
            rex["captures_per_s"],
            ratio(rex["captures_per_s"], ceilings.get("bare_fastapi_req_per_s")),
        ),
        (
            "deliveries/s (during load)",
            rex["deliveries_per_s"],
            ratio(rex["deliveries_per_s"], ceilings.get("raw_aiohttp_posts_per_s")),
        ),
        ("backlog at end of load", rex["backlog_at_end_of_load"], ""),
        ("backlog after drain", rex["backlog_after_drain"], f"drained in {rex['drain_seconds']} s"),
        ("capture->delivery p50 ms", rex["latency_ms"]["p50"], ""),
        ("capture->delivery p95 ms", rex["latency_ms"]["p95"], ""),
        ("capture->delivery p99 ms", rex["latency_ms"]["p99"], ""),
        ("errors", rex["errors"], json.dumps(rex["statuses"])),
    ] + [(f"peak RSS {name} MiB", round(v or 0, 1), "") for name, v in rex["peak_rss_mib"].items()]
    rows += [(name, value, "ceiling") for name, value in ceilings.items()]
    for name, value, note in rows:
        print(f"  {name:<30} {value!s:>12}  {note}")


def write_outputs(report: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = out / f"{report['backend']}-{stamp}.json"
    series = report.pop("series")
    path.write_text(json.dumps(report, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  (matplotlib not installed: no chart; pip install -e '.[bench]')")
        return path
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    if series["latencies_ms"]:
        left.hist(series["latencies_ms"], bins=60)
        left.set_xlabel("capture -> delivery latency (ms)")
        left.set_ylabel("captures")
        left.set_title(f"p50 {statistics.median(series['latencies_ms']):.1f} ms")
    start = series["start"]
    for label, times in (("captures", series["completions"]), ("deliveries", series["arrivals"])):
        if times:
            seconds = [int(t - start) for t in times]
            counts = [seconds.count(s) for s in range(max(seconds) + 1)]
            right.plot(range(len(counts)), counts, label=f"{label}/s")
    right.set_xlabel("seconds since start")
    right.legend()
    figure.tight_layout()
    figure.savefig(path.with_suffix(".png"), dpi=100)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one benchmark")
    run.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    run.add_argument("--duration", type=float, default=20.0)
    group = run.add_mutually_exclusive_group()
    group.add_argument("--rate", type=float, help="open-loop captures per second")
    group.add_argument("--max", action="store_true", help="closed loop, as fast as possible")
    run.add_argument("--connections", type=int, default=64)
    run.add_argument("--workers", type=int, default=2, help="rex worker processes (postgres)")
    run.add_argument("--fanout", type=int, default=1, help="endpoints subscribed")
    run.add_argument("--drain-timeout", type=float, default=60.0)
    run.add_argument("--skip-ceilings", action="store_true")
    run.add_argument(
        "--postgres-url",
        default=os.environ.get("REX_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1/postgres"),
    )
    run.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    if args.max:
        args.rate = None
    report = asyncio.run(run_benchmark(args))
    path = write_outputs(report, args.out)
    print_report(report)
    print(f"\n  results: {path}")


if __name__ == "__main__":
    main()

"""One load benchmark: Rex as a user runs it, a bounded load on /capture, deliveries
timed at the receiver, then the ceilings under the same load generator."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp

from bench.ceilings import measure_ceilings
from bench.load import generate_load
from bench.procs import Setup, rss_mib


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def receiver_stats(base: str, what: str = "stats") -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/{what}") as response:
        return await response.json(content_type=None)  # type: ignore[no-any-return]


async def sample_rss(setup: Setup, samples: dict[str, list[float]], stop: asyncio.Event) -> None:
    """RSS of every Rex process, twice a second, until ``stop``."""
    while not stop.is_set():
        for name, pid in setup.pids().items():
            value = rss_mib(pid)
            if value is not None:
                samples.setdefault(name, []).append(round(value, 1))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def run_benchmark(
    *,
    backend: str,
    duration: float,
    rate: float | None,
    connections: int,
    workers: int,
    fanout: int,
    endpoint_concurrency: int | None,
    drain_timeout: float,
    skip_ceilings: bool,
    postgres_url: str,
    serve_worker: str | None = None,
    api_processes: int = 1,
) -> dict[str, Any]:
    """``serve_worker``: `rex serve --worker` (default: ``inline`` on SQLite, ``none`` on
    PostgreSQL, where ``workers`` `rex worker` processes deliver)."""
    on_postgres = backend == "postgres"
    serve_worker = serve_worker or ("none" if on_postgres else "inline")
    setup = Setup(backend, postgres_url)
    report = setup.describe(
        "load",
        duration=duration,
        rate=rate,
        connections=connections,
        workers=workers if backend == "postgres" else 0,
        serve_worker=serve_worker,
        api_processes=api_processes,
        fanout=fanout,
        endpoint_concurrency=endpoint_concurrency,
    )
    try:
        setup.start_receiver()
        setup.create_key()
        setup.start_rex(
            workers=workers if on_postgres else 0,
            worker_mode=serve_worker,
            api_processes=api_processes,
        )
        await setup.subscribe(fanout, max_concurrency=endpoint_concurrency)
        # Not timed: until Rex has delivered once (workers up, connections open).
        baseline = await setup.warm_up(workers if on_postgres else 0, fanout)
        rss: dict[str, list[float]] = {}
        stop_sampling = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(setup, rss, stop_sampling))
        load = await generate_load(
            f"{setup.rex_url}/capture", duration=duration, rate=rate, connections=connections
        )
        at_end = await receiver_stats(setup.receiver_url, "count")
        at_end["count"] -= baseline
        expected = load.accepted * fanout
        drain_started = time.monotonic()
        count = at_end["count"]
        while count < expected and time.monotonic() - drain_started < drain_timeout:
            await asyncio.sleep(0.25)
            count = (await receiver_stats(setup.receiver_url, "count"))["count"] - baseline
        drained_in = time.monotonic() - drain_started
        stop_sampling.set()
        await sampler
        stats = await receiver_stats(setup.receiver_url)
        stats["count"] -= baseline
        latencies = [
            (stats["arrivals"][email] - sent) * 1000
            for email, sent in load.sent.items()
            if email in stats["arrivals"]
        ]
        per_second = {int(second): n for second, n in stats["per_second"].items()}
        in_window = sum(
            n for second, n in per_second.items() if load.started <= second < int(load.ended)
        )
        window = max(int(load.ended) - load.started, 1e-9)
        report["rex"] = {
            "captures_accepted": load.accepted,
            "captures_per_s": round(load.rate, 1),
            "deliveries_per_s": round(in_window / window, 1),
            "deliveries_total": stats["count"],
            "backlog_at_end_of_load": expected - at_end["count"],
            "backlog_after_drain": max(0, expected - stats["count"]),
            "duplicates": max(0, stats["count"] - expected),
            "drain_seconds": round(drained_in, 2),
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
            "peak_rss_mib": setup.peak_rss(),
        }
        report["series"] = {
            "latencies_ms": latencies,
            "completions": load.timeline,
            "deliveries_per_second": per_second,
            "rss_mib": rss,
            "start": load.started,
        }
        if not skip_ceilings:
            report["ceilings"] = await measure_ceilings(
                setup, seconds=min(duration, 10.0), connections=connections
            )
    finally:
        setup.close()
    return report

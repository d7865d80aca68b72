"""A backlog drain: N events queued while no worker runs, then Rex's worker(s) started;
reports how fast the backlog drains and whether memory grows while it does."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.procs import Setup
from bench.run import receiver_stats, sample_rss

SEED_BATCH = 1000


async def seed_backlog(database_url: str, endpoint_count: int, events: int) -> float:
    """Queue ``events`` contact.created events through Rex's own outbox (the code path every
    capture takes), ``SEED_BATCH`` per transaction; returns the seconds it took."""
    from rex.db.engine import Database
    from rex.ids import new_id, utcnow
    from rex.outbox.events import record_event
    from rex.workspaces import service as workspaces

    db = Database(database_url)
    started = time.monotonic()
    try:
        async with db.read() as conn:
            workspace = await workspaces.get_by_slug(conn, workspaces.DEFAULT_SLUG)
        assert workspace is not None
        done = 0
        while done < events:
            batch = min(SEED_BATCH, events - done)
            async with db.transaction() as conn:
                for index in range(done, done + batch):
                    contact_id = new_id("cont")
                    data = {
                        "id": contact_id,
                        "email": f"backlog-{index}@example.com",
                        "first_name": "Backlog",
                        "stage": "lead",
                        "source": "bench",
                    }
                    await record_event(
                        conn,
                        workspace_id=workspace.id,
                        event_type="contact.created",
                        data=data,
                        object_id=contact_id,
                        now=utcnow(),
                    )
            done += batch
    finally:
        await db.close()
    return time.monotonic() - started


async def run_backlog(
    *,
    backend: str,
    events: int,
    workers: int,
    endpoint_concurrency: int | None,
    drain_timeout: float,
    postgres_url: str,
) -> dict[str, Any]:
    setup = Setup(backend, postgres_url)
    report = setup.describe(
        "backlog",
        events=events,
        workers=workers if backend == "postgres" else 0,
        endpoint_concurrency=endpoint_concurrency,
    )
    try:
        setup.start_receiver()
        setup.create_key()
        # An API process without a worker, for the subscription; nothing delivers yet.
        setup.start_rex(workers=0, worker_mode="none")
        await setup.subscribe(1, max_concurrency=endpoint_concurrency)
        setup.procs.stop(setup.rex.pop("serve"))
        seeded_in = await seed_backlog(setup.env["REX_DATABASE_URL"], 1, events)
        on_postgres = backend == "postgres"
        if on_postgres:
            setup.start_rex(workers=workers, worker_mode="none")
            setup.rex.pop("serve")  # the API process does not deliver: watch the workers
        else:
            setup.start_rex(workers=0, worker_mode="inline")
        rss: dict[str, list[float]] = {}
        stop_sampling = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(setup, rss, stop_sampling))
        started = time.monotonic()
        progress: list[tuple[float, int]] = []
        count = 0
        while count < events and time.monotonic() - started < drain_timeout:
            await asyncio.sleep(0.5)
            count = (await receiver_stats(setup.receiver_url, "count"))["count"]
            progress.append((round(time.monotonic() - started, 2), count))
        drained_in = time.monotonic() - started
        stop_sampling.set()
        await sampler
        rss_growth = {}
        for name, values in rss.items():
            # Growth from when the drain is under way (10% of the samples) to the end.
            early = values[max(0, len(values) // 10 - 1)] if values else 0.0
            rss_growth[name] = round((values[-1] if values else 0.0) - early, 1)
        report["rex"] = {
            "seeded_seconds": round(seeded_in, 1),
            "delivered": count,
            "drain_seconds": round(drained_in, 1),
            "deliveries_per_s": round(count / max(drained_in, 1e-9), 1),
            "left": max(0, events - count),
            "peak_rss_mib": setup.peak_rss(),
            "rss_growth_mib": rss_growth,
        }
        report["series"] = {"progress": progress, "rss_mib": rss}
    finally:
        setup.close()
    return report

"""Retention: old events whose deliveries are all finished are pruned, in small batches."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from rex.db import outbox
from rex.db.engine import Database
from rex.submissions import service as submissions

BATCH = 500
"""Events per transaction: short transactions keep the API's writers (and, on SQLite, the
single write lock) waiting as little as possible."""


async def prune_expired(
    db: Database, *, retention_days: int, now: datetime, batch: int = BATCH
) -> int:
    """Delete events created more than ``retention_days`` before ``now`` that have no pending
    delivery (delivered or failed everywhere, or never subscribed to), with their deliveries
    and attempts. ``retention_days <= 0`` keeps everything. Returns how many events went."""
    if retention_days <= 0:
        return 0
    before = now - timedelta(days=retention_days)
    total = 0
    while True:
        async with db.transaction() as conn:
            removed = await outbox.prune_finished_events(conn, before=before, batch=batch)
        total += removed
        if removed < batch:
            break
        await asyncio.sleep(0.05)  # let other writers in between batches
    # Submissions are kept as long as events.
    while True:
        async with db.transaction() as conn:
            removed = await submissions.prune(conn, before=before, batch=batch)
        if removed < batch:
            return total
        await asyncio.sleep(0.05)  # let other writers in between batches

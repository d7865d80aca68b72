"""Retention: old events whose deliveries are all finished (or held only by disabled
endpoints) are pruned, in small batches; so are expired idempotency records."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import sqlalchemy as sa
import structlog

from rex.db.engine import Database
from rex.db.idempotency import TTL as IDEMPOTENCY_TTL
from rex.db.schema import deliveries, endpoints, idempotency_keys
from rex.outbox import operator
from rex.outbox.records import DeliveryStatus

log = structlog.get_logger("rex.retention")

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
    await purge_idempotency_records(db, now=now)
    before = now - timedelta(days=retention_days)
    total = 0
    async with db.read() as conn:
        held = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(deliveries.join(endpoints, endpoints.c.id == deliveries.c.endpoint_id))
                .where(
                    deliveries.c.status == DeliveryStatus.PENDING.value,
                    endpoints.c.enabled.is_(False),
                    deliveries.c.created_at < before,
                )
            )
        ).scalar_one()
    if held:
        log.info("retention_disabled_endpoint_deliveries", deliveries=held)
    while True:
        async with db.transaction() as conn:
            removed = await operator.prune_finished_events(conn, before=before, batch=batch)
        total += removed
        if removed < batch:
            break
        await asyncio.sleep(0.05)  # let other writers in between batches
    # Submissions (the capture inbox) are kept as long as events.
    while True:
        async with db.transaction() as conn:
            removed = await operator.prune_submissions(conn, before=before, batch=batch)
        if removed < batch:
            return total
        await asyncio.sleep(0.05)


async def purge_idempotency_records(db: Database, *, now: datetime) -> int:
    """Delete idempotency records older than their 24 hours, in every workspace (a
    workspace's own POSTs only purge its own). Returns how many went."""
    async with db.transaction() as conn:
        result = await conn.execute(
            sa.delete(idempotency_keys).where(idempotency_keys.c.created_at < now - IDEMPOTENCY_TTL)
        )
    count: int = result.rowcount
    if count:
        log.info("retention_idempotency_purged", records=count)
    return count

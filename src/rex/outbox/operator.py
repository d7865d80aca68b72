"""Operator and maintenance writes to deliveries: an operator's retry, recovery after an
outage, deleting an endpoint's deliveries with it, and retention's pruning.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.schema import attempts, deliveries, endpoints, events, submissions
from rex.outbox import ordering
from rex.outbox.claim_sql import lease_free
from rex.outbox.events import notify_queued
from rex.outbox.records import DeliveryStatus


async def requeue_delivery(
    conn: AsyncConnection, *, workspace_id: str, delivery_id: str, now: datetime
) -> bool:
    """Make a delivery due now, whatever its status (an operator's retry or resend); it
    keeps its event id and its attempt count. False when an attempt is in flight.

    On an ordered endpoint a finished delivery goes to the back of its group's queue
    instead (``rex.outbox.ordering``), and one still waiting its turn keeps it.

    Concurrency: the lease condition is re-checked by PostgreSQL if a worker claims the row
    at the same moment, so an attempt in flight is never doubled by a retry.
    """
    if await _ordered_endpoint_of(conn, workspace_id, delivery_id):
        return await _requeue_ordered_delivery(conn, workspace_id, delivery_id, now)
    result = await conn.execute(
        sa.update(deliveries)
        .where(
            deliveries.c.workspace_id == workspace_id,
            deliveries.c.id == delivery_id,
            lease_free(now),
        )
        .values(status=DeliveryStatus.PENDING.value, next_attempt_at=now, updated_at=now)
    )
    if result.rowcount:
        await notify_queued(conn)
    return result.rowcount > 0


async def _ordered_endpoint_of(
    conn: AsyncConnection, workspace_id: str, delivery_id: str
) -> str | None:
    return (
        await conn.execute(
            sa.select(endpoints.c.id)
            .join(deliveries, deliveries.c.endpoint_id == endpoints.c.id)
            .where(
                deliveries.c.workspace_id == workspace_id,
                deliveries.c.id == delivery_id,
                endpoints.c.ordering != ordering.Ordering.NONE.value,
            )
        )
    ).scalar()


async def _requeue_ordered_delivery(
    conn: AsyncConnection, workspace_id: str, delivery_id: str, now: datetime
) -> bool:
    row = (
        await conn.execute(
            sa.select(
                deliveries.c.endpoint_id,
                deliveries.c.status,
                deliveries.c.next_attempt_at,
                deliveries.c.ordering_key,
                lease_free(now).label("free"),
            ).where(deliveries.c.workspace_id == workspace_id, deliveries.c.id == delivery_id)
        )
    ).one()
    if not row.free:
        return False
    if row.status == DeliveryStatus.PENDING.value:
        if row.ordering_key is not None and row.next_attempt_at is None:
            return True  # waiting its turn: it goes when the deliveries ahead of it are done
        # Pending and due (an ordered group's head, or not ordered): due now.
        await conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id == delivery_id, lease_free(now))
            .values(next_attempt_at=now, updated_at=now)
        )
    else:
        await ordering.requeue_ordered(conn, row.endpoint_id, [delivery_id], now=now)
    await notify_queued(conn)
    return True


async def requeue_failed_since(
    conn: AsyncConnection, *, endpoint_id: str, since: datetime, now: datetime
) -> int:
    """Make every failed delivery of ``endpoint_id`` created at or after ``since`` due now
    (recovery after an outage); returns how many. Failed rows are never leased, so no
    attempt is in flight for any of them. On an ordered endpoint they join the back of
    their groups' queues, in their original order."""
    failed = sa.and_(
        deliveries.c.endpoint_id == endpoint_id,
        deliveries.c.status == DeliveryStatus.FAILED.value,
        deliveries.c.created_at >= since,
    )
    ordered = (
        await conn.execute(sa.select(endpoints.c.ordering).where(endpoints.c.id == endpoint_id))
    ).scalar() not in (None, ordering.Ordering.NONE.value)
    if ordered:
        ids = (
            (
                await conn.execute(
                    sa.select(deliveries.c.id)
                    .where(failed)
                    .order_by(
                        sa.func.coalesce(deliveries.c.sequence, 0),
                        deliveries.c.created_at,
                        deliveries.c.id,
                    )
                )
            )
            .scalars()
            .all()
        )
        requeued = await ordering.requeue_ordered(conn, endpoint_id, ids, now=now)
    else:
        result = await conn.execute(
            sa.update(deliveries)
            .where(failed)
            .values(status=DeliveryStatus.PENDING.value, next_attempt_at=now, updated_at=now)
        )
        requeued = result.rowcount
    if requeued:
        await notify_queued(conn)
    return requeued


# Held (per transaction) by whoever prunes, so that several workers do not prune at once.
_RETENTION_LOCK_ID = 0x52455852  # "REXR"


async def prune_finished_events(conn: AsyncConnection, *, before: datetime, batch: int) -> int:
    """Delete up to ``batch`` events created before ``before`` with no pending delivery,
    with their deliveries and attempts; returns how many events went (0: nothing left, or
    another process is pruning right now).

    Concurrency: on PostgreSQL one pruner at a time (a transaction-level advisory lock taken
    with ``try``, so nobody waits). A delivery an operator re-queues while it is being pruned
    survives, with its event: both deletes re-check that nothing is pending.
    """
    if conn.dialect.name == "postgresql":
        got_lock = await conn.scalar(
            sa.select(sa.func.pg_try_advisory_xact_lock(_RETENTION_LOCK_ID))
        )
        if not got_lock:
            return 0
    # A delivery pending for a disabled endpoint holds nothing: it is pruned with its event.
    live = sa.select(endpoints.c.id).where(
        endpoints.c.id == deliveries.c.endpoint_id, endpoints.c.enabled.is_(True)
    )
    pending = (
        sa.select(deliveries.c.id)
        .where(
            deliveries.c.event_id == events.c.id,
            deliveries.c.status == DeliveryStatus.PENDING.value,
            live.exists(),
        )
        .exists()
    )
    event_ids = (
        (
            await conn.execute(
                sa.select(events.c.id)
                .where(events.c.created_at < before, ~pending)
                .order_by(events.c.created_at)
                .limit(batch)
            )
        )
        .scalars()
        .all()
    )
    if not event_ids:
        return 0
    finished = sa.and_(
        deliveries.c.event_id.in_(event_ids),
        sa.or_(deliveries.c.status != DeliveryStatus.PENDING.value, ~live.exists()),
    )
    await conn.execute(
        sa.delete(attempts).where(
            attempts.c.delivery_id.in_(sa.select(deliveries.c.id).where(finished))
        )
    )
    await conn.execute(sa.delete(deliveries).where(finished))
    any_delivery = sa.select(deliveries.c.id).where(deliveries.c.event_id == events.c.id).exists()
    result = await conn.execute(sa.delete(events).where(events.c.id.in_(event_ids), ~any_delivery))
    return result.rowcount


async def delete_endpoints(conn: AsyncConnection, endpoint_ids: Sequence[str]) -> None:
    """Delete endpoints with their deliveries (and, by cascade, their attempts): an
    endpoint deleted through the API, or ``rex listen`` sessions ended or expired.

    Callers lock the endpoints first (``FOR UPDATE``) where an attempt may be recorded
    meanwhile; a report for a delivery deleted here finds nothing to move.
    """
    if not endpoint_ids:
        return
    ids = list(endpoint_ids)
    await conn.execute(sa.delete(deliveries).where(deliveries.c.endpoint_id.in_(ids)))
    await conn.execute(sa.delete(endpoints).where(endpoints.c.id.in_(ids)))


async def prune_submissions(conn: AsyncConnection, *, before: datetime, batch: int) -> int:
    """Retention of the submissions inbox (kept as long as events): delete up to ``batch``
    submissions created before ``before``; how many went."""
    ids = (
        (
            await conn.execute(
                sa.select(submissions.c.id).where(submissions.c.created_at < before).limit(batch)
            )
        )
        .scalars()
        .all()
    )
    if ids:
        await conn.execute(sa.delete(submissions).where(submissions.c.id.in_(ids)))
    return len(ids)

"""Deliveries and their attempts, as the API shows them (``DeliveryData``, ``AttemptData``:
the shapes of ``rex.outbox.records``, built from rows there)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.pagination import fetch_page
from rex.db.schema import attempts, deliveries, endpoints
from rex.errors import Conflict, NotFound
from rex.ids import utcnow
from rex.outbox import operator
from rex.outbox.records import (
    HIDDEN_ENDPOINT_KINDS,
    Attempt,
    AttemptData,
    Delivery,
    DeliveryData,
    DeliveryWithAttemptsData,
)

# Deliveries to Rex's own endpoints (a form's new-lead emails, alerts) are not shown.
_SHOWN = deliveries.c.endpoint_id.not_in(
    sa.select(endpoints.c.id).where(endpoints.c.kind.in_([k.value for k in HIDDEN_ENDPOINT_KINDS]))
)


def serialize(row: Any) -> DeliveryData:
    return Delivery.from_row(row).public()


def serialize_attempt(row: Any) -> AttemptData:
    return Attempt.from_row(row).public()


async def _row(conn: AsyncConnection, workspace_id: str, delivery_id: str) -> Any:
    row = (
        await conn.execute(
            sa.select(deliveries).where(
                deliveries.c.workspace_id == workspace_id, deliveries.c.id == delivery_id, _SHOWN
            )
        )
    ).first()
    if row is None:
        raise NotFound("delivery", delivery_id)
    return row


async def get(conn: AsyncConnection, workspace_id: str, delivery_id: str) -> DeliveryData:
    return serialize(await _row(conn, workspace_id, delivery_id))


async def get_with_attempts(
    conn: AsyncConnection, workspace_id: str, delivery_id: str
) -> DeliveryWithAttemptsData:
    """A delivery with every attempt, oldest first."""
    delivery = await get(conn, workspace_id, delivery_id)
    rows = await conn.execute(
        sa.select(attempts).where(attempts.c.delivery_id == delivery_id).order_by(attempts.c.at)
    )
    return {**delivery, "attempts": [serialize_attempt(a) for a in rows]}


async def page(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    endpoint_id: str | None = None,
    event_id: str | None = None,
    status: str | None = None,
    event_type: str | None = None,
    limit: int,
    cursor: str | None,
) -> tuple[list[DeliveryData], str | None]:
    """Deliveries of the workspace, newest first, optionally of one endpoint, event, status
    or event type."""
    query = sa.select(deliveries).where(deliveries.c.workspace_id == workspace_id, _SHOWN)
    if endpoint_id is not None:
        query = query.where(deliveries.c.endpoint_id == endpoint_id)
    if event_id is not None:
        query = query.where(deliveries.c.event_id == event_id)
    if status is not None:
        query = query.where(deliveries.c.status == status)
    if event_type is not None:
        query = query.where(deliveries.c.event_type == event_type)
    rows, next_cursor = await fetch_page(conn, query, deliveries.c.id, limit=limit, cursor=cursor)
    return [serialize(row) for row in rows], next_cursor


async def retry(conn: AsyncConnection, workspace_id: str, delivery_id: str) -> DeliveryData:
    """Make a delivery due now (a new attempt of the same event id), whatever its status."""
    delivery = await get(conn, workspace_id, delivery_id)
    enabled = (
        await conn.execute(
            sa.select(endpoints.c.enabled).where(endpoints.c.id == delivery["endpoint_id"])
        )
    ).scalar_one()
    if not enabled:
        raise Conflict(
            "This delivery's endpoint is disabled; enable it (PATCH /webhooks/"
            f"{delivery['endpoint_id']} with enabled=true) before retrying.",
        )
    requeued = await operator.requeue_delivery(
        conn, workspace_id=workspace_id, delivery_id=delivery_id, now=utcnow()
    )
    if not requeued:
        raise Conflict(
            "An attempt of this delivery is in flight; its outcome will be recorded within "
            "the delivery timeout. Retry after that if it failed.",
        )
    return await get(conn, workspace_id, delivery_id)

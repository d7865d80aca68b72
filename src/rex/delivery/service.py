"""Deliveries and their attempts, as the API shows them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.api.errors import not_found
from rex.db.schema import attempts, deliveries
from rex.ids import rfc3339


def serialize(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "endpoint_id": row.endpoint_id,
        "event_id": row.event_id,
        "event": row.event_type,
        "status": row.status,
        "attempt_count": row.attempt_count,
        "next_attempt_at": rfc3339(row.next_attempt_at),
        "created_at": rfc3339(row.created_at),
    }


def serialize_attempt(row: Any) -> dict[str, Any]:
    return {
        "at": rfc3339(row.at),
        "status_code": row.status_code,
        "error": row.error,
        "latency_ms": row.latency_ms,
        "response_excerpt": row.response_excerpt,
    }


async def get_delivery(
    conn: AsyncConnection, workspace_id: str, delivery_id: str, *, with_attempts: bool = False
) -> dict[str, Any]:
    row = (
        await conn.execute(
            sa.select(deliveries).where(
                deliveries.c.workspace_id == workspace_id, deliveries.c.id == delivery_id
            )
        )
    ).first()
    if row is None:
        raise not_found("delivery", delivery_id)
    delivery = serialize(row)
    if with_attempts:
        rows = await conn.execute(
            sa.select(attempts).where(attempts.c.delivery_id == delivery_id).order_by(attempts.c.at)
        )
        delivery["attempts"] = [serialize_attempt(a) for a in rows]
    return delivery

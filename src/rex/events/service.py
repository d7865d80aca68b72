"""Events as stored by the outbox: list and read them, with their deliveries."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.pagination import fetch_page
from rex.db.schema import deliveries, events
from rex.delivery.service import serialize as serialize_delivery
from rex.errors import NotFound
from rex.json_types import JsonObject
from rex.outbox.catalogue import INTERNAL_EVENT_TYPES

# Events Rex records only to drive its own deliveries (a form's new-lead email) are no
# part of the public log.
_PUBLIC = events.c.type.not_in(sorted(INTERNAL_EVENT_TYPES))


def serialize(row: Any) -> JsonObject:
    """The envelope exactly as delivered (the stored payload, parsed)."""
    envelope: JsonObject = json.loads(row.payload)
    return envelope


async def list_page(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    limit: int,
    cursor: str | None,
    type: str | None = None,
    object_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[JsonObject], str | None]:
    query = sa.select(events.c.id, events.c.payload).where(
        events.c.workspace_id == workspace_id, _PUBLIC
    )
    if type is not None:
        query = query.where(events.c.type == type)
    if object_id is not None:
        query = query.where(events.c.object_id == object_id)
    if since is not None:
        query = query.where(events.c.created_at >= since)
    if until is not None:
        query = query.where(events.c.created_at < until)
    rows, next_cursor = await fetch_page(conn, query, events.c.id, limit=limit, cursor=cursor)
    return [serialize(row) for row in rows], next_cursor


async def get(conn: AsyncConnection, workspace_id: str, event_id: str) -> JsonObject:
    """The envelope as delivered, with ``deliveries``: each as ``GET /deliveries`` lists it."""
    row = (
        await conn.execute(
            sa.select(events.c.payload).where(
                events.c.workspace_id == workspace_id, events.c.id == event_id, _PUBLIC
            )
        )
    ).first()
    if row is None:
        raise NotFound("event", event_id)
    event = serialize(row)
    rows = await conn.execute(
        sa.select(deliveries)
        .where(deliveries.c.workspace_id == workspace_id, deliveries.c.event_id == event_id)
        .order_by(deliveries.c.id)
    )
    event["deliveries"] = [serialize_delivery(delivery) for delivery in rows]
    return event

"""``/events``: every event Rex emitted, and where each was delivered."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from rex.api.deps import AuthDep, DbDep
from rex.api.errors import ERROR_RESPONSES
from rex.api.pagination import CursorQuery, LimitQuery
from rex.events import service
from rex.events.schemas import EventEnvelope, EventList
from rex.outbox.catalogue import EventType
from rex.validation import UtcTime

router = APIRouter(prefix="/events", tags=["events"], responses=ERROR_RESPONSES)


@router.get("", response_model=EventList, response_model_exclude_unset=True)
async def list_events(
    auth: AuthDep,
    db: DbDep,
    limit: LimitQuery = 20,
    cursor: CursorQuery = None,
    type: Annotated[EventType | None, Query(description="Only events of this type.")] = None,
    object_id: Annotated[
        str | None, Query(max_length=40, description="Only events about this object.")
    ] = None,
    since: Annotated[UtcTime | None, Query(description="Emitted at or after this time.")] = None,
    until: Annotated[UtcTime | None, Query(description="Emitted before this time.")] = None,
) -> dict[str, Any]:
    """Events, newest first, as their webhook payloads."""
    async with db.read() as conn:
        data, next_cursor = await service.list_page(
            conn,
            auth.workspace.id,
            limit=limit,
            cursor=cursor,
            type=type,
            object_id=object_id,
            since=since,
            until=until,
        )
    return {"data": data, "next_cursor": next_cursor}


@router.get("/{event_id}", response_model=EventEnvelope, response_model_exclude_unset=True)
async def get_event(event_id: str, auth: AuthDep, db: DbDep) -> dict[str, Any]:
    """One event with its deliveries (one per endpoint it was sent to)."""
    async with db.read() as conn:
        return {"data": await service.get(conn, auth.workspace.id, event_id)}

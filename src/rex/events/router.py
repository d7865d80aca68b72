"""``/events``: every event Rex emitted, and where each was delivered."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from rex.api.deps import AuthDep, DbDep
from rex.api.errors import ERROR_RESPONSES
from rex.api.pagination import CursorQuery, LimitQuery
from rex.api.schemas import One, Page
from rex.events import service, types
from rex.events.schemas import (
    EventEnvelope,
    EventList,
    EventPublish,
    EventTypeCreate,
    EventTypeEnvelope,
    EventTypeList,
)
from rex.events.types import EventTypeData
from rex.json_types import JsonObject
from rex.runtime import runtime_of
from rex.validation import UtcTime

router = APIRouter(prefix="/events", tags=["events"], responses=ERROR_RESPONSES)
types_router = APIRouter(prefix="/event-types", tags=["events"], responses=ERROR_RESPONSES)


@router.get("", response_model=EventList, response_model_exclude_unset=True)
async def list_events(
    auth: AuthDep,
    db: DbDep,
    limit: LimitQuery = 20,
    cursor: CursorQuery = None,
    type: Annotated[
        str | None, Query(max_length=64, description="Only events of this type.")
    ] = None,
    object_id: Annotated[
        str | None, Query(max_length=40, description="Only events about this object.")
    ] = None,
    since: Annotated[UtcTime | None, Query(description="Emitted at or after this time.")] = None,
    until: Annotated[UtcTime | None, Query(description="Emitted before this time.")] = None,
) -> Page[JsonObject]:
    """Events, newest first, as their webhook payloads."""
    async with db.read() as conn:
        if type is not None:
            await types.check_known(conn, auth.workspace.id, type)
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
async def get_event(event_id: str, auth: AuthDep, db: DbDep) -> One[JsonObject]:
    """One event with its deliveries (one per endpoint it was sent to)."""
    async with db.read() as conn:
        return {"data": await service.get(conn, auth.workspace.id, event_id)}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EventEnvelope,
    response_model_exclude_unset=True,
)
async def publish_event(
    body: EventPublish, request: Request, auth: AuthDep, db: DbDep
) -> One[JsonObject]:
    """Publish an event of one of your own types (`POST /event-types`): its `data` is checked
    against the type's schema (422 naming the path that failed), then it is recorded and
    delivered exactly like Rex's own events (same envelope, signatures and retries) to every
    endpoint subscribed to it. The answer is the event with its deliveries."""
    async with db.transaction() as conn:
        event = await types.publish(
            conn,
            auth.workspace.id,
            type=body.type,
            data=body.data,
            object_id=body.object_id,
            now=runtime_of(request.app).clock.now(),
        )
    return {"data": event}


@types_router.post("", status_code=status.HTTP_201_CREATED, response_model=EventTypeEnvelope)
async def create_event_type(
    body: EventTypeCreate, request: Request, auth: AuthDep, db: DbDep
) -> One[EventTypeData]:
    """Declare an event type of your own, with an optional JSON Schema for its `data`.
    Declaring an archived type again restores it."""
    async with db.transaction() as conn:
        created = await types.create(
            conn,
            auth.workspace.id,
            name=body.name,
            description=body.description,
            schema=body.schema_,
            now=runtime_of(request.app).clock.now(),
        )
    return {"data": created}


@types_router.get("", response_model=EventTypeList)
async def list_event_types(
    auth: AuthDep,
    db: DbDep,
    include_archived: Annotated[
        bool, Query(description="Also list your archived (deleted) types.")
    ] = False,
) -> Page[EventTypeData]:
    """Every event type endpoints may subscribe to: Rex's own (`builtin: true`), then yours."""
    async with db.read() as conn:
        data = await types.list_all(conn, auth.workspace.id, include_archived=include_archived)
    return {"data": data, "next_cursor": None}


@types_router.get("/{name_or_id}", response_model=EventTypeEnvelope)
async def get_event_type(name_or_id: str, auth: AuthDep, db: DbDep) -> One[EventTypeData]:
    """One event type, by name (`invoice.paid`) or id (`et_...`)."""
    async with db.read() as conn:
        return {"data": await types.get(conn, auth.workspace.id, name_or_id)}


@types_router.delete("/{name_or_id}", response_model=EventTypeEnvelope)
async def archive_event_type(
    name_or_id: str, request: Request, auth: AuthDep, db: DbDep
) -> One[EventTypeData]:
    """Archive one of your event types: it can no longer be published or newly subscribed
    to; its past events, and subscriptions that name it, stay."""
    async with db.transaction() as conn:
        archived = await types.archive(
            conn, auth.workspace.id, name_or_id, now=runtime_of(request.app).clock.now()
        )
    return {"data": archived}

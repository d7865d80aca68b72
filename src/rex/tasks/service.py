"""Tasks: reads, writes, and the events each write emits. Callers own the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.changes import Changes, changed_fields
from rex.db.pagination import fetch_page
from rex.db.schema import tasks
from rex.deals.service import require_contact, require_deal
from rex.errors import Invalid, NotFound
from rex.ids import new_id, rfc3339, utcnow
from rex.outbox.catalogue import EventType
from rex.outbox.events import record_event
from rex.states import TaskStatus
from rex.tasks.schemas import TRACKED, Task, TaskCreate, TaskUpdate


async def _fetch_row(
    conn: AsyncConnection, workspace_id: str, task_id: str, *, for_update: bool = False
) -> sa.Row[Any]:
    query = sa.select(tasks).where(tasks.c.workspace_id == workspace_id, tasks.c.id == task_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound("task", task_id)
    return row


async def get(conn: AsyncConnection, workspace_id: str, task_id: str) -> Task:
    return Task.from_row(await _fetch_row(conn, workspace_id, task_id))


async def list_page(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    limit: int,
    cursor: str | None,
    status: str | None = None,
    due_before: datetime | None = None,
    contact_id: str | None = None,
    deal_id: str | None = None,
) -> tuple[list[Task], str | None]:
    query = sa.select(tasks).where(tasks.c.workspace_id == workspace_id)
    if status is not None:
        query = query.where(tasks.c.status == status)
    if due_before is not None:
        query = query.where(tasks.c.due_at < due_before)
    if contact_id is not None:
        query = query.where(tasks.c.contact_id == contact_id)
    if deal_id is not None:
        query = query.where(tasks.c.deal_id == deal_id)
    rows, next_cursor = await fetch_page(conn, query, tasks.c.id, limit=limit, cursor=cursor)
    return [Task.from_row(row) for row in rows], next_cursor


async def create(conn: AsyncConnection, workspace_id: str, body: TaskCreate) -> Task:
    if body.contact_id is not None:
        await require_contact(conn, workspace_id, body.contact_id)
    if body.deal_id is not None:
        await require_deal(conn, workspace_id, body.deal_id)
    now = utcnow()
    values = {
        "id": new_id("task"),
        "workspace_id": workspace_id,
        **body.model_dump(),
        "completed_at": now if body.status == TaskStatus.DONE else None,
        "created_at": now,
        "updated_at": now,
    }
    row = (await conn.execute(sa.insert(tasks).values(values).returning(tasks))).one()
    task = Task.from_row(row)
    await record_event(
        conn,
        workspace_id=workspace_id,
        event_type=EventType.TASK_CREATED,
        data=task.data(),
        object_id=task.id,
        now=now,
    )
    return task


async def update(conn: AsyncConnection, workspace_id: str, task_id: str, body: TaskUpdate) -> Task:
    row = await _fetch_row(conn, workspace_id, task_id, for_update=True)
    stored = Task.from_row(row)
    before = stored.data()
    changes: Changes = body.model_dump(exclude_unset=True)
    for field in ("title", "status"):
        if field in changes and changes[field] is None:
            raise Invalid(field, f"{field} cannot be null.")
    now = utcnow()
    if "status" in changes and changes["status"] != before["status"]:
        changes["completed_at"] = now if changes["status"] == TaskStatus.DONE else None
    # Compare in the API's form (RFC 3339 strings), write as datetimes.
    times: Changes = {key: changes[key] for key in ("due_at", "completed_at") if key in changes}
    after = {**before, **changes, **{key: rfc3339(value) for key, value in times.items()}}
    previous = changed_fields(before, after, TRACKED)
    if not previous:
        return stored
    if "contact_id" in previous and after["contact_id"] is not None:
        await require_contact(conn, workspace_id, after["contact_id"])
    if "deal_id" in previous and after["deal_id"] is not None:
        await require_deal(conn, workspace_id, after["deal_id"])
    values = {key: times.get(key, after[key]) for key in previous}
    row = (
        await conn.execute(
            sa.update(tasks)
            .where(tasks.c.id == task_id)
            .values({**values, "updated_at": now})
            .returning(tasks)
        )
    ).one()
    task = Task.from_row(row)
    await record_event(
        conn,
        workspace_id=workspace_id,
        event_type=EventType.TASK_UPDATED,
        data=task.data(),
        object_id=task_id,
        now=now,
        previous_attributes=previous,
    )
    if "status" in previous and task.status == TaskStatus.DONE:
        await record_event(
            conn,
            workspace_id=workspace_id,
            event_type=EventType.TASK_COMPLETED,
            data=task.data(),
            object_id=task_id,
            now=now,
        )
    return task


async def delete(conn: AsyncConnection, workspace_id: str, task_id: str) -> Task:
    row = await _fetch_row(conn, workspace_id, task_id, for_update=True)
    task = Task.from_row(row)
    await conn.execute(sa.delete(tasks).where(tasks.c.id == task_id))
    await record_event(
        conn,
        workspace_id=workspace_id,
        event_type=EventType.TASK_DELETED,
        data=task.data(),
        object_id=task_id,
        now=utcnow(),
    )
    return task

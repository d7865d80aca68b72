"""``/tasks``: create, read, update, delete, list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from rex.api.deps import AuthDep, DbDep
from rex.api.errors import ERROR_RESPONSES
from rex.api.pagination import CursorQuery, LimitQuery
from rex.api.schemas import Deleted, DeletedObject
from rex.states import TaskStatusName
from rex.tasks import service
from rex.tasks.schemas import TaskCreate, TaskEnvelope, TaskList, TaskUpdate
from rex.validation import UtcTime

router = APIRouter(prefix="/tasks", tags=["tasks"], responses=ERROR_RESPONSES)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TaskEnvelope)
async def create_task(body: TaskCreate, auth: AuthDep, db: DbDep) -> TaskEnvelope:
    """Create a task; emits `task.created`."""
    async with db.transaction() as conn:
        task = await service.create(conn, auth.workspace.id, body)
    return TaskEnvelope(data=task)


@router.get("", response_model=TaskList)
async def list_tasks(
    auth: AuthDep,
    db: DbDep,
    limit: LimitQuery = 20,
    cursor: CursorQuery = None,
    status: TaskStatusName | None = None,
    due_before: Annotated[
        UtcTime | None, Query(description="Only tasks due strictly before this time.")
    ] = None,
    contact_id: Annotated[str | None, Query(max_length=40)] = None,
    deal_id: Annotated[str | None, Query(max_length=40)] = None,
) -> TaskList:
    """Tasks, newest first."""
    async with db.read() as conn:
        data, next_cursor = await service.list_page(
            conn,
            auth.workspace.id,
            limit=limit,
            cursor=cursor,
            status=status,
            due_before=due_before,
            contact_id=contact_id,
            deal_id=deal_id,
        )
    return TaskList(data=data, next_cursor=next_cursor)


@router.get("/{task_id}", response_model=TaskEnvelope)
async def get_task(task_id: str, auth: AuthDep, db: DbDep) -> TaskEnvelope:
    async with db.read() as conn:
        return TaskEnvelope(data=await service.get(conn, auth.workspace.id, task_id))


@router.patch("/{task_id}", response_model=TaskEnvelope)
async def update_task(task_id: str, body: TaskUpdate, auth: AuthDep, db: DbDep) -> TaskEnvelope:
    """Change the fields sent; emits `task.updated` with `previous_attributes`, and also
    `task.completed` when the status moves to `done`."""
    async with db.transaction() as conn:
        task = await service.update(conn, auth.workspace.id, task_id, body)
    return TaskEnvelope(data=task)


@router.delete("/{task_id}", response_model=Deleted)
async def delete_task(task_id: str, auth: AuthDep, db: DbDep) -> Deleted:
    """Delete a task; emits `task.deleted` carrying its last state."""
    async with db.transaction() as conn:
        await service.delete(conn, auth.workspace.id, task_id)
    return Deleted(data=DeletedObject(id=task_id, deleted=True))

"""Tasks: open tasks by due date (overdue ones marked), done ones newest first; mark done;
filter by contact or deal."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Query, Request
from starlette.responses import RedirectResponse, Response

from rex.console.auth import RuntimeDep, ViewerDep
from rex.console.paging import PAGE_SIZE, Page, fetch
from rex.console.routing import console_router
from rex.console.templating import render
from rex.db.schema import contacts, deals, tasks
from rex.errors import BadCursor
from rex.states import TaskStatus
from rex.tasks import service as tasks_service
from rex.tasks.schemas import TaskUpdate

router = console_router()

Text = Annotated[str | None, Query(max_length=320)]


def _encode(due_at: datetime | None, task_id: str) -> str:
    raw = json.dumps([due_at.isoformat() if due_at else None, task_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime | None, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        due, task_id = json.loads(raw)
        return (datetime.fromisoformat(due) if due else None), str(task_id)
    except (binascii.Error, ValueError, TypeError):
        raise BadCursor() from None


async def _open_page(conn: Any, query: sa.Select[Any], cursor: str | None) -> Page[Any]:
    """Open tasks by due date (those without one last), then by id: a keyset cursor on both.

    Two range reads on ``(workspace_id, due_at, id)``, each in the index's order: the dated
    tasks after the cursor, then (when the page is not full) the undated ones. One query
    ordered by ``due_at IS NULL`` first would sort every open task of the workspace."""
    due, last_id = _decode(cursor) if cursor else (None, None)
    rows: list[Any] = []
    if last_id is None or due is not None:  # still among the dated tasks
        dated = query.where(tasks.c.due_at.is_not(None))
        if due is not None and last_id is not None:
            dated = dated.where(
                sa.or_(tasks.c.due_at > due, sa.and_(tasks.c.due_at == due, tasks.c.id > last_id))
            )
        dated = dated.order_by(tasks.c.due_at, tasks.c.id).limit(PAGE_SIZE + 1)
        rows = list((await conn.execute(dated)).all())
    if len(rows) <= PAGE_SIZE:
        undated = query.where(tasks.c.due_at.is_(None))
        if due is None and last_id is not None:
            undated = undated.where(tasks.c.id > last_id)
        undated = undated.order_by(tasks.c.id).limit(PAGE_SIZE + 1 - len(rows))
        rows += (await conn.execute(undated)).all()
    next_cursor = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        next_cursor = _encode(rows[-1].due_at, rows[-1].id)
    return Page(items=rows, next_cursor=next_cursor, cursor=cursor)


async def _resolve_contact(conn: Any, workspace_id: str, value: str) -> str:
    """A contact filter given as an id or an email: the contact's id ("" matches nothing)."""
    if "@" not in value:
        return value
    found = await conn.execute(
        sa.select(contacts.c.id).where(
            contacts.c.workspace_id == workspace_id, contacts.c.email == value.strip().lower()
        )
    )
    return found.scalar() or ""


@router.get("/tasks")
async def task_list(
    request: Request,
    viewer: ViewerDep,
    runtime: RuntimeDep,
    contact: Text = None,
    deal: Text = None,
    status: Text = None,
    cursor: Text = None,
    done: Text = None,
) -> Response:
    workspace_id = viewer.workspace_id
    showing_done = status == "done"
    query = (
        sa.select(
            tasks,
            contacts.c.email.label("contact_email"),
            deals.c.name.label("deal_name"),
        )
        .outerjoin(contacts, contacts.c.id == tasks.c.contact_id)
        .outerjoin(deals, deals.c.id == tasks.c.deal_id)
        .where(tasks.c.workspace_id == workspace_id)
    )
    async with runtime.db.read() as conn:
        if contact:
            query = query.where(
                tasks.c.contact_id == await _resolve_contact(conn, workspace_id, contact)
            )
        if deal:
            query = query.where(tasks.c.deal_id == deal.strip())
        if showing_done:
            query = query.where(tasks.c.status == TaskStatus.DONE)
            page = await fetch(conn, query, tasks.c.id, cursor=cursor)
        else:
            query = query.where(tasks.c.status != TaskStatus.DONE)
            page = await _open_page(conn, query, cursor)
    return render(
        request,
        "tasks.html",
        {
            "nav": "tasks",
            "page": page,
            "showing_done": showing_done,
            "filters": {"contact": contact or "", "deal": deal or ""},
            "now": runtime.clock.now(),
            "notice": "Task marked done." if done == "1" else None,
        },
    )


@router.post("/tasks/{task_id}/done")
async def mark_done(
    task_id: str, request: Request, viewer: ViewerDep, runtime: RuntimeDep
) -> Response:
    """The same update as ``PATCH /tasks/{id}`` with ``status: done`` (``task.completed``)."""
    async with runtime.db.transaction() as conn:
        await tasks_service.update(
            conn, viewer.workspace_id, task_id, TaskUpdate(status=TaskStatus.DONE)
        )
    back = request.headers.get("referer", "")
    target = "/console/tasks"
    if "/console/tasks" in back and "?" in back:
        target += "?" + back.split("?", 1)[1].replace("done=1", "").strip("&")
    separator = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{separator}done=1", status_code=303)

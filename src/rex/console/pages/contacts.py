"""A contact: every field, first and last touch, consent, the timeline of its events (with
what changed), its deals and tasks; change its stage, add a task."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Form, Request
from starlette.responses import RedirectResponse, Response

from rex.console.auth import RuntimeDep, ViewerDep
from rex.console.forms import parse
from rex.console.paging import distinct_values, fetch
from rex.console.routing import console_router
from rex.console.templating import render
from rex.contacts import service as contacts_service
from rex.contacts.schemas import ContactUpdate
from rex.db.schema import contacts, deals, events, tasks
from rex.errors import Invalid
from rex.tasks import service as tasks_service
from rex.tasks.schemas import TaskCreate

router = console_router()

NOTICES = {
    "stage": "Stage changed.",
    "task": "Task added.",
}


def timeline_entry(row: sa.Row[Any]) -> dict[str, Any]:
    """An event as the timeline shows it: its type, time, and each changed field."""
    try:
        envelope = json.loads(row.payload)
    except ValueError:
        envelope = {}
    data = envelope.get("data") if isinstance(envelope.get("data"), dict) else {}
    previous = envelope.get("previous_attributes")
    changes = []
    if isinstance(previous, dict):
        for field, old in previous.items():
            changes.append({"field": field, "old": old, "new": data.get(field)})
    return {"id": row.id, "type": row.type, "created_at": row.created_at, "changes": changes}


def parse_due(value: str | None) -> datetime | None:
    """A due date from the form: ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM``, in UTC."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid("due_at", f"due_at: {value!r} is not a date (YYYY-MM-DD).") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@router.get("/contacts/{contact_id}")
async def contact_page(
    request: Request,
    contact_id: str,
    viewer: ViewerDep,
    runtime: RuntimeDep,
    cursor: str | None = None,
    done: str | None = None,
) -> Response:
    workspace_id = viewer.workspace_id
    async with runtime.db.read() as conn:
        contact = await contacts_service.get(conn, workspace_id, contact_id)
        timeline = await fetch(
            conn,
            sa.select(events).where(
                events.c.workspace_id == workspace_id, events.c.object_id == contact_id
            ),
            events.c.id,
            cursor=cursor,
            limit=30,
            convert=timeline_entry,
        )
        deal_rows = (
            await conn.execute(
                sa.select(deals)
                .where(deals.c.workspace_id == workspace_id, deals.c.contact_id == contact_id)
                .order_by(deals.c.id.desc())
                .limit(50)
            )
        ).all()
        task_rows = (
            await conn.execute(
                sa.select(tasks)
                .where(tasks.c.workspace_id == workspace_id, tasks.c.contact_id == contact_id)
                .order_by(tasks.c.id.desc())
                .limit(50)
            )
        ).all()
        stage_values = await distinct_values(conn, contacts.c.stage, workspace_id)
        stages = sorted({*stage_values, contact.stage})
    name = " ".join(p for p in (contact.first_name, contact.last_name) if p)
    return render(
        request,
        "contact.html",
        {
            "nav": "leads",
            "contact": contact.data(),
            "name": name or contact.email,
            "timeline": timeline,
            "deals": deal_rows,
            "tasks": task_rows,
            "stages": stages,
            "now": runtime.clock.now(),
            "notice": NOTICES.get(done or ""),
        },
    )


@router.post("/contacts/{contact_id}/stage")
async def change_stage(
    contact_id: str,
    viewer: ViewerDep,
    runtime: RuntimeDep,
    stage: Annotated[str, Form(max_length=200)],
) -> Response:
    """The same update as ``PATCH /contacts/{id}`` with a stage (``contact.updated``)."""
    body = parse(ContactUpdate, {"stage": stage.strip()})
    if body.stage is None:
        raise Invalid("stage", "stage: a stage is needed.")
    async with runtime.db.transaction() as conn:
        await contacts_service.update(conn, viewer.workspace_id, contact_id, body)
    return RedirectResponse(f"/console/contacts/{contact_id}?done=stage", status_code=303)


@router.post("/contacts/{contact_id}/tasks")
async def add_task(
    contact_id: str,
    viewer: ViewerDep,
    runtime: RuntimeDep,
    title: Annotated[str, Form(max_length=1000)],
    due_at: Annotated[str, Form(max_length=40)] = "",
    body: Annotated[str, Form(max_length=20000)] = "",
) -> Response:
    """The same as ``POST /tasks`` for this contact (``task.created``)."""
    async with runtime.db.transaction() as conn:
        await contacts_service.get(conn, viewer.workspace_id, contact_id)  # 404 if not ours
        task = parse(
            TaskCreate,
            {
                "title": title,
                "body": body,
                "due_at": parse_due(due_at),
                "contact_id": contact_id,
            },
        )
        await tasks_service.create(conn, viewer.workspace_id, task)
    return RedirectResponse(f"/console/contacts/{contact_id}?done=task", status_code=303)

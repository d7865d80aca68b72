"""Forms as stored: create, read, update, delete, list; and the lookup a capture makes.

A form with ``notify_emails`` owns one endpoint whose URL is ``mailto:`` its addresses: the
new-lead emails are deliveries to it, sent by the delivery workers like any webhook (retried,
recorded), through the mail transport (``rex.mail``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex._signing import generate_secret
from rex.db.pagination import fetch_page
from rex.db.schema import endpoints, forms
from rex.errors import NotFound
from rex.forms.schemas import FormCreate, FormUpdate, StoredForm
from rex.ids import new_id, rfc3339, utcnow
from rex.mail.transport import mailto_url
from rex.outbox.records import EndpointKind, SystemRole


def serialize(row: Any) -> StoredForm:
    """A stored form, CAPTCHA secret included (``schemas.public`` hides it)."""
    return {
        "id": row.id,
        "workspace_id": row.workspace_id,
        "name": row.name,
        "field_map": row.field_map or {},
        "redirect_url": row.redirect_url,
        "honeypot_fields": row.honeypot_fields or [],
        "captcha": row.captcha,
        "notify_emails": row.notify_emails or [],
        "success_message": row.success_message,
        "notify_endpoint_id": row.notify_endpoint_id,
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    }


async def _notify_endpoint(
    conn: AsyncConnection,
    workspace_id: str,
    form_id: str,
    emails: list[str],
    current: str | None,
) -> str | None:
    """Create, update or delete the form's mailto: endpoint; its id, or None."""
    now = utcnow()
    if not emails:
        if current is not None:
            await conn.execute(sa.delete(endpoints).where(endpoints.c.id == current))
        return None
    if current is not None:
        await conn.execute(
            sa.update(endpoints)
            .where(endpoints.c.id == current)
            .values(url=mailto_url(emails), enabled=True, disabled_reason=None, updated_at=now)
        )
        return current
    endpoint_id = new_id("wh")
    await conn.execute(
        sa.insert(endpoints).values(
            id=endpoint_id,
            workspace_id=workspace_id,
            url=mailto_url(emails),
            # Never matched by an event filter: notifications are queued for it by the
            # capture of a form's accepted lead (see rex.submissions.service).
            events=[],
            description=f"New-lead emails of form {form_id}",
            secret=generate_secret(),
            enabled=True,
            max_concurrency=2,
            kind=EndpointKind.SYSTEM.value,  # never shown through /webhooks
            system_role=SystemRole.FORM_NOTIFY.value,
            created_at=now,
            updated_at=now,
        )
    )
    return endpoint_id


async def create(conn: AsyncConnection, workspace_id: str, body: FormCreate) -> StoredForm:
    now = utcnow()
    form_id = new_id("frm")
    endpoint_id = await _notify_endpoint(conn, workspace_id, form_id, body.notify_emails, None)
    values = {
        "id": form_id,
        "workspace_id": workspace_id,
        "name": body.name,
        "field_map": body.field_map,
        "redirect_url": body.redirect_url,
        "honeypot_fields": body.honeypot_fields,
        "captcha": body.captcha.model_dump() if body.captcha else None,
        "notify_emails": body.notify_emails,
        "success_message": body.success_message,
        "notify_endpoint_id": endpoint_id,
        "created_at": now,
        "updated_at": now,
    }
    row = (await conn.execute(sa.insert(forms).values(values).returning(forms))).one()
    return serialize(row)


async def _find(conn: AsyncConnection, workspace_id: str, form_id: str) -> StoredForm | None:
    row = (
        await conn.execute(
            sa.select(forms).where(forms.c.workspace_id == workspace_id, forms.c.id == form_id)
        )
    ).first()
    return serialize(row) if row is not None else None


async def find(conn: AsyncConnection, workspace_id: str, form_id: str) -> StoredForm | None:
    """The stored form, or None (the capture path's lookup: a missing form is its 404)."""
    return await _find(conn, workspace_id, form_id)


async def get(conn: AsyncConnection, workspace_id: str, form_id: str) -> StoredForm:
    form = await _find(conn, workspace_id, form_id)
    if form is None:
        raise NotFound("form", form_id)
    return form


async def list_page(
    conn: AsyncConnection, workspace_id: str, *, limit: int, cursor: str | None
) -> tuple[list[StoredForm], str | None]:
    query = sa.select(forms).where(forms.c.workspace_id == workspace_id)
    rows, next_cursor = await fetch_page(conn, query, forms.c.id, limit=limit, cursor=cursor)
    return [serialize(row) for row in rows], next_cursor


async def update(
    conn: AsyncConnection, workspace_id: str, form_id: str, body: FormUpdate
) -> StoredForm:
    form = await get(conn, workspace_id, form_id)
    changes = body.model_dump(exclude_unset=True)
    for required in ("name", "field_map", "honeypot_fields", "notify_emails"):
        if required in changes and changes[required] is None:
            changes.pop(required)
    if "notify_emails" in changes:
        changes["notify_endpoint_id"] = await _notify_endpoint(
            conn, workspace_id, form_id, changes["notify_emails"], form["notify_endpoint_id"]
        )
    changes["updated_at"] = utcnow()
    row = (
        await conn.execute(
            sa.update(forms)
            .where(forms.c.workspace_id == workspace_id, forms.c.id == form_id)
            .values(changes)
            .returning(forms)
        )
    ).one()
    return serialize(row)


async def delete(conn: AsyncConnection, workspace_id: str, form_id: str) -> None:
    form = await get(conn, workspace_id, form_id)
    await conn.execute(
        sa.delete(forms).where(forms.c.workspace_id == workspace_id, forms.c.id == form_id)
    )
    if form["notify_endpoint_id"]:
        await conn.execute(sa.delete(endpoints).where(endpoints.c.id == form["notify_endpoint_id"]))

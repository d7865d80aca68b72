"""Contacts: reads, writes, and the events each write emits. Callers own the transaction."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.changes import Changes, changed_fields, merge_metadata
from rex.contacts.schemas import TRACKED, Contact, ContactCreate, ContactUpdate
from rex.db.pagination import fetch_page
from rex.db.schema import contacts
from rex.errors import Conflict, Invalid, NotFound
from rex.ids import new_id, utcnow
from rex.outbox.catalogue import EventType
from rex.outbox.events import record_event


async def _fetch_row(
    conn: AsyncConnection, workspace_id: str, contact_id: str, *, for_update: bool = False
) -> sa.Row[Any] | None:
    query = sa.select(contacts).where(
        contacts.c.workspace_id == workspace_id, contacts.c.id == contact_id
    )
    if for_update:
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def get(conn: AsyncConnection, workspace_id: str, contact_id: str) -> Contact:
    row = await _fetch_row(conn, workspace_id, contact_id)
    if row is None:
        raise NotFound("contact", contact_id)
    return Contact.from_row(row)


async def exists(conn: AsyncConnection, workspace_id: str, contact_id: str) -> bool:
    query = sa.select(contacts.c.id).where(
        contacts.c.workspace_id == workspace_id, contacts.c.id == contact_id
    )
    return (await conn.execute(query)).first() is not None


async def list_page(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    limit: int,
    cursor: str | None,
    email: str | None = None,
    stage: str | None = None,
) -> tuple[list[Contact], str | None]:
    query = sa.select(contacts).where(contacts.c.workspace_id == workspace_id)
    if email is not None:
        query = query.where(contacts.c.email == email.strip().lower())
    if stage is not None:
        query = query.where(contacts.c.stage == stage)
    rows, next_cursor = await fetch_page(conn, query, contacts.c.id, limit=limit, cursor=cursor)
    return [Contact.from_row(row) for row in rows], next_cursor


async def _email_taken(conn: AsyncConnection, workspace_id: str, email: str) -> str | None:
    query = sa.select(contacts.c.id).where(
        contacts.c.workspace_id == workspace_id, contacts.c.email == email
    )
    return (await conn.execute(query)).scalar()


async def create(conn: AsyncConnection, workspace_id: str, body: ContactCreate) -> Contact:
    existing = await _email_taken(conn, workspace_id, body.email)
    if existing:
        raise Conflict(
            f"A contact with email {body.email!r} already exists ({existing}); "
            "update it with PATCH /contacts/{id}, or use POST /capture to upsert.",
            field="email",
        )
    now = utcnow()
    values = {
        "id": new_id("cont"),
        "workspace_id": workspace_id,
        **body.model_dump(),
        "first_touch": None,
        "last_touch": None,
        "consent": None,
        "created_at": now,
        "updated_at": now,
    }
    row = (await conn.execute(sa.insert(contacts).values(values).returning(contacts))).one()
    contact = Contact.from_row(row)
    await record_event(
        conn,
        workspace_id=workspace_id,
        event_type=EventType.CONTACT_CREATED,
        data=contact.data(),
        object_id=contact.id,
        now=now,
    )
    return contact


async def update(
    conn: AsyncConnection, workspace_id: str, contact_id: str, body: ContactUpdate
) -> Contact:
    row = await _fetch_row(conn, workspace_id, contact_id, for_update=True)
    if row is None:
        raise NotFound("contact", contact_id)
    before = Contact.from_row(row)
    changes = body.model_dump(exclude_unset=True)
    if "email" in changes:
        if changes["email"] is None:
            raise Invalid("email", "email cannot be null.")
        owner = await _email_taken(conn, workspace_id, changes["email"])
        if owner and owner != contact_id:
            raise Conflict(f"Another contact ({owner}) has that email.", field="email")
    if "stage" in changes and changes["stage"] is None:
        raise Invalid("stage", "stage cannot be null.")
    if "metadata" in changes:
        changes["metadata"] = merge_metadata(before.metadata, changes["metadata"])
    return await apply_changes(conn, workspace_id, before, changes)


async def apply_changes(
    conn: AsyncConnection, workspace_id: str, before: Contact, changes: Changes
) -> Contact:
    """Write ``changes`` and emit ``contact.updated``; a no-op change writes and emits nothing."""
    old = before.data()
    after = {**old, **changes}
    previous = changed_fields(old, after, TRACKED)
    if not previous:
        return before
    now = utcnow()
    row = (
        await conn.execute(
            sa.update(contacts)
            .where(contacts.c.id == before.id)
            .values({**{key: after[key] for key in previous}, "updated_at": now})
            .returning(contacts)
        )
    ).one()
    contact = Contact.from_row(row)
    await record_event(
        conn,
        workspace_id=workspace_id,
        event_type=EventType.CONTACT_UPDATED,
        data=contact.data(),
        object_id=contact.id,
        now=now,
        previous_attributes=previous,
    )
    return contact


async def delete(conn: AsyncConnection, workspace_id: str, contact_id: str) -> Contact:
    row = await _fetch_row(conn, workspace_id, contact_id, for_update=True)
    if row is None:
        raise NotFound("contact", contact_id)
    contact = Contact.from_row(row)
    await conn.execute(sa.delete(contacts).where(contacts.c.id == contact_id))
    await record_event(
        conn,
        workspace_id=workspace_id,
        event_type=EventType.CONTACT_DELETED,
        data=contact.data(),
        object_id=contact_id,
        now=utcnow(),
    )
    return contact

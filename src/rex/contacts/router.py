"""``/contacts``: create, read, update, delete, list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from rex.api.deps import AuthDep, DbDep
from rex.api.errors import ERROR_RESPONSES
from rex.api.pagination import CursorQuery, LimitQuery
from rex.api.schemas import Deleted, DeletedObject
from rex.contacts import service
from rex.contacts.schemas import ContactCreate, ContactEnvelope, ContactList, ContactUpdate

router = APIRouter(prefix="/contacts", tags=["contacts"], responses=ERROR_RESPONSES)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ContactEnvelope)
async def create_contact(body: ContactCreate, auth: AuthDep, db: DbDep) -> ContactEnvelope:
    """Create a contact (409 if the email exists; `POST /capture` upserts instead)."""
    async with db.transaction() as conn:
        contact = await service.create(conn, auth.workspace.id, body)
    return ContactEnvelope(data=contact)


@router.get("", response_model=ContactList)
async def list_contacts(
    auth: AuthDep,
    db: DbDep,
    limit: LimitQuery = 20,
    cursor: CursorQuery = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    stage: Annotated[str | None, Query(max_length=64)] = None,
) -> ContactList:
    """Contacts, newest first."""
    async with db.read() as conn:
        data, next_cursor = await service.list_page(
            conn, auth.workspace.id, limit=limit, cursor=cursor, email=email, stage=stage
        )
    return ContactList(data=data, next_cursor=next_cursor)


@router.get("/{contact_id}", response_model=ContactEnvelope)
async def get_contact(contact_id: str, auth: AuthDep, db: DbDep) -> ContactEnvelope:
    async with db.read() as conn:
        return ContactEnvelope(data=await service.get(conn, auth.workspace.id, contact_id))


@router.patch("/{contact_id}", response_model=ContactEnvelope)
async def update_contact(
    contact_id: str, body: ContactUpdate, auth: AuthDep, db: DbDep
) -> ContactEnvelope:
    """Change the fields sent; emits `contact.updated` with `previous_attributes`."""
    async with db.transaction() as conn:
        contact = await service.update(conn, auth.workspace.id, contact_id, body)
    return ContactEnvelope(data=contact)


@router.delete("/{contact_id}", response_model=Deleted)
async def delete_contact(contact_id: str, auth: AuthDep, db: DbDep) -> Deleted:
    """Delete a contact; emits `contact.deleted` carrying its last state."""
    async with db.transaction() as conn:
        await service.delete(conn, auth.workspace.id, contact_id)
    return Deleted(data=DeletedObject(id=contact_id, deleted=True))

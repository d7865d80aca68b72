"""``/forms``: capture forms with their own capture URL, mapping, honeypots, CAPTCHA and
new-lead emails. Create, read, update, delete, list."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from rex.api.deps import AuthDep, DbDep
from rex.api.errors import ERROR_RESPONSES
from rex.api.pagination import CursorQuery, LimitQuery
from rex.api.schemas import Deleted, DeletedObject, One, Page
from rex.forms import service
from rex.forms.schemas import FormCreate, FormData, FormEnvelope, FormList, FormUpdate, public

router = APIRouter(prefix="/forms", tags=["forms"], responses=ERROR_RESPONSES)


def _base(request: Request) -> str:
    return str(request.base_url)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=FormEnvelope)
async def create_form(
    body: FormCreate, request: Request, auth: AuthDep, db: DbDep
) -> One[FormData]:
    """Create a form; its `capture_url` takes posts without a key, like `/capture`."""
    async with db.transaction() as conn:
        form = await service.create(conn, auth.workspace.id, body)
    return {"data": public(form, _base(request))}


@router.get("", response_model=FormList)
async def list_forms(
    request: Request, auth: AuthDep, db: DbDep, limit: LimitQuery = 20, cursor: CursorQuery = None
) -> Page[FormData]:
    """Forms, newest first."""
    async with db.read() as conn:
        data, next_cursor = await service.list_page(
            conn, auth.workspace.id, limit=limit, cursor=cursor
        )
    return {"data": [public(f, _base(request)) for f in data], "next_cursor": next_cursor}


@router.get("/{form_id}", response_model=FormEnvelope)
async def get_form(form_id: str, request: Request, auth: AuthDep, db: DbDep) -> One[FormData]:
    async with db.read() as conn:
        form = await service.get(conn, auth.workspace.id, form_id)
    return {"data": public(form, _base(request))}


@router.patch("/{form_id}", response_model=FormEnvelope)
async def update_form(
    form_id: str, body: FormUpdate, request: Request, auth: AuthDep, db: DbDep
) -> One[FormData]:
    """Change the fields sent. A new `field_map` applies to the next posts, and to older
    submissions through `POST /submissions/{id}/reprocess`."""
    async with db.transaction() as conn:
        form = await service.update(conn, auth.workspace.id, form_id, body)
    return {"data": public(form, _base(request))}


@router.delete("/{form_id}", response_model=Deleted)
async def delete_form(form_id: str, auth: AuthDep, db: DbDep) -> Deleted:
    """Delete a form: its capture URL answers 404 from now on; its submissions stay."""
    async with db.transaction() as conn:
        await service.delete(conn, auth.workspace.id, form_id)
    return Deleted(data=DeletedObject(id=form_id, deleted=True))

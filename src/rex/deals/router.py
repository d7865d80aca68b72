"""``/deals``: create, read, update, delete, list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from rex.api.deps import AuthDep, DbDep
from rex.api.errors import ERROR_RESPONSES
from rex.api.pagination import CursorQuery, LimitQuery
from rex.api.schemas import Deleted, DeletedObject
from rex.deals import service
from rex.deals.schemas import DealCreate, DealEnvelope, DealList, DealUpdate
from rex.states import DealStatusName

router = APIRouter(prefix="/deals", tags=["deals"], responses=ERROR_RESPONSES)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DealEnvelope)
async def create_deal(body: DealCreate, auth: AuthDep, db: DbDep) -> DealEnvelope:
    """Create a deal; emits `deal.created`."""
    async with db.transaction() as conn:
        deal = await service.create(conn, auth.workspace.id, body)
    return DealEnvelope(data=deal)


@router.get("", response_model=DealList)
async def list_deals(
    auth: AuthDep,
    db: DbDep,
    limit: LimitQuery = 20,
    cursor: CursorQuery = None,
    stage: Annotated[str | None, Query(max_length=64)] = None,
    status: DealStatusName | None = None,
    contact_id: Annotated[str | None, Query(max_length=40)] = None,
    pipeline_id: Annotated[str | None, Query(max_length=40)] = None,
) -> DealList:
    """Deals, newest first."""
    async with db.read() as conn:
        data, next_cursor = await service.list_page(
            conn,
            auth.workspace.id,
            limit=limit,
            cursor=cursor,
            stage=stage,
            status=status,
            contact_id=contact_id,
            pipeline_id=pipeline_id,
        )
    return DealList(data=data, next_cursor=next_cursor)


@router.get("/{deal_id}", response_model=DealEnvelope)
async def get_deal(deal_id: str, auth: AuthDep, db: DbDep) -> DealEnvelope:
    async with db.read() as conn:
        return DealEnvelope(data=await service.get(conn, auth.workspace.id, deal_id))


@router.patch("/{deal_id}", response_model=DealEnvelope)
async def update_deal(deal_id: str, body: DealUpdate, auth: AuthDep, db: DbDep) -> DealEnvelope:
    """Change the fields sent; emits `deal.updated` with `previous_attributes`, and also
    `deal.stage_changed` (with `from` and `to`) when the stage moves."""
    async with db.transaction() as conn:
        deal = await service.update(conn, auth.workspace.id, deal_id, body)
    return DealEnvelope(data=deal)


@router.delete("/{deal_id}", response_model=Deleted)
async def delete_deal(deal_id: str, auth: AuthDep, db: DbDep) -> Deleted:
    """Delete a deal; emits `deal.deleted` carrying its last state. Its tasks are kept,
    unlinked (`deal_id` becomes null)."""
    async with db.transaction() as conn:
        await service.delete(conn, auth.workspace.id, deal_id)
    return Deleted(data=DeletedObject(id=deal_id, deleted=True))

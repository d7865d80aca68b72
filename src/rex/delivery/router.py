"""``/deliveries``: what was sent where, every attempt, and sending again."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from rex.api.deps import AuthDep, DbDep
from rex.api.errors import ERROR_RESPONSES
from rex.api.pagination import CursorQuery, LimitQuery
from rex.api.schemas import One, Page
from rex.delivery import service
from rex.delivery.schemas import (
    DeliveryDetailEnvelope,
    DeliveryEnvelope,
    DeliveryList,
    DeliveryStatusName,
)
from rex.outbox.records import DeliveryData, DeliveryWithAttemptsData

router = APIRouter(prefix="/deliveries", tags=["deliveries"], responses=ERROR_RESPONSES)

StatusQuery = Annotated[DeliveryStatusName | None, Query(description="Only this status.")]
IdQuery = Annotated[str | None, Query(max_length=40)]


@router.get("", response_model=DeliveryList)
async def list_deliveries(
    auth: AuthDep,
    db: DbDep,
    limit: LimitQuery = 20,
    cursor: CursorQuery = None,
    endpoint_id: IdQuery = None,
    event_id: IdQuery = None,
    status: StatusQuery = None,
) -> Page[DeliveryData]:
    """Deliveries, newest first; filter by endpoint, event or status."""
    async with db.read() as conn:
        data, next_cursor = await service.page(
            conn,
            auth.workspace.id,
            endpoint_id=endpoint_id,
            event_id=event_id,
            status=status,
            limit=limit,
            cursor=cursor,
        )
    return {"data": data, "next_cursor": next_cursor}


@router.get("/{delivery_id}", response_model=DeliveryDetailEnvelope)
async def get_delivery(delivery_id: str, auth: AuthDep, db: DbDep) -> One[DeliveryWithAttemptsData]:
    """A delivery with every attempt: time, status code or error, latency, response excerpt."""
    async with db.read() as conn:
        delivery = await service.get_with_attempts(conn, auth.workspace.id, delivery_id)
    return {"data": delivery}


@router.post(
    "/{delivery_id}/retry", status_code=status.HTTP_202_ACCEPTED, response_model=DeliveryEnvelope
)
async def retry_delivery(delivery_id: str, auth: AuthDep, db: DbDep) -> One[DeliveryData]:
    """Send this delivery again now, as a new attempt of the same event id (a failed,
    pending or delivered one alike). 409 while an attempt is in flight or the endpoint is
    disabled."""
    async with db.transaction() as conn:
        delivery = await service.retry(conn, auth.workspace.id, delivery_id)
    return {"data": delivery}

"""``/webhooks``: subscribe endpoints to events, and send them test events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from rex.api.deps import AuthDep, DbDep
from rex.api.errors import ERROR_RESPONSES
from rex.api.pagination import CursorQuery, LimitQuery
from rex.api.schemas import Deleted, DeletedObject, One, Page
from rex.delivery.schemas import DeliveryEnvelope, DeliveryList, DeliveryStatusName
from rex.outbox.records import DeliveryData, EndpointData, EndpointWithSecretData
from rex.runtime import runtime_of
from rex.webhooks import service
from rex.webhooks.schemas import (
    EndpointCreate,
    EndpointCreatedEnvelope,
    EndpointEnvelope,
    EndpointList,
    EndpointUpdate,
    Recovery,
    RecoveryEnvelope,
    SecretRotation,
)
from rex.webhooks.service import RecoveryData
from rex.worker.ssrf import DestinationPolicy

router = APIRouter(prefix="/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES)


def _policy(request: Request) -> DestinationPolicy:
    return runtime_of(request.app).destination_policy


@router.post("", status_code=status.HTTP_201_CREATED, response_model=EndpointCreatedEnvelope)
async def create_endpoint(
    body: EndpointCreate, request: Request, auth: AuthDep, db: DbDep
) -> One[EndpointWithSecretData]:
    """Subscribe a URL to events. The response is the only time the secret is shown."""
    async with db.transaction() as conn:
        endpoint = await service.create(
            conn,
            auth.workspace.id,
            body,
            _policy(request),
            max_endpoints=runtime_of(request.app).settings.max_endpoints_per_workspace,
        )
    return {"data": endpoint}


@router.get("", response_model=EndpointList)
async def list_endpoints(
    auth: AuthDep, db: DbDep, limit: LimitQuery = 20, cursor: CursorQuery = None
) -> Page[EndpointData]:
    async with db.read() as conn:
        data, next_cursor = await service.list_page(
            conn, auth.workspace.id, limit=limit, cursor=cursor
        )
    return {"data": data, "next_cursor": next_cursor}


@router.get("/{endpoint_id}", response_model=EndpointEnvelope)
async def get_endpoint(endpoint_id: str, auth: AuthDep, db: DbDep) -> One[EndpointData]:
    async with db.read() as conn:
        return {"data": await service.get(conn, auth.workspace.id, endpoint_id)}


@router.patch("/{endpoint_id}", response_model=EndpointEnvelope)
async def update_endpoint(
    endpoint_id: str, body: EndpointUpdate, request: Request, auth: AuthDep, db: DbDep
) -> One[EndpointData]:
    """Change url, events, description, or enabled (re-enabling a disabled endpoint)."""
    async with db.transaction() as conn:
        endpoint = await service.update(
            conn, auth.workspace.id, endpoint_id, body, _policy(request)
        )
    return {"data": endpoint}


@router.delete("/{endpoint_id}", response_model=Deleted)
async def delete_endpoint(endpoint_id: str, auth: AuthDep, db: DbDep) -> Deleted:
    """Delete the endpoint and its pending deliveries."""
    async with db.transaction() as conn:
        await service.delete(conn, auth.workspace.id, endpoint_id)
    return Deleted(data=DeletedObject(id=endpoint_id, deleted=True))


@router.post(
    "/{endpoint_id}/test", status_code=status.HTTP_202_ACCEPTED, response_model=DeliveryEnvelope
)
async def test_endpoint(endpoint_id: str, auth: AuthDep, db: DbDep) -> One[DeliveryData]:
    """Send a `webhook.test` event to this endpoint now, whatever its event filter."""
    async with db.transaction() as conn:
        delivery = await service.send_test(conn, auth.workspace.id, endpoint_id)
    return {"data": delivery}


@router.post("/{endpoint_id}/rotate-secret", response_model=EndpointCreatedEnvelope)
async def rotate_secret(
    endpoint_id: str,
    request: Request,
    auth: AuthDep,
    db: DbDep,
    body: SecretRotation | None = None,
) -> One[EndpointWithSecretData]:
    """Replace the signing secret (given, or generated). For 24 hours both sign: every
    delivery carries one `v1=` per secret, the new one first. The response is the only time
    the new secret is shown."""
    async with db.transaction() as conn:
        endpoint = await service.rotate_secret(
            conn,
            auth.workspace.id,
            endpoint_id,
            body or SecretRotation(),
            now=runtime_of(request.app).clock.now(),
        )
    return {"data": endpoint}


@router.get("/{endpoint_id}/deliveries", response_model=DeliveryList)
async def list_endpoint_deliveries(
    endpoint_id: str,
    auth: AuthDep,
    db: DbDep,
    limit: LimitQuery = 20,
    cursor: CursorQuery = None,
    status: Annotated[DeliveryStatusName | None, Query(description="Only this status.")] = None,
) -> Page[DeliveryData]:
    """This endpoint's deliveries, newest first (attempts: `GET /deliveries/{id}`)."""
    async with db.read() as conn:
        data, next_cursor = await service.list_deliveries(
            conn, auth.workspace.id, endpoint_id, status=status, limit=limit, cursor=cursor
        )
    return {"data": data, "next_cursor": next_cursor}


@router.post(
    "/{endpoint_id}/recover", status_code=status.HTTP_202_ACCEPTED, response_model=RecoveryEnvelope
)
async def recover_endpoint(
    endpoint_id: str, body: Recovery, auth: AuthDep, db: DbDep
) -> One[RecoveryData]:
    """Send again every failed delivery of this endpoint created since `since` (after an
    outage): each is due now and gets one more attempt (and whatever the retry schedule
    has left)."""
    async with db.transaction() as conn:
        result = await service.recover(conn, auth.workspace.id, endpoint_id, body)
    return {"data": result}

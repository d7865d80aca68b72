"""Webhook endpoints: CRUD and test events. Callers own the transaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypedDict

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex._signing import generate_secret
from rex.changes import Changes
from rex.db.pagination import fetch_page
from rex.db.schema import deliveries, endpoints
from rex.delivery import service as delivery_service
from rex.errors import Conflict, Invalid, NotFound
from rex.events.types import check_subscribable
from rex.ids import new_id, rfc3339, utcnow
from rex.outbox import operator, ordering
from rex.outbox.catalogue import EventType
from rex.outbox.events import notify_queued, record_event
from rex.outbox.records import (
    PUBLIC_ENDPOINT_KINDS,
    DeliveryData,
    Endpoint,
    EndpointData,
    EndpointKind,
    EndpointWithSecretData,
    decode_custom_headers,
    encode_custom_headers,
)
from rex.webhooks.schemas import EndpointCreate, EndpointUpdate, Recovery, SecretRotation
from rex.worker.ssrf import DestinationPolicy, validate_endpoint_url

ROTATION_OVERLAP = timedelta(hours=24)
"""How long the previous secret keeps signing after a rotation."""


# The endpoints /webhooks shows: a user's own. Not `rex listen` sessions, nor Rex's own
# (kind `system`, with a SystemRole: a form's new-lead emails, the workspace's alerts), which
# stay out of its lists, reads, edits, deliveries and the per-workspace count.
_PUBLIC = sa.and_(
    endpoints.c.kind.in_([kind.value for kind in PUBLIC_ENDPOINT_KINDS]),
    endpoints.c.system_role.is_(None),
)


class RecoveryData(TypedDict):
    """What ``POST /webhooks/{id}/recover`` answers (``rex.webhooks.schemas.RecoveryResult``)."""

    endpoint_id: str
    since: str
    requeued: int


def serialize(row: Any) -> EndpointData:
    return Endpoint.from_row(row).public()


def serialize_with_secret(row: Any) -> EndpointWithSecretData:
    return Endpoint.from_row(row).with_secret()


def _check_url(url: str, policy: DestinationPolicy) -> None:
    problem = validate_endpoint_url(url, policy)
    if problem:
        raise Invalid("url", problem)


def _delivery_options(body: EndpointCreate) -> dict[str, object]:
    """The stored values of an endpoint's headers, rate limit and filter (issue 16)."""
    return {
        "headers": encode_custom_headers({k: v for k, v in (body.headers or {}).items() if v}),
        "rate_limit": body.rate_limit,
        # SQL NULL, not JSON null: "no filter" is what the claim and the outbox look for.
        "filter": sa.null() if body.filter is None else body.filter,
    }


def _changed_delivery_options(row: sa.Row[Any], changes: Changes) -> None:
    """A PATCH's headers merge into the stored ones (a null value removes that header,
    ``headers: null`` all of them); a changed rate limit starts with a fresh allowance."""
    if "headers" in changes:
        given = changes["headers"]
        if given is None:
            merged: dict[str, str] = {}
        else:
            merged = decode_custom_headers(row.headers)
            for name, value in given.items():
                for existing in [n for n in merged if n.lower() == name.lower()]:
                    del merged[existing]
                if value is not None:
                    merged[name] = value
        changes["headers"] = encode_custom_headers(merged)
    if "rate_limit" in changes:
        changes["rate_limited_until"] = None
    if "filter" in changes and changes["filter"] is None:
        changes["filter"] = sa.null()


async def fetch_row(
    conn: AsyncConnection, workspace_id: str, endpoint_id: str, *, for_update: bool = False
) -> sa.Row[Any]:
    query = sa.select(endpoints).where(
        endpoints.c.workspace_id == workspace_id,
        endpoints.c.id == endpoint_id,
        _PUBLIC,
    )
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound("webhook endpoint", endpoint_id)
    return row


async def create(
    conn: AsyncConnection,
    workspace_id: str,
    body: EndpointCreate,
    policy: DestinationPolicy,
    *,
    max_endpoints: int | None = None,
) -> EndpointWithSecretData:
    _check_url(body.url, policy)
    events = body.events if isinstance(body.events, list) else [body.events]
    await check_subscribable(conn, workspace_id, events)
    if max_endpoints is not None:
        count = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(endpoints)
                .where(
                    endpoints.c.workspace_id == workspace_id,
                    _PUBLIC,
                )
            )
        ).scalar_one()
        if count >= max_endpoints:
            raise Conflict(
                f"This workspace has {count} webhook endpoints, the most it may have "
                f"(REX_MAX_ENDPOINTS_PER_WORKSPACE={max_endpoints}); delete one first.",
            )
    now = utcnow()
    values = {
        "id": new_id("wh"),
        "workspace_id": workspace_id,
        "url": body.url,
        "events": body.events,
        "description": body.description,
        "secret": body.secret or generate_secret(),
        "enabled": True,
        "max_concurrency": body.max_concurrency,
        "ordering": body.ordering,
        "kind": EndpointKind.WEBHOOK.value,
        **_delivery_options(body),
        "created_at": now,
        "updated_at": now,
    }
    row = (await conn.execute(sa.insert(endpoints).values(values).returning(endpoints))).one()
    return serialize_with_secret(row)


async def get(conn: AsyncConnection, workspace_id: str, endpoint_id: str) -> EndpointData:
    return serialize(await fetch_row(conn, workspace_id, endpoint_id))


async def list_page(
    conn: AsyncConnection, workspace_id: str, *, limit: int, cursor: str | None
) -> tuple[list[EndpointData], str | None]:
    query = sa.select(endpoints).where(endpoints.c.workspace_id == workspace_id, _PUBLIC)
    rows, next_cursor = await fetch_page(conn, query, endpoints.c.id, limit=limit, cursor=cursor)
    return [serialize(row) for row in rows], next_cursor


async def update(
    conn: AsyncConnection,
    workspace_id: str,
    endpoint_id: str,
    body: EndpointUpdate,
    policy: DestinationPolicy,
) -> EndpointData:
    row = await fetch_row(conn, workspace_id, endpoint_id, for_update=True)
    changes = body.model_dump(exclude_unset=True)
    for field in ("url", "events", "enabled", "max_concurrency", "ordering"):
        if field in changes and changes[field] is None:
            raise Invalid(field, f"{field} cannot be null.")
    if "url" in changes:
        _check_url(changes["url"], policy)
    if changes.get("events"):
        await check_subscribable(conn, workspace_id, changes["events"])
    _changed_delivery_options(row, changes)
    if changes.get("enabled") is True and not row.enabled:
        # Re-enabling starts a fresh health record.
        changes.update(disabled_reason=None, failing_since=None)
        if await ordering.reactivate(conn, endpoint_id, now=utcnow()):
            await notify_queued(conn)
    if changes.get("ordering", row.ordering) != row.ordering:
        # Deliveries already queued go out unordered; the new ordering applies from now on.
        await ordering.release(conn, endpoint_id, now=utcnow())
        await notify_queued(conn)
    if changes:
        row = (
            await conn.execute(
                sa.update(endpoints)
                .where(endpoints.c.id == endpoint_id)
                .values({**changes, "updated_at": utcnow()})
                .returning(endpoints)
            )
        ).one()
    return serialize(row)


async def delete(conn: AsyncConnection, workspace_id: str, endpoint_id: str) -> None:
    await fetch_row(conn, workspace_id, endpoint_id, for_update=True)
    await operator.delete_endpoints(conn, [endpoint_id])


async def send_test(conn: AsyncConnection, workspace_id: str, endpoint_id: str) -> DeliveryData:
    """Queue a ``webhook.test`` event for this endpoint alone; returns its delivery."""
    row = await fetch_row(conn, workspace_id, endpoint_id)
    if not row.enabled:
        raise Conflict("This endpoint is disabled; enable it (PATCH enabled=true) before testing.")
    now = utcnow()
    event_id = await record_event(
        conn,
        workspace_id=workspace_id,
        event_type=EventType.WEBHOOK_TEST,
        data={
            "endpoint_id": endpoint_id,
            "message": "This is a test event from Rex. Your endpoint received it.",
        },
        object_id=endpoint_id,
        now=now,
        only_endpoint_id=endpoint_id,
    )
    delivery_id = (
        await conn.execute(sa.select(deliveries.c.id).where(deliveries.c.event_id == event_id))
    ).scalar_one()
    return await delivery_service.get(conn, workspace_id, delivery_id)


async def rotate_secret(
    conn: AsyncConnection,
    workspace_id: str,
    endpoint_id: str,
    body: SecretRotation,
    *,
    now: datetime,
) -> EndpointWithSecretData:
    """Replace the secret; the current one keeps signing for ``ROTATION_OVERLAP``.

    Every delivery made meanwhile carries one ``v1=`` per secret, the new one first. A
    rotation during another's overlap drops the oldest secret at once (two sign at most).
    """
    row = await fetch_row(conn, workspace_id, endpoint_id, for_update=True)
    secret = body.secret or generate_secret()
    if secret == row.secret:
        raise Invalid("secret", "The new secret must differ from the current one.")
    row = (
        await conn.execute(
            sa.update(endpoints)
            .where(endpoints.c.id == endpoint_id)
            .values(
                secret=secret,
                previous_secret=row.secret,
                previous_secret_expires_at=now + ROTATION_OVERLAP,
                updated_at=now,
            )
            .returning(endpoints)
        )
    ).one()
    return serialize_with_secret(row)


async def list_deliveries(
    conn: AsyncConnection,
    workspace_id: str,
    endpoint_id: str,
    *,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[DeliveryData], str | None]:
    await fetch_row(conn, workspace_id, endpoint_id)
    return await delivery_service.page(
        conn, workspace_id, endpoint_id=endpoint_id, status=status, limit=limit, cursor=cursor
    )


async def recover(
    conn: AsyncConnection, workspace_id: str, endpoint_id: str, body: Recovery
) -> RecoveryData:
    """Re-queue every failed delivery of the endpoint created since ``body.since``."""
    row = await fetch_row(conn, workspace_id, endpoint_id)
    if not row.enabled:
        raise Conflict(
            "This endpoint is disabled; enable it (PATCH enabled=true) before recovering "
            "its failed deliveries.",
        )
    now = utcnow()
    requeued = await operator.requeue_failed_since(
        conn, endpoint_id=endpoint_id, since=body.since, now=now
    )
    return {"endpoint_id": endpoint_id, "since": rfc3339(body.since), "requeued": requeued}

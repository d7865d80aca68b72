"""The transactional outbox and the delivery queue: every SQL statement that moves an event
from "committed" to "delivered" lives here, so it can be reviewed in one place.

Lifecycle of a delivery row::

    pending --claim (lease)--> pending + leased --attempt--> delivered
                                                 \\--------> pending (next_attempt_at later)
                                                  \\-------> failed (schedule exhausted, 410)

A lease is ``leased_by`` + ``lease_expires_at``. A row whose lease has expired is due again,
which is how a crashed worker's deliveries are taken over. Completing an attempt only touches
a row still leased by the same worker, so a worker that lost its lease cannot overwrite the
newer owner's outcome (it may have delivered a duplicate: delivery is at-least-once).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.engine import QUEUED_FLAG
from rex.db.schema import attempts, deliveries, endpoints, events
from rex.events.catalogue import matches
from rex.ids import new_id, rfc3339

NOTIFY_CHANNEL = "rex_deliveries"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class EndpointKind(StrEnum):
    """Who sends an endpoint's deliveries: the delivery workers (``webhook``), or the API
    process streaming them to a connected ``rex listen`` (``listen``)."""

    WEBHOOK = "webhook"
    LISTEN = "listen"


@dataclass(frozen=True)
class ClaimedDelivery:
    """A due delivery this worker holds a lease on, with everything needed to send it."""

    id: str
    workspace_id: str
    endpoint_id: str
    event_id: str
    event_type: str
    attempt_count: int
    url: str
    secrets: tuple[str, ...]  # newest first: one v1= each
    payload: bytes


@dataclass(frozen=True)
class AttemptOutcome:
    at: datetime
    status_code: int | None
    error: str | None
    latency_ms: int
    response_excerpt: str | None
    # What the delivery becomes: delivered, failed, or pending again at next_attempt_at.
    status: DeliveryStatus
    next_attempt_at: datetime | None

    @property
    def succeeded(self) -> bool:
        return self.status is DeliveryStatus.DELIVERED


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def record_event(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    event_type: str,
    data: dict[str, Any],
    object_id: str | None,
    now: datetime,
    previous_attributes: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    only_endpoint_id: str | None = None,
) -> str:
    """Write an event and one pending delivery per matching enabled endpoint.

    Runs inside the caller's transaction, next to the data change that caused the event, so
    both commit or neither does. ``only_endpoint_id`` targets one endpoint regardless of its
    filter (``webhook.test``). Returns the event id.
    """
    event_id = new_id("evt")
    envelope: dict[str, Any] = {
        "id": event_id,
        "event": event_type,
        "timestamp": rfc3339(now),
        "data": data,
    }
    if previous_attributes is not None:
        envelope["previous_attributes"] = previous_attributes
    if extra:
        envelope.update(extra)
    await conn.execute(
        sa.insert(events).values(
            id=event_id,
            workspace_id=workspace_id,
            type=event_type,
            object_id=object_id,
            payload=_dumps(envelope),
            created_at=now,
        )
    )
    query = sa.select(endpoints.c.id, endpoints.c.events).where(
        endpoints.c.workspace_id == workspace_id, endpoints.c.enabled.is_(True)
    )
    if only_endpoint_id is not None:
        query = query.where(endpoints.c.id == only_endpoint_id)
    targets = [
        row.id
        for row in await conn.execute(query)
        if only_endpoint_id is not None or matches(row.events, event_type)
    ]
    if targets:
        await conn.execute(
            sa.insert(deliveries),
            [
                {
                    "id": new_id("dlv"),
                    "workspace_id": workspace_id,
                    "endpoint_id": endpoint_id,
                    "event_id": event_id,
                    "event_type": event_type,
                    "status": DeliveryStatus.PENDING.value,
                    "attempt_count": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for endpoint_id in targets
            ],
        )
        await _notify(conn)
    return event_id


async def _notify(conn: AsyncConnection) -> None:
    """Wake idle workers when this transaction commits.

    On PostgreSQL, NOTIFY is delivered at commit (and dropped on rollback); it is only a hint,
    polling is the safety net. In-process workers are woken by ``Database`` after commit.
    """
    conn.info[QUEUED_FLAG] = True
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text(f"NOTIFY {NOTIFY_CHANNEL}"))


def _due_clause(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        deliveries.c.status == DeliveryStatus.PENDING.value,
        deliveries.c.next_attempt_at <= now,
        sa.or_(deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at <= now),
    )


async def claim_due_deliveries(
    conn: AsyncConnection,
    *,
    worker_id: str,
    now: datetime,
    lease: float,
    limit: int,
    endpoint_kind: EndpointKind = EndpointKind.WEBHOOK,
    endpoint_id: str | None = None,
) -> list[ClaimedDelivery]:
    """Lease up to ``limit`` due deliveries of enabled endpoints to ``worker_id``.

    Only endpoints of ``endpoint_kind`` (workers: ``webhook``; a ``rex listen`` stream:
    ``listen``, see ``claim_listen_deliveries``), and only ``endpoint_id`` when given.

    Concurrency: on PostgreSQL the inner SELECT locks the chosen rows ``FOR UPDATE SKIP
    LOCKED``, so concurrent workers each get disjoint rows without waiting on each other, and
    the UPDATE sets the lease before the locks are released at commit; a row is therefore held
    by at most one live lease. On SQLite the whole transaction holds the database write lock
    (``BEGIN IMMEDIATE``), which serialises claims outright.
    """
    candidates = (
        sa.select(deliveries.c.id)
        .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
        .where(
            _due_clause(now),
            endpoints.c.enabled.is_(True),
            endpoints.c.kind == endpoint_kind.value,
        )
        .order_by(deliveries.c.next_attempt_at)
        .limit(limit)
    )
    if endpoint_id is not None:
        candidates = candidates.where(deliveries.c.endpoint_id == endpoint_id)
    if conn.dialect.name == "postgresql":
        candidates = candidates.with_for_update(of=deliveries, skip_locked=True)
    claimed_ids = (
        (
            await conn.execute(
                sa.update(deliveries)
                .where(deliveries.c.id.in_(candidates.scalar_subquery()))
                .values(leased_by=worker_id, lease_expires_at=now + timedelta(seconds=lease))
                .returning(deliveries.c.id)
            )
        )
        .scalars()
        .all()
    )
    if not claimed_ids:
        return []
    rows = await conn.execute(
        sa.select(
            deliveries.c.id,
            deliveries.c.workspace_id,
            deliveries.c.endpoint_id,
            deliveries.c.event_id,
            deliveries.c.event_type,
            deliveries.c.attempt_count,
            endpoints.c.url,
            endpoints.c.secret,
            endpoints.c.previous_secret,
            endpoints.c.previous_secret_expires_at,
            events.c.payload,
        )
        .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
        .join(events, events.c.id == deliveries.c.event_id)
        .where(deliveries.c.id.in_(claimed_ids))
    )
    claimed = []
    for row in rows:
        secrets = [row.secret]
        expires = row.previous_secret_expires_at
        if row.previous_secret and expires is not None and expires > now:
            secrets.append(row.previous_secret)
        claimed.append(
            ClaimedDelivery(
                id=row.id,
                workspace_id=row.workspace_id,
                endpoint_id=row.endpoint_id,
                event_id=row.event_id,
                event_type=row.event_type,
                attempt_count=row.attempt_count,
                url=row.url,
                secrets=tuple(secrets),
                payload=row.payload.encode("utf-8"),
            )
        )
    return claimed


async def next_due_at(
    conn: AsyncConnection, now: datetime, endpoint_kind: EndpointKind = EndpointKind.WEBHOOK
) -> datetime | None:
    """When the earliest pending, unleased delivery of an enabled endpoint becomes due.

    Only endpoints of ``endpoint_kind``: the deliveries of a disconnected ``rex listen``
    session stay due until it reconnects, and must not keep the workers awake.
    """
    lease_free = sa.or_(
        deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at <= now
    )
    query = (
        sa.select(sa.func.min(deliveries.c.next_attempt_at))
        .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
        .where(
            deliveries.c.status == DeliveryStatus.PENDING.value,
            lease_free,
            endpoints.c.enabled.is_(True),
            endpoints.c.kind == endpoint_kind.value,
        )
    )
    value = (await conn.execute(query)).scalar()
    if isinstance(value, str):  # SQLite's min() loses the column type
        value = datetime.fromisoformat(value).replace(tzinfo=now.tzinfo)
    return value  # type: ignore[no-any-return]


async def claim_listen_deliveries(
    conn: AsyncConnection,
    *,
    endpoint_id: str,
    worker_id: str,
    now: datetime,
    lease: float,
    max_in_flight: int,
) -> list[ClaimedDelivery]:
    """Lease due deliveries of one ``rex listen`` session to the stream serving it.

    The stream sends each one to the CLI, which posts it to the local URL and reports the
    outcome; ``record_attempts`` with the same ``worker_id`` (the stream's lease token) then
    stores it, exactly as for a worker. At most ``max_in_flight`` deliveries are leased to
    the stream at once, so a slow local server is not buried under deliveries whose leases
    would expire (and be sent twice) before it gets to them.

    Concurrency: the claim itself is ``claim_due_deliveries`` restricted to this endpoint,
    so it is as safe (``FOR UPDATE SKIP LOCKED`` and a lease; SQLite's write lock). Two
    streams of one session (a reconnect racing the stream it replaces) get disjoint rows;
    the in-flight count only reads this stream's own leases.
    """
    in_flight = (
        await conn.execute(
            sa.select(sa.func.count())
            .select_from(deliveries)
            .where(
                deliveries.c.endpoint_id == endpoint_id,
                deliveries.c.leased_by == worker_id,
                deliveries.c.lease_expires_at > now,
            )
        )
    ).scalar_one()
    free = max_in_flight - in_flight
    if free <= 0:
        return []
    return await claim_due_deliveries(
        conn,
        worker_id=worker_id,
        now=now,
        lease=lease,
        limit=free,
        endpoint_kind=EndpointKind.LISTEN,
        endpoint_id=endpoint_id,
    )


async def release_endpoint_leases(
    conn: AsyncConnection, *, endpoint_id: str, worker_id: str | None = None
) -> int:
    """Free the leases on one endpoint's deliveries (only ``worker_id``'s when given).

    Used when a ``rex listen`` stream ends or is replaced: what it was sent but never
    reported is due again at once for the next stream, instead of after the lease. If the
    old CLI does report later, its attempt is recorded but no longer moves the row (see
    ``record_attempts``): at worst one duplicate, as delivery is at-least-once anyway.
    """
    query = sa.update(deliveries).where(
        deliveries.c.endpoint_id == endpoint_id, deliveries.c.leased_by.is_not(None)
    )
    if worker_id is not None:
        query = query.where(deliveries.c.leased_by == worker_id)
    result = await conn.execute(query.values(leased_by=None, lease_expires_at=None))
    return result.rowcount


async def record_attempts(
    conn: AsyncConnection,
    *,
    worker_id: str,
    results: Sequence[tuple[ClaimedDelivery, AttemptOutcome]],
) -> int:
    """Store attempts and move their deliveries on; returns how many rows this worker still
    held (a row whose lease was taken over keeps the new owner's state; its attempt is still
    recorded, because it happened)."""
    if not results:
        return 0
    await conn.execute(
        sa.insert(attempts),
        [
            {
                "id": new_id("att"),
                "delivery_id": delivery.id,
                "at": outcome.at,
                "status_code": outcome.status_code,
                "error": outcome.error,
                "latency_ms": outcome.latency_ms,
                "response_excerpt": outcome.response_excerpt,
            }
            for delivery, outcome in results
        ],
    )
    held = 0
    for delivery, outcome in results:
        updated = await conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id == delivery.id, deliveries.c.leased_by == worker_id)
            .values(
                status=outcome.status.value,
                attempt_count=deliveries.c.attempt_count + 1,
                next_attempt_at=outcome.next_attempt_at,
                last_attempt_at=outcome.at,
                leased_by=None,
                lease_expires_at=None,
                updated_at=outcome.at,
            )
        )
        held += updated.rowcount
    await _record_endpoint_health(conn, results)
    return held


async def _record_endpoint_health(
    conn: AsyncConnection, results: Iterable[tuple[ClaimedDelivery, AttemptOutcome]]
) -> None:
    succeeded: dict[str, datetime] = {}
    failed: dict[str, datetime] = {}
    for delivery, outcome in results:
        target = succeeded if outcome.succeeded else failed
        previous = target.get(delivery.endpoint_id)
        target[delivery.endpoint_id] = max(previous, outcome.at) if previous else outcome.at
    for endpoint_id, at in succeeded.items():
        await conn.execute(
            sa.update(endpoints)
            .where(endpoints.c.id == endpoint_id)
            .values(last_success_at=at, failing_since=None)
        )
    for endpoint_id, at in failed.items():
        if endpoint_id in succeeded:
            continue
        await conn.execute(
            sa.update(endpoints)
            .where(endpoints.c.id == endpoint_id, endpoints.c.failing_since.is_(None))
            .values(failing_since=at)
        )


async def release_all_leases(conn: AsyncConnection) -> int:
    """Single-worker start-up (SQLite): nothing else can be holding a lease, so free them."""
    result = await conn.execute(
        sa.update(deliveries)
        .where(deliveries.c.leased_by.is_not(None))
        .values(leased_by=None, lease_expires_at=None)
    )
    return result.rowcount

"""Ordered delivery: an endpoint's deliveries sent one at a time per group, in queue order.

An endpoint's ``ordering`` is ``none`` (the default: every due delivery may go at once, up
to ``max_concurrency``), ``endpoint`` (one group: the whole endpoint) or ``object`` (one
group per object id of the event: a contact's events in order, different contacts in
parallel). An ordered delivery carries its group (``ordering_key``) and its place in the
endpoint's queue (``sequence``).

How the order holds. Only a group's *head* (its pending delivery with the smallest
sequence) is ever due: the others wait *parked*, pending with ``next_attempt_at`` NULL,
which the claim never picks (its due condition is ``next_attempt_at <= now``). So the claim,
its leases and its ``FOR UPDATE SKIP LOCKED`` are the same for every endpoint, and the
unordered path costs nothing more. When the head is delivered or fails for good,
``record_attempts`` activates the next one (``activate_heads``). A head whose attempt fails
stays the head (pending, due at its next retry); a head held by a worker that died stays
leased until the lease expires, then is claimed again. Nothing behind it moves meanwhile.

Concurrency. Queueing an ordered delivery takes its sequence from the endpoint row
(``UPDATE .. SET last_sequence = last_sequence + 1``), which locks that row until commit:
sequences are given in commit order, and two transactions queueing for one ordered endpoint
take turns. Activating a head locks the same row first (``FOR NO KEY UPDATE``), and
each statement after the lock sees what the other transaction committed (READ COMMITTED):

- a worker finishing the head while the API queues a new delivery: whichever takes the lock
  second sees the other's work, so the new delivery is parked behind a head still pending,
  or becomes the head itself if the old one is done; never parked behind nothing;
- the claim skips an endpoint row locked this way (``SKIP LOCKED``) and takes it at its
  next cycle. On SQLite every write transaction holds the database lock anyway;
- lock order: whoever writes an ordered endpoint's deliveries locks the endpoint row first
  (``record_attempts`` too, before storing outcomes), so no two transactions wait on each
  other in a cycle; and activating a head never waits on a row in flight (it only touches a
  parked row, which no worker holds).

Manual retries (``requeue``) put a delivery at the *back* of its group's queue with a new
sequence: a delivery that failed for good has already let the ones behind it go, so
re-sending it must not stall them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.schema import deliveries, endpoints, events
from rex.db.types import UTCDateTime
from rex.outbox.records import DeliveryStatus

ENDPOINT_GROUP = "*"
"""The ``ordering_key`` of every delivery of an endpoint ordered as a whole."""


class Ordering(StrEnum):
    NONE = "none"
    ENDPOINT = "endpoint"
    OBJECT = "object"


def ordering_key(ordering: str | None, object_id: str | None) -> str | None:
    """The group a delivery is ordered in, or None when it is not ordered (``none``, or an
    ``object``-ordered endpoint's event that is about no object)."""
    if ordering == Ordering.ENDPOINT:
        return ENDPOINT_GROUP
    if ordering == Ordering.OBJECT:
        return object_id
    return None


_TAKE_SEQUENCES = (
    sa.update(endpoints)
    .where(endpoints.c.id == sa.bindparam("sequence_endpoint"))
    .values(last_sequence=endpoints.c.last_sequence + sa.bindparam("count"))
    .returning(endpoints.c.last_sequence)
)


async def take_sequences(conn: AsyncConnection, endpoint_id: str, count: int) -> int:
    """Reserve ``count`` places in an ordered endpoint's queue; returns the first. Locks the
    endpoint row until commit (see the module docstring)."""
    last = (
        await conn.execute(_TAKE_SEQUENCES, {"sequence_endpoint": endpoint_id, "count": count})
    ).scalar_one()
    return int(last) - count + 1


_LOCK_ENDPOINTS = (
    sa.select(endpoints.c.id)
    .where(endpoints.c.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(endpoints.c.id)
)
_LOCK_ENDPOINTS_POSTGRES = _LOCK_ENDPOINTS.with_for_update(key_share=True)

_group_pending = sa.and_(
    deliveries.c.endpoint_id == sa.bindparam("group_endpoint"),
    deliveries.c.ordering_key == sa.bindparam("group_key"),
    deliveries.c.status == DeliveryStatus.PENDING.value,
)
_HEAD = sa.select(deliveries.c.id).where(_group_pending).order_by(deliveries.c.sequence).limit(1)
# The head becomes due if it is parked; a head already due (or in flight) is left alone.
_ACTIVATE_HEAD = (
    sa.update(deliveries)
    .where(
        deliveries.c.id == _HEAD.scalar_subquery(),
        deliveries.c.status == DeliveryStatus.PENDING.value,
        deliveries.c.next_attempt_at.is_(None),
    )
    .values(
        next_attempt_at=sa.bindparam("activated_at", type_=UTCDateTime()),
        updated_at=sa.bindparam("activated_at", type_=UTCDateTime()),
    )
)


async def lock_endpoints(conn: AsyncConnection, endpoint_ids: Iterable[str]) -> None:
    """Lock endpoint rows (id order, so two transactions never wait on each other in a
    cycle) before reading or changing their ordered queues. A no-op on SQLite, where the
    write transaction holds the database lock."""
    ids = sorted(set(endpoint_ids))
    if ids and conn.dialect.name == "postgresql":
        await conn.execute(_LOCK_ENDPOINTS_POSTGRES, {"ids": ids})


async def activate_heads(
    conn: AsyncConnection, groups: Iterable[tuple[str, str]], *, now: datetime
) -> int:
    """Make each group's head due now if it is parked; returns how many became due. The
    caller holds the endpoints' locks (``lock_endpoints`` or ``take_sequences``)."""
    activated = 0
    for endpoint_id, key in sorted(set(groups)):
        result = await conn.execute(
            _ACTIVATE_HEAD, {"group_endpoint": endpoint_id, "group_key": key, "activated_at": now}
        )
        activated += result.rowcount
    return activated


async def advance(
    conn: AsyncConnection, finished: Iterable[tuple[str, str]], *, now: datetime
) -> int:
    """After heads were delivered or failed for good: let the next of each group go."""
    groups = set(finished)
    if not groups:
        return 0
    await lock_endpoints(conn, (endpoint_id for endpoint_id, _ in groups))
    return await activate_heads(conn, groups, now=now)


async def requeue_ordered(
    conn: AsyncConnection, endpoint_id: str, delivery_ids: Sequence[str], *, now: datetime
) -> int:
    """Put deliveries of an ordered endpoint (already finished, in the order given) back in
    its queue, at the back of their groups, and let any group that was idle go."""
    if not delivery_ids:
        return 0
    ordering = (
        await conn.execute(sa.select(endpoints.c.ordering).where(endpoints.c.id == endpoint_id))
    ).scalar_one()
    objects = dict(
        (
            await conn.execute(
                sa.select(deliveries.c.id, events.c.object_id)
                .join(events, events.c.id == deliveries.c.event_id)
                .where(deliveries.c.id.in_(delivery_ids))
            )
        ).all()
    )
    first = await take_sequences(conn, endpoint_id, len(delivery_ids))
    groups: set[tuple[str, str]] = set()
    for offset, delivery_id in enumerate(delivery_ids):
        key = ordering_key(ordering, objects.get(delivery_id))
        if key is not None:
            groups.add((endpoint_id, key))
        await conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id == delivery_id)
            .values(
                status=DeliveryStatus.PENDING.value,
                sequence=first + offset if key is not None else None,
                ordering_key=key,
                next_attempt_at=None if key is not None else now,
                updated_at=now,
            )
        )
    await activate_heads(conn, groups, now=now)
    return len(delivery_ids)


async def release(conn: AsyncConnection, endpoint_id: str, *, now: datetime) -> int:
    """The endpoint's ordering changed: its queued deliveries go out unordered (the new
    ordering applies to deliveries queued from now on). One in flight keeps its group until
    it is recorded (its row is the worker's to write); it is its group's head already."""
    result = await conn.execute(
        sa.update(deliveries)
        .where(
            deliveries.c.endpoint_id == endpoint_id,
            deliveries.c.status == DeliveryStatus.PENDING.value,
            deliveries.c.ordering_key.is_not(None),
            sa.or_(
                deliveries.c.leased_by.is_(None),
                deliveries.c.lease_expires_at <= sa.literal(now, UTCDateTime()),
            ),
        )
        .values(
            ordering_key=None,
            sequence=None,
            next_attempt_at=sa.func.coalesce(
                deliveries.c.next_attempt_at, sa.literal(now, UTCDateTime())
            ),
            updated_at=now,
        )
    )
    return result.rowcount


async def reactivate(conn: AsyncConnection, endpoint_id: str, *, now: datetime) -> int:
    """Make sure every ordered group of the endpoint has its head due (an endpoint
    re-enabled after retention pruned the oldest deliveries it held while disabled). The
    caller holds the endpoint's lock."""
    keys = (
        (
            await conn.execute(
                sa.select(deliveries.c.ordering_key)
                .where(
                    deliveries.c.endpoint_id == endpoint_id,
                    deliveries.c.status == DeliveryStatus.PENDING.value,
                    deliveries.c.ordering_key.is_not(None),
                )
                .distinct()
            )
        )
        .scalars()
        .all()
    )
    return await activate_heads(conn, ((endpoint_id, key) for key in keys if key), now=now)

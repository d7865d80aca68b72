"""The delivery queue: claiming due deliveries under a lease, when the next one is due, and
freeing leases. Each statement says why it is safe when several workers (or ``rex listen``
streams) run it at once.
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.schema import deliveries, endpoints, events
from rex.db.types import UTCDateTime
from rex.outbox.records import (
    ClaimedDelivery,
    DeliveryStatus,
    EndpointKind,
    claimed_kinds,
    decode_custom_headers,
)

# "Now" in a condition: a value, or the bind parameter of a statement built once.
Now = datetime | sa.BindParameter[datetime]
_NOW = sa.bindparam("now", type_=UTCDateTime())


def lease_free(now: Now) -> sa.ColumnElement[bool]:
    return sa.or_(deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at <= now)


def _due_clause(now: Now) -> sa.ColumnElement[bool]:
    return sa.and_(
        deliveries.c.status == DeliveryStatus.PENDING.value,
        deliveries.c.next_attempt_at <= now,
        lease_free(now),
    )


def _in_flight(endpoint_id: sa.ColumnElement[str], now: Now) -> sa.ScalarSelect[int]:
    """How many deliveries of ``endpoint_id`` are leased right now (attempts in flight, or
    held by a worker that died and whose lease has not expired yet)."""
    return (
        sa.select(sa.func.count())
        .select_from(deliveries)
        .where(
            deliveries.c.endpoint_id == endpoint_id,
            deliveries.c.leased_by.is_not(None),
            deliveries.c.lease_expires_at > now,
        )
        .scalar_subquery()
    )


def _earliest(
    endpoint_id: sa.ColumnElement[str], condition: sa.ColumnElement[bool]
) -> sa.ScalarSelect[datetime]:
    """The earliest ``next_attempt_at`` of the endpoint's pending rows meeting ``condition``.

    ``ORDER BY .. LIMIT 1`` rather than ``min()``: both databases then walk the endpoint's
    due index in order and stop at the first row that meets ``condition``, where ``min()``
    with a condition outside the index reads every pending row of the endpoint (a backlog
    of thousands made each claim several milliseconds slower).
    """
    return (
        sa.select(deliveries.c.next_attempt_at)
        .where(
            deliveries.c.endpoint_id == endpoint_id,
            deliveries.c.status == DeliveryStatus.PENDING.value,
            condition,
        )
        .order_by(deliveries.c.next_attempt_at)
        .limit(1)
        .scalar_subquery()
    )


# -- the per-endpoint rate limit -------------------------------------------------------------
#
# An endpoint's ``rate_limit`` (deliveries per second) holds across every worker: its state
# is one column of the endpoint row, ``rate_limited_until``, and only the holder of the
# endpoint's claim lock (FOR NO KEY UPDATE on PostgreSQL, the write lock on SQLite) reads
# and moves it. A claim hands out send slots one interval (1 / rate_limit) apart, the first
# no earlier than the previous claim's last slot + one interval, none further than
# RATE_HORIZON ahead of now; each claimed delivery carries its slot (``send_at``) and the
# sender waits for it. ``rate_limited_until`` is the next free slot minus RATE_HORIZON: the
# time from which a claim may take a slot again (``next_due_at`` wakes workers then). So
# slots never come closer than one interval, whichever worker takes them, and any second
# holds at most ``rate_limit`` of them. Deliveries left over stay pending, due, and are
# claimed when the endpoint has slots again. The horizon is short so that a sender stalled
# past its slots (a paused process) has few of them in hand: they would go out late
# together, up to rate_limit x RATE_HORIZON at once; a longer one would save claims.
RATE_HORIZON = timedelta(milliseconds=200)


def _rate_slot_free(now: Now) -> sa.ColumnElement[bool]:
    return sa.or_(
        endpoints.c.rate_limit.is_(None),
        endpoints.c.rate_limited_until.is_(None),
        endpoints.c.rate_limited_until <= now,
    )


def _when_claimable(earliest: sa.ColumnElement[datetime]) -> sa.ColumnElement[datetime]:
    """The earliest due time, or later when the endpoint's rate limit holds it back."""
    return sa.case(
        (
            sa.and_(
                endpoints.c.rate_limit.is_not(None),
                endpoints.c.rate_limited_until > earliest,
            ),
            endpoints.c.rate_limited_until,
        ),
        else_=earliest,
    )


_RATE_STATE = sa.select(
    endpoints.c.id, endpoints.c.rate_limit, endpoints.c.rate_limited_until
).where(endpoints.c.id.in_(sa.bindparam("endpoint_ids", expanding=True)))
_SET_RATE_STATE = (
    sa.update(endpoints)
    .where(endpoints.c.id == sa.bindparam("endpoint_id"))
    .values(rate_limited_until=sa.bindparam("until", type_=UTCDateTime()))
)


def _rate_slots(
    rate_limit: int, limited_until: datetime | None, now: datetime, room: int
) -> tuple[datetime, int]:
    """The first send slot an endpoint may use now, and how many slots (at most ``room``)
    fall within the horizon."""
    interval = timedelta(seconds=1 / rate_limit)
    first = max(now, limited_until + RATE_HORIZON) if limited_until is not None else now
    horizon = now + RATE_HORIZON
    slots = 0
    while slots < room and first + slots * interval < horizon:
        slots += 1
    return first, slots


async def _rate_room(
    conn: AsyncConnection, limited: list[str], now: datetime, room: dict[str, int]
) -> dict[str, tuple[datetime, timedelta]]:
    """Cut ``room`` to the rate-limited endpoints' free slots; their first slot and
    interval. A new statement, after the lock: it reads the state the previous lock holder
    committed (READ COMMITTED), as the lease count does."""
    schedule: dict[str, tuple[datetime, timedelta]] = {}
    for row in await conn.execute(_RATE_STATE, {"endpoint_ids": limited}):
        if row.rate_limit is None or row.id not in room:
            continue
        first, slots = _rate_slots(row.rate_limit, row.rate_limited_until, now, room[row.id])
        room[row.id] = slots
        schedule[row.id] = (first, timedelta(seconds=1 / row.rate_limit))
    return schedule


async def _take_rate_slots(
    conn: AsyncConnection,
    schedule: dict[str, tuple[datetime, timedelta]],
    claimed: list[ClaimedDelivery],
) -> list[ClaimedDelivery]:
    """Give each claimed delivery of a rate-limited endpoint its slot, in claim order, and
    move the endpoints' state past the slots taken."""
    taken: dict[str, int] = {}
    timed = []
    for delivery in claimed:
        if delivery.endpoint_id not in schedule:
            timed.append(delivery)
            continue
        first, interval = schedule[delivery.endpoint_id]
        n = taken.get(delivery.endpoint_id, 0)
        taken[delivery.endpoint_id] = n + 1
        timed.append(dataclasses.replace(delivery, send_at=first + n * interval))
    for endpoint_id, count in taken.items():
        first, interval = schedule[endpoint_id]
        next_slot = first + count * interval
        await conn.execute(
            _SET_RATE_STATE, {"endpoint_id": endpoint_id, "until": next_slot - RATE_HORIZON}
        )
    return timed


# The claim's statements, built once (``now`` and the rest are bound parameters): building
# them anew on every cycle cost more than running them (about 1.5 ms a cycle in a profile).
@functools.cache
def _claim_candidates(dialect: str, *, with_endpoint: bool) -> sa.Select[Any]:
    """The endpoints with due deliveries and room, oldest due first (see below)."""
    oldest_due = _earliest(
        endpoints.c.id, sa.and_(deliveries.c.next_attempt_at <= _NOW, lease_free(_NOW))
    )
    candidates = (
        sa.select(endpoints.c.id, endpoints.c.max_concurrency, endpoints.c.rate_limit)
        .where(
            endpoints.c.enabled.is_(True),
            endpoints.c.kind.in_([sa.bindparam("kind"), sa.bindparam("also_kind")]),
            oldest_due.is_not(None),
            _in_flight(endpoints.c.id, _NOW) < endpoints.c.max_concurrency,
            _rate_slot_free(_NOW),
        )
        # The endpoint that has waited longest first, so every endpoint gets its turn.
        .order_by(oldest_due, endpoints.c.id)
        .limit(sa.bindparam("limit"))
    )
    if with_endpoint:
        candidates = candidates.where(endpoints.c.id == sa.bindparam("endpoint_id"))
    if dialect == "postgresql":
        candidates = candidates.with_for_update(of=endpoints, skip_locked=True, key_share=True)
    return candidates


_LEASED_NOW = (
    sa.select(deliveries.c.endpoint_id, sa.func.count().label("leased"))
    .where(
        deliveries.c.endpoint_id.in_(sa.bindparam("endpoint_ids", expanding=True)),
        deliveries.c.leased_by.is_not(None),
        deliveries.c.lease_expires_at > _NOW,
    )
    .group_by(deliveries.c.endpoint_id)
)


@functools.lru_cache(maxsize=64)
def _oldest_due(endpoint_count: int) -> sa.CompoundSelect[Any]:
    """The oldest due rows of ``endpoint_{n}``, at most ``slots_{n}`` each."""
    parts = [
        sa.select(
            deliveries.c.id,
            deliveries.c.endpoint_id,
            deliveries.c.next_attempt_at,
            deliveries.c.workspace_id,
        )
        .where(deliveries.c.endpoint_id == sa.bindparam(f"endpoint_{n}"), _due_clause(_NOW))
        # In index order only (no tie-break on id), so the scan stops after `slots` rows.
        .order_by(deliveries.c.next_attempt_at)
        .limit(sa.bindparam(f"slots_{n}"))
        .subquery()
        for n in range(endpoint_count)
    ]
    return sa.union_all(*(sa.select(part) for part in parts))


_LEASE = (
    sa.update(deliveries)
    .where(deliveries.c.id.in_(sa.bindparam("ids", expanding=True)), _due_clause(_NOW))
    .values(
        leased_by=sa.bindparam("worker_id"),
        lease_expires_at=sa.bindparam("lease_until", type_=UTCDateTime()),
    )
    .returning(deliveries.c.id)
)
_CLAIMED = (
    sa.select(
        deliveries.c.id,
        deliveries.c.workspace_id,
        deliveries.c.endpoint_id,
        deliveries.c.event_id,
        deliveries.c.event_type,
        deliveries.c.attempt_count,
        deliveries.c.ordering_key,
        endpoints.c.url,
        endpoints.c.secret,
        endpoints.c.previous_secret,
        endpoints.c.previous_secret_expires_at,
        endpoints.c.headers,
        events.c.payload,
    )
    .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
    .join(events, events.c.id == deliveries.c.event_id)
    .where(deliveries.c.id.in_(sa.bindparam("ids", expanding=True)))
)
# Parked rows of ordered endpoints (next_attempt_at NULL, rex.outbox.ordering) are left out:
# they are not due until their group's head is done (and SQLite sorts NULL first). A
# rate-limited endpoint's rows count from its next free slot.
_NEXT_DUE = sa.select(
    sa.func.min(
        _when_claimable(
            _earliest(
                endpoints.c.id,
                sa.and_(deliveries.c.next_attempt_at.is_not(None), lease_free(_NOW)),
            )
        )
    )
).where(
    endpoints.c.enabled.is_(True),
    endpoints.c.kind.in_([sa.bindparam("kind"), sa.bindparam("also_kind")]),
    _in_flight(endpoints.c.id, _NOW) < endpoints.c.max_concurrency,
)


async def claim_due_deliveries(
    conn: AsyncConnection,
    *,
    worker_id: str,
    now: datetime,
    lease: float,
    limit: int,
    kind: EndpointKind = EndpointKind.WEBHOOK,
    endpoint_id: str | None = None,
) -> list[ClaimedDelivery]:
    """Lease up to ``limit`` due deliveries of enabled endpoints of ``kind`` to ``worker_id``,
    never more than an endpoint's ``max_concurrency`` in flight at once (across all workers),
    shared round-robin between endpoints so that one endpoint's backlog cannot take every slot.

    Only endpoints of ``kind`` (workers: ``webhook``; a ``rex listen`` stream: ``listen``,
    see ``claim_listen_deliveries``), and only ``endpoint_id`` when given.

    Concurrency. The unit of claiming is the endpoint:

    1. The endpoints with due deliveries and room are locked ``FOR NO KEY UPDATE SKIP LOCKED``
       on PostgreSQL. Two workers therefore never claim for the same endpoint at the same
       time: the second one skips it (it does not wait) and serves other endpoints.
       ``NO KEY UPDATE`` rather than ``UPDATE`` so that the API's inserts of new delivery
       rows, which take ``KEY SHARE`` on the endpoint through the foreign key, never block.
    2. Only then are the endpoint's leases counted, in a new statement: under READ COMMITTED
       it sees every lease committed by the previous holder of the endpoint lock, so
       ``in flight + claimed <= max_concurrency`` holds across workers.
    3. The UPDATE that sets the leases re-checks that each row is still due. PostgreSQL
       re-evaluates that condition on a row changed by a concurrent transaction (an old
       lease holder recording its attempt, an operator's retry), so a row is never leased
       twice. Leases are committed before the endpoint locks are released.

    On SQLite the whole transaction holds the database write lock (``BEGIN IMMEDIATE``),
    which serialises claims outright.
    """
    if limit <= 0:
        return []
    candidates = _claim_candidates(conn.dialect.name, with_endpoint=endpoint_id is not None)
    locked: dict[str, int] = {}
    rate_limited: list[str] = []
    for row in await conn.execute(
        candidates,
        {"now": now, **claimed_kinds(kind), "limit": limit, "endpoint_id": endpoint_id},
    ):
        locked[row.id] = row.max_concurrency
        if row.rate_limit is not None:
            rate_limited.append(row.id)
    if not locked:
        return []
    leased_now: dict[str, int] = {
        row.endpoint_id: row.leased
        for row in await conn.execute(_LEASED_NOW, {"endpoint_ids": list(locked), "now": now})
    }
    room = {
        endpoint_id: slots
        for endpoint_id, capacity in locked.items()
        if (slots := min(capacity - leased_now.get(endpoint_id, 0), limit)) > 0
    }
    schedule = await _rate_room(conn, rate_limited, now, room) if rate_limited else {}
    room = {endpoint_id: slots for endpoint_id, slots in room.items() if slots > 0}
    # Each endpoint's oldest due rows, at most its room, in one round trip.
    if not room:
        return []
    parameters: dict[str, Any] = {"now": now}
    for n, (endpoint_id, slots) in enumerate(room.items()):
        parameters[f"endpoint_{n}"] = endpoint_id
        parameters[f"slots_{n}"] = slots
    due = (await conn.execute(_oldest_due(len(room)), parameters)).all()
    # Round-robin between workspaces first (a tenant with many endpoints gets no more slots
    # than one with a single endpoint), then within a workspace between its endpoints:
    # every endpoint's oldest row, then every endpoint's second oldest...
    rank: dict[str, int] = {}
    per_workspace: dict[str, list[tuple[int, datetime, str]]] = {}
    for row in sorted(due, key=lambda r: (r.next_attempt_at, r.id)):
        rank[row.endpoint_id] = rank.get(row.endpoint_id, 0) + 1
        per_workspace.setdefault(row.workspace_id, []).append(
            (rank[row.endpoint_id], row.next_attempt_at, row.id)
        )
    ranked = [
        (turn, *row) for rows in per_workspace.values() for turn, row in enumerate(sorted(rows))
    ]
    chosen = [delivery_id for *_, delivery_id in sorted(ranked)[:limit]]
    claimed_ids = (
        (
            await conn.execute(
                _LEASE,
                {
                    "ids": chosen,
                    "now": now,
                    "worker_id": worker_id,
                    "lease_until": now + timedelta(seconds=lease),
                },
            )
        )
        .scalars()
        .all()
    )
    if not claimed_ids:
        return []
    rows = await conn.execute(_CLAIMED, {"ids": claimed_ids})
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
                ordering_key=row.ordering_key,
                headers=tuple(decode_custom_headers(row.headers).items()),
            )
        )
    position = {delivery_id: i for i, delivery_id in enumerate(chosen)}
    claimed.sort(key=lambda c: position[c.id])
    if schedule:
        claimed = await _take_rate_slots(conn, schedule, claimed)
    return claimed


async def next_due_at(
    conn: AsyncConnection, now: datetime, *, kind: EndpointKind = EndpointKind.WEBHOOK
) -> datetime | None:
    """When the earliest delivery that could be claimed becomes due: pending, not leased, of
    an enabled endpoint of ``kind`` with room under its concurrency limit.

    Endpoints at their limit are left out on purpose: their due rows cannot be claimed until
    an attempt finishes (which wakes the worker that made it; others find out by polling),
    so counting them would make an idle worker spin on rows it cannot take.
    """
    value = (await conn.execute(_NEXT_DUE, {"now": now, **claimed_kinds(kind)})).scalar()
    if isinstance(value, str):  # SQLite's min() loses the column type
        value = datetime.fromisoformat(value).replace(tzinfo=now.tzinfo)
    return value


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
        kind=EndpointKind.LISTEN,
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


async def release_all_leases(conn: AsyncConnection) -> int:
    """Single-worker start-up (SQLite): nothing else can be holding a lease, so free them."""
    result = await conn.execute(
        sa.update(deliveries)
        .where(deliveries.c.leased_by.is_not(None))
        .values(leased_by=None, lease_expires_at=None)
    )
    return result.rowcount


async def release_worker_leases(conn: AsyncConnection, worker_id: str) -> int:
    """A worker stopping cleanly frees the leases it still holds (attempts that did not
    finish in time), so another worker sends them now rather than after the lease expires.
    Safe under concurrency: only rows leased by ``worker_id`` match, and no other worker
    writes those while the lease holds."""
    result = await conn.execute(
        sa.update(deliveries)
        .where(deliveries.c.leased_by == worker_id)
        .values(leased_by=None, lease_expires_at=None)
    )
    return result.rowcount

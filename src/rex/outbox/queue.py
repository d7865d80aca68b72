"""The delivery queue: claiming due deliveries under a lease, when the next one is due, and
freeing leases. Each statement says why it is safe when several workers (or ``rex listen``
streams) run it at once. The statements themselves are in ``rex.outbox.claim_sql``, the
rate limit's slots in ``rex.outbox.ratelimit``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.schema import deliveries
from rex.outbox import claim_sql, ratelimit
from rex.outbox.claim_sql import lease_free
from rex.outbox.records import (
    ClaimedDelivery,
    EndpointKind,
    claimed_kinds,
    decode_custom_headers,
)

__all__ = [
    "claim_due_deliveries",
    "claim_listen_deliveries",
    "lease_free",
    "next_due_at",
    "release_all_leases",
    "release_endpoint_leases",
    "release_worker_leases",
]


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
    candidates = claim_sql.claim_candidates(
        conn.dialect.name, with_endpoint=endpoint_id is not None
    )
    locked: dict[str, int] = {}
    workspace_of: dict[str, str] = {}
    rate_limited: list[str] = []
    for row in await conn.execute(
        candidates,
        {"now": now, **claimed_kinds(kind), "limit": limit, "endpoint_id": endpoint_id},
    ):
        locked[row.id] = row.max_concurrency
        workspace_of[row.id] = row.workspace_id
        if row.rate_limit is not None:
            rate_limited.append(row.id)
    if not locked:
        return []
    leased_now: dict[str, int] = {
        row.endpoint_id: row.leased
        for row in await conn.execute(
            claim_sql.LEASED_NOW, {"endpoint_ids": list(locked), "now": now}
        )
    }
    room = {
        endpoint_id: slots
        for endpoint_id, capacity in locked.items()
        if (slots := min(capacity - leased_now.get(endpoint_id, 0), limit)) > 0
    }
    schedule = await ratelimit.rate_room(conn, rate_limited, now, room) if rate_limited else {}
    room = {endpoint_id: slots for endpoint_id, slots in room.items() if slots > 0}
    if not room:
        return []
    due = await _due_rows(conn, now, room, workspace_of, limit)
    chosen = _round_robin(due, limit)
    claimed_ids = (
        (
            await conn.execute(
                claim_sql.LEASE,
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
    rows = await conn.execute(claim_sql.CLAIMED, {"ids": claimed_ids})
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
        claimed = await ratelimit.take_rate_slots(conn, schedule, claimed)
    return claimed


async def _due_rows(
    conn: AsyncConnection,
    now: datetime,
    room: dict[str, int],
    workspace_of: dict[str, str],
    limit: int,
) -> list[Any]:
    """Each endpoint's oldest due rows: as many as ``_round_robin`` can pick from it.

    First at most the endpoint's fair share (``_fair_shares``), in one round trip: with
    many endpoints, fetching each one's whole room (up to ``limit`` rows each) read ten
    times the rows a claim takes (a profile of a fan-out to 10 endpoints spent most of the
    claim converting and sorting rows it then dropped). Only when an endpoint has fewer
    due rows than its share may the others take more: those that filled their share are
    read again up to their room, so the rows picked are those a full read would give.
    Read-only, under the endpoint locks the candidates statement took: as safe as before.
    """
    shares = _fair_shares(room, workspace_of, limit)
    due = await _oldest_due(conn, now, shares)
    counts: dict[str, int] = {}
    for row in due:
        counts[row.endpoint_id] = counts.get(row.endpoint_id, 0) + 1
    if all(counts.get(endpoint_id, 0) >= share for endpoint_id, share in shares.items()):
        return due
    more = {
        endpoint_id: room[endpoint_id]
        for endpoint_id, share in shares.items()
        if counts.get(endpoint_id, 0) >= share and share < room[endpoint_id]
    }
    if not more:
        return due
    again = await _oldest_due(conn, now, more)
    return [row for row in due if row.endpoint_id not in more] + again


async def _oldest_due(conn: AsyncConnection, now: datetime, slots: dict[str, int]) -> list[Any]:
    """Each endpoint's oldest due rows, at most ``slots[endpoint]``, in one round trip."""
    parameters: dict[str, Any] = {"now": now}
    for n, (endpoint_id, count) in enumerate(slots.items()):
        parameters[f"endpoint_{n}"] = endpoint_id
        parameters[f"slots_{n}"] = count
    return list(await conn.execute(claim_sql.oldest_due(len(slots)), parameters))


def _fair_shares(room: dict[str, int], workspace_of: dict[str, str], limit: int) -> dict[str, int]:
    """The most rows ``_round_robin`` takes from each endpoint when every one has plenty:
    an equal part of ``limit`` per workspace, split equally between its endpoints (rounded
    up), and never more than the endpoint's room."""
    per_workspace: dict[str, list[str]] = {}
    for endpoint_id in room:
        per_workspace.setdefault(workspace_of[endpoint_id], []).append(endpoint_id)
    workspace_share = math.ceil(limit / len(per_workspace))
    shares = {}
    for endpoint_ids in per_workspace.values():
        share = math.ceil(workspace_share / len(endpoint_ids))
        for endpoint_id in endpoint_ids:
            shares[endpoint_id] = min(share, room[endpoint_id])
    return shares


def _round_robin(due: list[Any], limit: int) -> list[str]:
    """The ids of the ``limit`` rows to lease, in the order they are sent.

    Round-robin between workspaces first (a tenant with many endpoints gets no more slots
    than one with a single endpoint), then within a workspace between its endpoints:
    every endpoint's oldest row, then every endpoint's second oldest...
    """
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
    return [delivery_id for *_, delivery_id in sorted(ranked)[:limit]]


async def next_due_at(
    conn: AsyncConnection, now: datetime, *, kind: EndpointKind = EndpointKind.WEBHOOK
) -> datetime | None:
    """When the earliest delivery that could be claimed becomes due: pending, not leased, of
    an enabled endpoint of ``kind`` with room under its concurrency limit.

    Endpoints at their limit are left out on purpose: their due rows cannot be claimed until
    an attempt finishes (which wakes the worker that made it; others find out by polling),
    so counting them would make an idle worker spin on rows it cannot take.
    """
    value = (await conn.execute(claim_sql.NEXT_DUE, {"now": now, **claimed_kinds(kind)})).scalar()
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

"""The claim's SQL, built once (``now`` and the rest are bound parameters): building the
statements anew on every cycle cost more than running them (about 1.5 ms a cycle in a
profile). ``rex.outbox.queue`` runs them and says why each is safe with several workers.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rex.db.schema import deliveries, endpoints, events
from rex.db.types import UTCDateTime
from rex.outbox.records import DeliveryStatus

# "Now" in a condition: a value, or the bind parameter of a statement built once.
Now = datetime | sa.BindParameter[datetime]
NOW = sa.bindparam("now", type_=UTCDateTime())


def lease_free(now: Now) -> sa.ColumnElement[bool]:
    return sa.or_(deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at <= now)


def due_clause(now: Now) -> sa.ColumnElement[bool]:
    return sa.and_(
        deliveries.c.status == DeliveryStatus.PENDING.value,
        deliveries.c.next_attempt_at <= now,
        lease_free(now),
    )


def in_flight(endpoint_id: sa.ColumnElement[str], now: Now) -> sa.ScalarSelect[int]:
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


def earliest(
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


def rate_slot_free(now: Now) -> sa.ColumnElement[bool]:
    return sa.or_(
        endpoints.c.rate_limit.is_(None),
        endpoints.c.rate_limited_until.is_(None),
        endpoints.c.rate_limited_until <= now,
    )


def when_claimable(earliest: sa.ColumnElement[datetime]) -> sa.ColumnElement[datetime]:
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


@functools.cache
def claim_candidates(dialect: str, *, with_endpoint: bool) -> sa.Select[Any]:
    """The endpoints with due deliveries and room, oldest due first (see below)."""
    first_due = earliest(
        endpoints.c.id, sa.and_(deliveries.c.next_attempt_at <= NOW, lease_free(NOW))
    )
    candidates = (
        sa.select(
            endpoints.c.id,
            endpoints.c.workspace_id,
            endpoints.c.max_concurrency,
            endpoints.c.rate_limit,
        )
        .where(
            endpoints.c.enabled.is_(True),
            endpoints.c.kind.in_([sa.bindparam("kind"), sa.bindparam("also_kind")]),
            first_due.is_not(None),
            in_flight(endpoints.c.id, NOW) < endpoints.c.max_concurrency,
            rate_slot_free(NOW),
        )
        # The endpoint that has waited longest first, so every endpoint gets its turn.
        .order_by(first_due, endpoints.c.id)
        .limit(sa.bindparam("limit"))
    )
    if with_endpoint:
        candidates = candidates.where(endpoints.c.id == sa.bindparam("endpoint_id"))
    if dialect == "postgresql":
        candidates = candidates.with_for_update(of=endpoints, skip_locked=True, key_share=True)
    return candidates


LEASED_NOW = (
    sa.select(deliveries.c.endpoint_id, sa.func.count().label("leased"))
    .where(
        deliveries.c.endpoint_id.in_(sa.bindparam("endpoint_ids", expanding=True)),
        deliveries.c.leased_by.is_not(None),
        deliveries.c.lease_expires_at > NOW,
    )
    .group_by(deliveries.c.endpoint_id)
)


@functools.lru_cache(maxsize=64)
def oldest_due(endpoint_count: int) -> sa.CompoundSelect[Any]:
    """The oldest due rows of ``endpoint_{n}``, at most ``slots_{n}`` each."""
    parts = [
        sa.select(
            deliveries.c.id,
            deliveries.c.endpoint_id,
            deliveries.c.next_attempt_at,
            deliveries.c.workspace_id,
        )
        .where(deliveries.c.endpoint_id == sa.bindparam(f"endpoint_{n}"), due_clause(NOW))
        # In index order only (no tie-break on id), so the scan stops after `slots` rows.
        .order_by(deliveries.c.next_attempt_at)
        .limit(sa.bindparam(f"slots_{n}"))
        .subquery()
        for n in range(endpoint_count)
    ]
    return sa.union_all(*(sa.select(part) for part in parts))


LEASE = (
    sa.update(deliveries)
    .where(deliveries.c.id.in_(sa.bindparam("ids", expanding=True)), due_clause(NOW))
    .values(
        leased_by=sa.bindparam("worker_id"),
        lease_expires_at=sa.bindparam("lease_until", type_=UTCDateTime()),
    )
    .returning(deliveries.c.id)
)
CLAIMED = (
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
NEXT_DUE = sa.select(
    sa.func.min(
        when_claimable(
            earliest(
                endpoints.c.id,
                sa.and_(deliveries.c.next_attempt_at.is_not(None), lease_free(NOW)),
            )
        )
    )
).where(
    endpoints.c.enabled.is_(True),
    endpoints.c.kind.in_([sa.bindparam("kind"), sa.bindparam("also_kind")]),
    in_flight(endpoints.c.id, NOW) < endpoints.c.max_concurrency,
)

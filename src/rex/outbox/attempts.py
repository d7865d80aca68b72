"""Recording attempts: each attempt stored, its delivery moved on (delivered, pending again
or failed) and its endpoint's health kept, for a whole batch of attempts at once.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.schema import attempts
from rex.db.types import UTCDateTime
from rex.ids import new_id
from rex.outbox import alerts, ordering
from rex.outbox.envelope import dumps
from rex.outbox.health import record_endpoint_health
from rex.outbox.records import AttemptOutcome, DeliveryStatus, HeldDelivery, RecordedAttempts

_INSERT_ATTEMPT = sa.insert(attempts)


async def record_attempts(
    conn: AsyncConnection,
    *,
    worker_id: str,
    results: Sequence[tuple[HeldDelivery, AttemptOutcome]],
    disable_after: float | None = None,
    failing_after: float | None = None,
) -> RecordedAttempts:
    """Store attempts, move their deliveries on and keep their endpoints' health.

    An endpoint is disabled when an outcome says so (``disable_endpoint``: 410 Gone), or,
    with ``disable_after`` (seconds), when it has been failing without a single success for
    at least that long; each one disabled is announced (``endpoint.disabled``) in the same
    transaction. With ``failing_after``, ``endpoint.failing`` is announced (once) for an
    endpoint failing that long; a delivery failing for good is announced with
    ``delivery.failed`` (``rex.outbox.alerts``). Used by the delivery workers and for the
    attempts ``rex listen`` reports (``worker_id`` is then the stream's lease token).
    """
    if not results:
        return RecordedAttempts(held=0, disabled_endpoints=[])
    # Ordered endpoints are locked before their deliveries, as everyone else locks them
    # (queueing, PATCH, DELETE): one lock order, so no deadlock (rex.outbox.ordering).
    ordered = {d.endpoint_id for d, _ in results if getattr(d, "ordering_key", None)}
    if ordered:
        await ordering.lock_endpoints(conn, ordered)
    await conn.execute(
        _INSERT_ATTEMPT,
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
    # One UPDATE for the whole batch, joined to its outcomes, as one prebuilt statement
    # (a VALUES list would make a new statement, compiled anew, for every batch).
    if conn.dialect.name == "postgresql":
        moved = await conn.execute(
            _RECORD_OUTCOMES_POSTGRES,
            {
                "worker_id": worker_id,
                "ids": [delivery.id for delivery, _ in results],
                "statuses": [outcome.status.value for _, outcome in results],
                "next_attempts": [outcome.next_attempt_at for _, outcome in results],
                "ats": [outcome.at for _, outcome in results],
            },
        )
    else:
        stored = _stored_datetime(conn.dialect)
        moved = await conn.execute(
            _RECORD_OUTCOMES_SQLITE,
            {
                "worker_id": worker_id,
                "outcomes": dumps(
                    [
                        [
                            delivery.id,
                            outcome.status.value,
                            stored(outcome.next_attempt_at),
                            stored(outcome.at),
                        ]
                        for delivery, outcome in results
                    ]
                ),
            },
        )
    rows = moved.all()
    # Ordered endpoints: a head delivered or failed for good lets the next of its group go.
    finished_groups = [
        (row.endpoint_id, row.ordering_key)
        for row in rows
        if row.ordering_key is not None and row.status != DeliveryStatus.PENDING.value
    ]
    if finished_groups:
        await ordering.advance(conn, finished_groups, now=max(o.at for _, o in results))
    disabled = await record_endpoint_health(conn, results, disable_after, failing_after)
    failed_for_good = {row.id for row in rows if row.status == DeliveryStatus.FAILED.value}
    if failed_for_good:
        await alerts.announce_failed_deliveries(
            conn,
            {d.id: outcome for d, outcome in results if d.id in failed_for_good},
        )
    return RecordedAttempts(held=len(rows), disabled_endpoints=disabled)


# The outcomes of a batch of attempts, applied to deliveries still leased by the worker.
_RECORD_OUTCOMES_SET = """
    status = outcome.status,
    attempt_count = deliveries.attempt_count + 1,
    next_attempt_at = outcome.next_attempt_at,
    last_attempt_at = outcome.at,
    leased_by = NULL,
    lease_expires_at = NULL,
    updated_at = outcome.at
"""
# SQLite: the outcomes as one JSON array of [id, status, next_attempt_at, at] (json_each,
# json_extract: any SQLite with UPDATE .. FROM, 3.33+); times in the column's stored format.
_RECORD_OUTCOMES_SQLITE = sa.text(
    f"""
    WITH outcome AS (
        SELECT json_extract(value, '$[0]') AS id,
               json_extract(value, '$[1]') AS status,
               json_extract(value, '$[2]') AS next_attempt_at,
               json_extract(value, '$[3]') AS at
        FROM json_each(:outcomes)
    )
    UPDATE deliveries SET {_RECORD_OUTCOMES_SET}
    FROM outcome
    WHERE deliveries.id = outcome.id AND deliveries.leased_by = :worker_id
    RETURNING deliveries.id, deliveries.endpoint_id, deliveries.status, deliveries.ordering_key
    """
)
# PostgreSQL: the outcomes as parallel arrays.
_RECORD_OUTCOMES_POSTGRES = sa.text(
    f"""
    UPDATE deliveries SET {_RECORD_OUTCOMES_SET}
    FROM unnest(:ids, :statuses, :next_attempts, :ats)
        AS outcome(id, status, next_attempt_at, at)
    WHERE deliveries.id = outcome.id AND deliveries.leased_by = :worker_id
    RETURNING deliveries.id, deliveries.endpoint_id, deliveries.status, deliveries.ordering_key
    """
).bindparams(
    sa.bindparam("ids", type_=postgresql.ARRAY(sa.String())),
    sa.bindparam("statuses", type_=postgresql.ARRAY(sa.String())),
    sa.bindparam("next_attempts", type_=postgresql.ARRAY(postgresql.TIMESTAMP(timezone=True))),
    sa.bindparam("ats", type_=postgresql.ARRAY(postgresql.TIMESTAMP(timezone=True))),
)


@functools.cache
def _stored_datetime(dialect: Dialect) -> Any:
    """How a UTC datetime is stored in a column (as ``UTCDateTime`` binds it): on SQLite,
    the text that the other statements' comparisons expect."""
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    return process

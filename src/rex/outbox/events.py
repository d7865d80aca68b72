"""Recording an event: the event row and one pending delivery per matching endpoint, in the
caller's transaction (the transactional outbox), and the wake-up for whoever sends them.

On PostgreSQL, the common case is one statement (``_RECORD_EVENT_POSTGRES``): the event, its
deliveries and the NOTIFY in one round trip.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from rex import tracing
from rex.db.engine import QUEUED_FLAG
from rex.db.schema import deliveries, endpoints, events
from rex.db.types import UTCDateTime
from rex.ids import new_id
from rex.json_types import JsonObject
from rex.outbox.catalogue import EventType, matches
from rex.outbox.envelope import dumps, envelope
from rex.outbox.filters import passes
from rex.outbox.ordering import activate_heads, ordering_key, take_sequences
from rex.outbox.records import NOTIFY_CHANNEL, DeliveryStatus
from rex.outbox.traces import remember as remember_trace

# The statements every write runs, built once (values are bound parameters, so each is
# compiled once per dialect and cached).
_INSERT_EVENT = sa.insert(events)
_INSERT_DELIVERY = sa.insert(deliveries)
_ENABLED_ENDPOINTS = sa.select(
    endpoints.c.id, endpoints.c.events, endpoints.c.filter, endpoints.c.ordering
).where(endpoints.c.workspace_id == sa.bindparam("workspace_id"), endpoints.c.enabled.is_(True))
_ENABLED_ENDPOINT = _ENABLED_ENDPOINTS.where(endpoints.c.id == sa.bindparam("endpoint_id"))


class EventRow(TypedDict):
    """The values of an ``events`` row, as inserted."""

    id: str
    workspace_id: str
    type: str
    object_id: str | None
    payload: str
    created_at: datetime


async def record_event(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    event_type: str,
    data: Mapping[str, Any],
    object_id: str | None,
    now: datetime,
    previous_attributes: Mapping[str, Any] | None = None,
    extra: JsonObject | None = None,
    only_endpoint_id: str | None = None,
    exclude_endpoint_id: str | None = None,
) -> str:
    """Write an event and one pending delivery per matching enabled endpoint: subscribed to
    its type, and whose ``filter`` (``rex.outbox.filters``) the event meets.

    Runs inside the caller's transaction, next to the data change that caused the event, so
    both commit or neither does. ``only_endpoint_id`` targets one endpoint regardless of its
    subscriptions and filter (``webhook.test``); ``exclude_endpoint_id`` leaves one out (an
    operational event never goes to the endpoint it is about). Returns the event id.
    """
    event_id = new_id("evt")
    body = envelope(
        event_id=event_id,
        event_type=event_type,
        now=now,
        data=data,
        previous_attributes=previous_attributes,
        extra=extra,
    )
    event_row: EventRow = {
        "id": event_id,
        "workspace_id": workspace_id,
        "type": event_type,
        "object_id": object_id,
        "payload": dumps(body),
        "created_at": now,
    }
    if (
        conn.dialect.name == "postgresql"
        and only_endpoint_id is None
        and exclude_endpoint_id is None
    ):
        queued = await _record_event_postgres(conn, event_row)
        if queued is not None:
            if queued:
                conn.info[QUEUED_FLAG] = True
            if tracing.ENABLED:
                await remember_trace(conn, event_id)
            return event_id
    else:
        await conn.execute(_INSERT_EVENT, event_row)
    if tracing.ENABLED:
        await remember_trace(conn, event_id)
    if only_endpoint_id is None:
        rows = await conn.execute(_ENABLED_ENDPOINTS, {"workspace_id": workspace_id})
    else:
        rows = await conn.execute(
            _ENABLED_ENDPOINT, {"workspace_id": workspace_id, "endpoint_id": only_endpoint_id}
        )
    targets = [
        (row.id, ordering_key(row.ordering, object_id))
        for row in rows
        if (
            only_endpoint_id is not None
            or (matches(row.events, event_type) and passes(row.filter, body))
        )
        and row.id != exclude_endpoint_id
    ]
    if targets:
        # An ordered endpoint's delivery waits parked (next_attempt_at NULL) with its place
        # in the endpoint's queue, until it is its group's head (rex.outbox.ordering).
        sequences = {
            endpoint_id: await take_sequences(conn, endpoint_id, 1)
            for endpoint_id, key in sorted(targets)
            if key is not None
        }
        await conn.execute(
            _INSERT_DELIVERY,
            [
                {
                    "id": new_id("dlv"),
                    "workspace_id": workspace_id,
                    "endpoint_id": endpoint_id,
                    "event_id": event_id,
                    "event_type": event_type,
                    "status": DeliveryStatus.PENDING.value,
                    "attempt_count": 0,
                    "next_attempt_at": now if key is None else None,
                    "sequence": sequences.get(endpoint_id),
                    "ordering_key": key,
                    "created_at": now,
                    "updated_at": now,
                }
                for endpoint_id, key in targets
            ],
        )
        if sequences:
            ordered = [(endpoint_id, key) for endpoint_id, key in targets if key is not None]
            await activate_heads(conn, ordered, now=now)
        await notify_queued(conn)
    return event_id


# PostgreSQL: the event, its deliveries and the wake-up in one round trip (the separate
# statements cost four). Delivery ids are made here, in Python (ULIDs), and handed in as an
# array; a workspace with more matching endpoints than ids takes the general path instead.
_PRESET_IDS = 8
# An endpoint's filter (rex.outbox.filters), in SQL: no condition fails. A condition fails
# when the event's value at its path (missing reads as null) is not its value, or not in its
# list. jsonb compares as JSON does (1 = 1.0, true is not 1), as the Python side does.
_FILTER_HOLDS_POSTGRES = """(filter IS NULL OR NOT EXISTS (
            SELECT 1 FROM jsonb_each(
                CASE WHEN jsonb_typeof(filter) = 'object' THEN filter ELSE '{}'::jsonb END
            ) AS c(path, wanted)
            CROSS JOIN LATERAL (SELECT coalesce(
                CAST(:payload AS jsonb) #> string_to_array(c.path, '.'), 'null'::jsonb
            ) AS actual) AS v
            WHERE NOT CASE WHEN jsonb_typeof(c.wanted) = 'array'
                THEN c.wanted @> jsonb_build_array(v.actual)
                ELSE c.wanted = v.actual END
          ))"""
_RECORD_EVENT_POSTGRES = sa.text(
    f"""
    WITH event AS (
        INSERT INTO events (id, workspace_id, type, object_id, payload, created_at)
        VALUES (:id, :workspace_id, :type, :object_id, :payload, :created_at)
    ), targets AS (
        SELECT id, ordering, row_number() OVER (ORDER BY id) AS n
        FROM endpoints
        WHERE workspace_id = :workspace_id AND enabled
          AND (events ? :type OR events ? '*')
          AND {_FILTER_HOLDS_POSTGRES}
    ), fast AS (
        -- Ordered endpoints take the general path (their queue places, rex.outbox.ordering).
        SELECT (SELECT count(*) FROM targets) <= {_PRESET_IDS}
               AND NOT EXISTS (SELECT 1 FROM targets WHERE ordering <> 'none') AS ok
    ), queued AS (
        INSERT INTO deliveries (id, workspace_id, endpoint_id, event_id, event_type, status,
                                attempt_count, next_attempt_at, created_at, updated_at)
        SELECT (:delivery_ids)[n], :workspace_id, id, :id, :type, 'pending',
               0, :created_at, :created_at, :created_at
        FROM targets
        WHERE (SELECT ok FROM fast)
        RETURNING 1
    )
    SELECT (SELECT ok FROM fast) AS fast,
           (SELECT count(*) FROM targets) AS targets,
           (SELECT count(*) FROM queued) AS queued,
           (SELECT pg_notify('{NOTIFY_CHANNEL}', '') FROM queued LIMIT 1) IS NULL AS notified
    """
).bindparams(
    sa.bindparam("created_at", type_=UTCDateTime()),
    sa.bindparam("delivery_ids", type_=postgresql.ARRAY(sa.String())),
)


async def _record_event_postgres(conn: AsyncConnection, event_row: EventRow) -> int | None:
    """Insert the event and queue its deliveries (one per enabled endpoint whose filter
    matches) in one statement; returns how many were queued, or None if the workspace has
    more matching endpoints than preset ids, or an ordered one (the event is inserted; the
    caller queues)."""
    if event_row["type"] == EventType.WEBHOOK_TEST:  # never matched by a filter
        await conn.execute(_INSERT_EVENT, event_row)
        return 0
    ids = [new_id("dlv") for _ in range(_PRESET_IDS)]
    row = (await conn.execute(_RECORD_EVENT_POSTGRES, {**event_row, "delivery_ids": ids})).one()
    if not row.fast:
        return None
    return int(row.queued)


async def notify_queued(conn: AsyncConnection) -> None:
    """Wake idle workers when this transaction commits.

    On PostgreSQL, NOTIFY is delivered at commit (and dropped on rollback); it is only a hint,
    polling is the safety net. In-process workers are woken by ``Database`` after commit.
    """
    conn.info[QUEUED_FLAG] = True
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text(f"NOTIFY {NOTIFY_CHANNEL}"))

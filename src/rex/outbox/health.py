"""Endpoint health: the last success, since when an endpoint has been failing, disabling
it (410 Gone, or failing for too long), and announcing each change once: ``endpoint.failing``,
``endpoint.disabled``, ``endpoint.recovered`` (see ``rex.outbox.alerts``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.schema import endpoints
from rex.db.types import UTCDateTime
from rex.ids import rfc3339
from rex.outbox import alerts
from rex.outbox.catalogue import EventType
from rex.outbox.records import AttemptOutcome, EndpointKind, HeldDelivery

# last_success_at only needs to be roughly right (it is compared with days); refreshing it
# at most this often keeps a busy endpoint's row from being rewritten on every success.
_SUCCESS_REFRESH = timedelta(seconds=60)


# An endpoint's health after a batch of attempts (statements built once).
_RECORD_SUCCESS = (
    sa.update(endpoints)
    .where(
        endpoints.c.id == sa.bindparam("endpoint_id"),
        sa.or_(
            endpoints.c.failing_since.is_not(None),
            endpoints.c.last_success_at.is_(None),
            endpoints.c.last_success_at < sa.bindparam("refresh_before", type_=UTCDateTime()),
            endpoints.c.alert_state.is_not(None),
            endpoints.c.failure_alerted.is_(True),
        ),
    )
    .values(
        last_success_at=sa.bindparam("at", type_=UTCDateTime()),
        failing_since=None,
        failure_alerted=False,
    )
)
# Which of a batch's succeeded endpoints _RECORD_SUCCESS may change: the same condition,
# read for all of them in one statement (against the batch's latest success, so a superset).
_SUCCESS_STALE = sa.select(endpoints.c.id).where(
    endpoints.c.id.in_(sa.bindparam("endpoint_ids", expanding=True)),
    sa.or_(
        endpoints.c.failing_since.is_not(None),
        endpoints.c.last_success_at.is_(None),
        endpoints.c.last_success_at < sa.bindparam("refresh_before", type_=UTCDateTime()),
        endpoints.c.alert_state.is_not(None),
        endpoints.c.failure_alerted.is_(True),
    ),
)


async def _to_refresh(conn: AsyncConnection, succeeded: dict[str, datetime]) -> dict[str, datetime]:
    """The succeeded endpoints whose health row may need a write (usually none: a busy
    endpoint's is rewritten once a minute). One statement for the whole batch, where one
    UPDATE per endpoint cost a round trip each (a fan-out to 10 endpoints: 10 a cycle).

    Concurrency: _RECORD_SUCCESS re-checks its condition on each row it writes; an endpoint
    left out here had nothing to change when this read, as if this transaction had run
    before the one that changed it since (READ COMMITTED; SQLite's write lock serialises)."""
    if len(succeeded) <= 1:
        return succeeded
    stale = await conn.execute(
        _SUCCESS_STALE,
        {
            "endpoint_ids": list(succeeded),
            "refresh_before": max(succeeded.values()) - _SUCCESS_REFRESH,
        },
    )
    return {endpoint_id: succeeded[endpoint_id] for endpoint_id in stale.scalars()}


# The first success after endpoint.failing (or .disabled, then re-enabled) was announced.
_RECOVERED = (
    sa.update(endpoints)
    .where(
        endpoints.c.id == sa.bindparam("endpoint_id"),
        endpoints.c.alert_state.is_not(None),
        alerts.WATCHED,
    )
    .values(alert_state=None)
)
# Failing for failing_after without a success, and not announced yet.
_FAILING = (
    sa.update(endpoints)
    .where(
        endpoints.c.id == sa.bindparam("endpoint_id"),
        endpoints.c.enabled.is_(True),
        endpoints.c.alert_state.is_(None),
        endpoints.c.failing_since <= sa.bindparam("threshold", type_=UTCDateTime()),
        alerts.WATCHED,
    )
    .values(alert_state="failing")
)
_RECORD_FAILURE = (
    sa.update(endpoints)
    .where(endpoints.c.id == sa.bindparam("endpoint_id"), endpoints.c.failing_since.is_(None))
    .values(failing_since=sa.bindparam("at", type_=UTCDateTime()))
)
_FAILING_SINCE = sa.select(endpoints.c.failing_since).where(
    endpoints.c.id == sa.bindparam("endpoint_id"), endpoints.c.enabled.is_(True)
)


async def record_endpoint_health(
    conn: AsyncConnection,
    results: Iterable[tuple[HeldDelivery, AttemptOutcome]],
    disable_after: float | None,
    failing_after: float | None = None,
) -> list[str]:
    """Keep the health of the endpoints of a batch of attempts; disable those the batch
    says to (410 Gone, or no success for ``disable_after`` seconds) and announce each with
    an ``endpoint.disabled`` event, dated by its latest attempt. Returns the disabled ids.

    Also announces, once per change: ``endpoint.failing`` (no success for
    ``failing_after`` seconds) and ``endpoint.recovered`` (a success after either)."""
    succeeded: dict[str, datetime] = {}
    failed: dict[str, datetime] = {}
    gone: dict[str, str] = {}
    latest: dict[str, datetime] = {}
    for delivery, outcome in results:
        previous = latest.get(delivery.endpoint_id)
        latest[delivery.endpoint_id] = max(previous, outcome.at) if previous else outcome.at
        target = succeeded if outcome.succeeded else failed
        previous = target.get(delivery.endpoint_id)
        target[delivery.endpoint_id] = max(previous, outcome.at) if previous else outcome.at
        if outcome.disable_endpoint:
            gone[delivery.endpoint_id] = outcome.disable_endpoint
    for endpoint_id, at in (await _to_refresh(conn, succeeded)).items():
        refreshed = await conn.execute(
            _RECORD_SUCCESS,
            {"endpoint_id": endpoint_id, "at": at, "refresh_before": at - _SUCCESS_REFRESH},
        )
        # Only when the health row changed (rarely: once a minute, or after failures).
        if refreshed.rowcount:
            recovered = await conn.execute(_RECOVERED, {"endpoint_id": endpoint_id})
            if recovered.rowcount:
                await _announce(conn, endpoint_id, EventType.ENDPOINT_RECOVERED, now=at)
    disabled: list[str] = []
    for endpoint_id, at in failed.items():
        if endpoint_id in gone:
            if await disable_endpoint(conn, endpoint_id, reason=gone[endpoint_id], now=at):
                disabled.append(endpoint_id)
            continue
        if endpoint_id in succeeded:
            continue
        await conn.execute(_RECORD_FAILURE, {"endpoint_id": endpoint_id, "at": at})
        if failing_after is not None:
            threshold = at - timedelta(seconds=failing_after)
            failing = await conn.execute(
                _FAILING, {"endpoint_id": endpoint_id, "threshold": threshold}
            )
            if failing.rowcount:
                await _announce(conn, endpoint_id, EventType.ENDPOINT_FAILING, now=at)
        if disable_after is None:
            continue
        failing_since = (await conn.execute(_FAILING_SINCE, {"endpoint_id": endpoint_id})).scalar()
        if failing_since is not None and at - failing_since >= timedelta(seconds=disable_after):
            reason = (
                f"disabled automatically: no successful delivery for {_duration(disable_after)} "
                f"(failing since {rfc3339(failing_since)}); fix the endpoint, then re-enable it "
                "with PATCH enabled=true"
            )
            if await disable_endpoint(conn, endpoint_id, reason=reason, now=at):
                disabled.append(endpoint_id)
    for endpoint_id in disabled:
        await announce_disabled(conn, endpoint_id, now=latest[endpoint_id])
    return disabled


async def disable_endpoint(
    conn: AsyncConnection, endpoint_id: str, *, reason: str, now: datetime
) -> bool:
    """Disable an enabled endpoint; False when it already was disabled.

    The ``enabled`` condition makes this safe when two workers decide at once: PostgreSQL
    re-checks it on the row the first one changed, so only one of them disables it (and
    announces it).
    """
    result = await conn.execute(
        sa.update(endpoints)
        .where(endpoints.c.id == endpoint_id, endpoints.c.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason, alert_state="disabled", updated_at=now)
    )
    return result.rowcount > 0


async def announce_disabled(
    conn: AsyncConnection, endpoint_id: str, *, now: datetime
) -> str | None:
    """Tell the workspace's other endpoints subscribed to ``endpoint.disabled`` that Rex
    disabled this one, and its alert destinations. Returns the event id; None for Rex's own
    endpoints (kind ``system``), which no public event names."""
    return await _announce(conn, endpoint_id, EventType.ENDPOINT_DISABLED, now=now)


async def _announce(
    conn: AsyncConnection, endpoint_id: str, event_type: str, *, now: datetime
) -> str | None:
    row = (await conn.execute(sa.select(endpoints).where(endpoints.c.id == endpoint_id))).one()
    if row.kind == EndpointKind.SYSTEM.value or row.system_role:
        return None  # Rex's own endpoint (a form's mail, the alerts): no public event names it
    return await alerts.announce(
        conn,
        row=row,
        event_type=event_type,
        data=alerts.endpoint_data(row),
        object_id=endpoint_id,
        now=now,
    )


def _duration(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"

"""`rex listen` sessions: open or resume, report attempts, heartbeats, expiry.

A session is an endpoint of kind ``listen`` (so ``record_event`` queues deliveries for it
like for any subscription) plus a ``listen_sessions`` row naming the API key and local URL
it belongs to and the stream serving it. Callers own the transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex._signing import generate_secret
from rex.api.errors import ApiError, not_found
from rex.api.pagination import fetch_page
from rex.db import outbox
from rex.db.outbox import AttemptOutcome, ClaimedDelivery, DeliveryStatus, EndpointKind
from rex.db.schema import deliveries, endpoints, events, listen_sessions
from rex.delivery.retry import next_state
from rex.delivery.service import get_delivery
from rex.events.catalogue import EventType
from rex.ids import new_id, rfc3339
from rex.listen.schemas import AttemptReport, SessionOpen
from rex.settings import Settings

EXCERPT_CHARS = 1024

_COLUMNS = (
    endpoints.c.id,
    endpoints.c.events,
    endpoints.c.secret,
    endpoints.c.max_concurrency,
    listen_sessions.c.forward_to,
    listen_sessions.c.api_key_id,
    listen_sessions.c.connection_id,
    listen_sessions.c.last_seen_at,
    listen_sessions.c.created_at,
)


def _select() -> sa.Select[Any]:
    return sa.select(*_COLUMNS).join(
        listen_sessions, listen_sessions.c.endpoint_id == endpoints.c.id
    )


def is_connected(row: Any, settings: Settings, now: datetime) -> bool:
    """A stream holds the session and has shown signs of life lately (its API process may
    have died without saying so: then the heartbeats stop)."""
    stale = now - timedelta(seconds=3 * settings.listen_heartbeat)
    return row.connection_id is not None and row.last_seen_at >= stale


async def _check_session_quota(
    conn: AsyncConnection, workspace_id: str, settings: Settings
) -> None:
    """At most ``REX_MAX_LISTEN_SESSIONS_PER_WORKSPACE`` sessions: each one receives a copy
    of every event, so one workspace cannot multiply its deliveries without bound."""
    count = (
        await conn.execute(
            sa.select(sa.func.count())
            .select_from(listen_sessions)
            .where(listen_sessions.c.workspace_id == workspace_id)
        )
    ).scalar_one()
    limit = settings.max_listen_sessions_per_workspace
    if count >= limit:
        raise ApiError(
            409,
            f"This workspace has {count} open rex listen sessions, the most it may have "
            f"(REX_MAX_LISTEN_SESSIONS_PER_WORKSPACE={limit}); end one (DELETE "
            "/listen/sessions/{id}) or wait for an idle one to expire.",
        )


def serialize(row: Any, settings: Settings, now: datetime) -> dict[str, Any]:
    connected = is_connected(row, settings, now)
    expires = row.last_seen_at + timedelta(seconds=settings.listen_grace_period)
    return {
        "id": row.id,
        "forward_to": row.forward_to,
        "events": list(row.events),
        "connected": connected,
        "last_seen_at": rfc3339(row.last_seen_at),
        "expires_at": None if connected else rfc3339(expires),
        "created_at": rfc3339(row.created_at),
    }


async def fetch_row(
    conn: AsyncConnection, workspace_id: str, session_id: str, *, for_update: bool = False
) -> Any:
    query = _select().where(
        endpoints.c.workspace_id == workspace_id,
        endpoints.c.id == session_id,
        endpoints.c.kind == EndpointKind.LISTEN.value,
    )
    if for_update:
        query = query.with_for_update(of=listen_sessions)
    row = (await conn.execute(query)).first()
    if row is None:
        raise not_found("listen session", session_id)
    return row


async def open_session(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    api_key_id: str,
    body: SessionOpen,
    settings: Settings,
    now: datetime,
) -> dict[str, Any]:
    """Resume this key's session for ``body.forward_to`` if it has not expired, else make one.

    Resuming keeps the secret and every delivery queued while no stream was connected; the
    event filter becomes ``body.events``. Two racing opens of a new session: the unique
    (api_key_id, forward_to) constraint fails one of them; the router retries it, and the
    retry resumes the winner's session.
    """
    # FOR UPDATE: serialises with expiry (which skips locked sessions) and other opens.
    existing = (
        await conn.execute(
            _select()
            .where(
                listen_sessions.c.api_key_id == api_key_id,
                listen_sessions.c.forward_to == body.forward_to,
            )
            .with_for_update(of=listen_sessions)
        )
    ).first()
    grace = timedelta(seconds=settings.listen_grace_period)
    resumed = existing is not None and existing.last_seen_at + grace >= now
    if existing is not None and resumed:
        session_id = existing.id
        await conn.execute(
            sa.update(endpoints)
            .where(endpoints.c.id == session_id)
            .values(events=body.events, updated_at=now)
        )
        await conn.execute(
            sa.update(listen_sessions)
            .where(listen_sessions.c.endpoint_id == session_id)
            .values(last_seen_at=now)
        )
    else:
        if existing is not None:  # expired, not swept yet
            await _delete_endpoints(conn, [existing.id])
        await _check_session_quota(conn, workspace_id, settings)
        session_id = new_id("wh")
        await conn.execute(
            sa.insert(endpoints).values(
                id=session_id,
                workspace_id=workspace_id,
                url=body.forward_to,
                events=body.events,
                description="rex listen session",
                secret=generate_secret(),
                enabled=True,
                max_concurrency=10,
                kind=EndpointKind.LISTEN.value,
                created_at=now,
                updated_at=now,
            )
        )
        await conn.execute(
            sa.insert(listen_sessions).values(
                endpoint_id=session_id,
                workspace_id=workspace_id,
                api_key_id=api_key_id,
                forward_to=body.forward_to,
                connection_id=None,
                last_seen_at=now,
                created_at=now,
            )
        )
    row = await fetch_row(conn, workspace_id, session_id)
    pending = (
        await conn.execute(
            sa.select(sa.func.count())
            .select_from(deliveries)
            .where(
                deliveries.c.endpoint_id == session_id,
                deliveries.c.status == DeliveryStatus.PENDING.value,
            )
        )
    ).scalar_one()
    return {
        **serialize(row, settings, now),
        "secret": row.secret,
        "resumed": resumed,
        "pending": pending,
        "grace_period": settings.listen_grace_period,
        "keepalive": settings.listen_heartbeat,
        "timeout": settings.delivery_timeout,
    }


async def get(
    conn: AsyncConnection, workspace_id: str, session_id: str, settings: Settings, now: datetime
) -> dict[str, Any]:
    return serialize(await fetch_row(conn, workspace_id, session_id), settings, now)


async def list_page(
    conn: AsyncConnection,
    workspace_id: str,
    settings: Settings,
    now: datetime,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    query = _select().where(
        endpoints.c.workspace_id == workspace_id, endpoints.c.kind == EndpointKind.LISTEN.value
    )
    rows, next_cursor = await fetch_page(conn, query, endpoints.c.id, limit=limit, cursor=cursor)
    return [serialize(row, settings, now) for row in rows], next_cursor


async def delete(conn: AsyncConnection, workspace_id: str, session_id: str) -> None:
    """End a session now: its secret stops working and its queued deliveries are dropped."""
    await fetch_row(conn, workspace_id, session_id, for_update=True)
    await _delete_endpoints(conn, [session_id])


async def send_test(
    conn: AsyncConnection, workspace_id: str, session_id: str, now: datetime
) -> dict[str, Any]:
    """Queue a ``webhook.test`` event for this session alone; returns its delivery."""
    await fetch_row(conn, workspace_id, session_id)
    event_id = await outbox.record_event(
        conn,
        workspace_id=workspace_id,
        event_type=EventType.WEBHOOK_TEST,
        data={
            "endpoint_id": session_id,
            "message": "This is a test event from Rex. Your rex listen session received it.",
        },
        object_id=session_id,
        now=now,
        only_endpoint_id=session_id,
    )
    delivery_id = (
        await conn.execute(sa.select(deliveries.c.id).where(deliveries.c.event_id == event_id))
    ).scalar_one()
    return await get_delivery(conn, workspace_id, delivery_id)


def attempt_outcome(
    settings: Settings, attempts_made: int, at: datetime, report: AttemptReport
) -> AttemptOutcome:
    """The same rules as the delivery worker: 2xx is success, anything else is retried on
    ``REX_RETRY_SCHEDULE`` (honouring a bounded Retry-After on 429/503) until it fails."""
    status_code = report.status_code
    status, next_at = next_state(settings, attempts_made, at, status_code, report.retry_after)
    excerpt = report.response_excerpt
    return AttemptOutcome(
        at=at,
        status_code=status_code,
        error=report.error,
        latency_ms=report.latency_ms,
        response_excerpt=excerpt[:EXCERPT_CHARS] if excerpt is not None else None,
        status=status,
        next_attempt_at=next_at,
    )


async def record_report(
    conn: AsyncConnection,
    workspace_id: str,
    session_id: str,
    report: AttemptReport,
    settings: Settings,
    now: datetime,
) -> dict[str, Any]:
    """Store what the CLI reports about one streamed delivery, as the worker would.

    Only a delivery still leased to ``report.lease`` moves on (see ``record_attempts``): a
    report that comes after the stream was replaced is recorded as an attempt, since it
    happened, but leaves the newer stream's state alone. A delivery that is no longer
    pending (a repeated report) is returned unchanged.
    """
    await fetch_row(conn, workspace_id, session_id)
    row = (
        await conn.execute(
            sa.select(deliveries, events.c.payload)
            .join(events, events.c.id == deliveries.c.event_id)
            .where(
                deliveries.c.id == report.delivery_id,
                deliveries.c.endpoint_id == session_id,
                deliveries.c.workspace_id == workspace_id,
            )
        )
    ).first()
    if row is None:
        raise ApiError(
            404,
            f"No delivery with id {report.delivery_id!r} in this session.",
            type="not_found",
            field="delivery_id",
        )
    if row.status == DeliveryStatus.PENDING.value:
        at = now - timedelta(milliseconds=report.latency_ms)
        outcome = attempt_outcome(settings, row.attempt_count + 1, at, report)
        delivery = ClaimedDelivery(
            id=row.id,
            workspace_id=row.workspace_id,
            endpoint_id=row.endpoint_id,
            event_id=row.event_id,
            event_type=row.event_type,
            attempt_count=row.attempt_count,
            url="",
            secrets=(),
            payload=row.payload.encode("utf-8"),
        )
        await outbox.record_attempts(conn, worker_id=report.lease, results=[(delivery, outcome)])
    return await get_delivery(conn, workspace_id, report.delivery_id)


# -- the stream's side: attach, heartbeat, detach ----------------------------------------


async def attach(
    conn: AsyncConnection, session_id: str, connection_id: str, settings: Settings, now: datetime
) -> int | None:
    """Make ``connection_id`` the stream serving the session, replacing any other.

    Leases held by earlier streams are freed, so what they were sent but never reported
    goes out again now. Returns how many deliveries the stream may have in flight, or
    None when the session is gone or expired.
    """
    cutoff = now - timedelta(seconds=settings.listen_grace_period)
    result = await conn.execute(
        sa.update(listen_sessions)
        .where(
            listen_sessions.c.endpoint_id == session_id, listen_sessions.c.last_seen_at >= cutoff
        )
        .values(connection_id=connection_id, last_seen_at=now)
    )
    if result.rowcount == 0:
        return None
    await outbox.release_endpoint_leases(conn, endpoint_id=session_id)
    limit = (
        await conn.execute(
            sa.select(endpoints.c.max_concurrency).where(endpoints.c.id == session_id)
        )
    ).scalar_one()
    return int(limit)


async def heartbeat(
    conn: AsyncConnection, session_id: str, connection_id: str, now: datetime
) -> Literal["ok", "superseded", "gone"]:
    """Record that the stream is alive; tell it whether it still serves the session."""
    result = await conn.execute(
        sa.update(listen_sessions)
        .where(
            listen_sessions.c.endpoint_id == session_id,
            listen_sessions.c.connection_id == connection_id,
        )
        .values(last_seen_at=now)
    )
    if result.rowcount:
        return "ok"
    exists = (
        await conn.execute(
            sa.select(listen_sessions.c.endpoint_id).where(
                listen_sessions.c.endpoint_id == session_id
            )
        )
    ).first()
    return "superseded" if exists else "gone"


async def detach(
    conn: AsyncConnection, session_id: str, connection_id: str, worker_id: str, now: datetime
) -> None:
    """The stream ended: the grace period starts now (unless another stream took over)."""
    await conn.execute(
        sa.update(listen_sessions)
        .where(
            listen_sessions.c.endpoint_id == session_id,
            listen_sessions.c.connection_id == connection_id,
        )
        .values(connection_id=None, last_seen_at=now)
    )
    await outbox.release_endpoint_leases(conn, endpoint_id=session_id, worker_id=worker_id)


async def delete_expired(conn: AsyncConnection, settings: Settings, now: datetime) -> int:
    """Remove sessions not seen for the grace period, with their queued deliveries.

    Concurrency: on PostgreSQL the expired sessions are locked ``FOR UPDATE SKIP LOCKED``,
    so one being resumed right now (``open_session`` holds its lock) is skipped rather than
    deleted under it, and several API processes sweeping at once do not wait on each other.
    """
    cutoff = now - timedelta(seconds=settings.listen_grace_period)
    expired = sa.select(listen_sessions.c.endpoint_id).where(
        listen_sessions.c.last_seen_at < cutoff
    )
    if conn.dialect.name == "postgresql":
        expired = expired.with_for_update(skip_locked=True)
    ids = list((await conn.execute(expired.limit(500))).scalars())
    # Endpoints of kind listen whose session row is gone (its API key was deleted).
    orphans = sa.select(endpoints.c.id).where(
        endpoints.c.kind == EndpointKind.LISTEN.value,
        ~sa.exists().where(listen_sessions.c.endpoint_id == endpoints.c.id),
    )
    ids += list((await conn.execute(orphans.limit(500))).scalars())
    await _delete_endpoints(conn, ids)
    return len(ids)


async def _delete_endpoints(conn: AsyncConnection, endpoint_ids: list[str]) -> None:
    if not endpoint_ids:
        return
    await conn.execute(sa.delete(deliveries).where(deliveries.c.endpoint_id.in_(endpoint_ids)))
    await conn.execute(sa.delete(endpoints).where(endpoints.c.id.in_(endpoint_ids)))

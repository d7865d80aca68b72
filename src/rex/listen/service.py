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
from rex.db.pagination import fetch_page
from rex.db.schema import deliveries, endpoints, listen_sessions
from rex.delivery.service import get as get_delivery
from rex.errors import Conflict, NotFound
from rex.events.types import check_subscribable
from rex.ids import new_id, rfc3339
from rex.listen.schemas import AttemptReport, Session, SessionOpen, SessionOpened
from rex.outbox.attempts import record_attempts
from rex.outbox.catalogue import EventType
from rex.outbox.events import record_event
from rex.outbox.operator import delete_endpoints
from rex.outbox.queue import release_endpoint_leases
from rex.outbox.records import (
    AttemptOutcome,
    Delivery,
    DeliveryData,
    DeliveryStatus,
    EndpointKind,
    ListenSession,
)
from rex.policies import ListenConfig
from rex.worker.retry import Answer, outcome_for

EXCERPT_CHARS = 1024

_COLUMNS = (
    endpoints.c.id,
    endpoints.c.events,
    endpoints.c.secret,
    endpoints.c.max_concurrency,
    endpoints.c.enabled,
    endpoints.c.disabled_reason,
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


def is_connected(session: ListenSession, config: ListenConfig, now: datetime) -> bool:
    """A stream holds the session and has shown signs of life lately (its API process may
    have died without saying so: then the heartbeats stop)."""
    stale = now - timedelta(seconds=3 * config.heartbeat)
    return session.connection_id is not None and session.last_seen_at >= stale


async def _check_session_quota(conn: AsyncConnection, workspace_id: str, limit: int) -> None:
    """At most ``REX_MAX_LISTEN_SESSIONS_PER_WORKSPACE`` sessions: each one receives a copy
    of every event, so one workspace cannot multiply its deliveries without bound."""
    count = (
        await conn.execute(
            sa.select(sa.func.count())
            .select_from(listen_sessions)
            .where(listen_sessions.c.workspace_id == workspace_id)
        )
    ).scalar_one()
    if count >= limit:
        raise Conflict(
            f"This workspace has {count} open rex listen sessions, the most it may have "
            f"(REX_MAX_LISTEN_SESSIONS_PER_WORKSPACE={limit}); end one (DELETE "
            "/listen/sessions/{id}) or wait for an idle one to expire."
        )


def serialize(session: ListenSession, config: ListenConfig, now: datetime) -> Session:
    """A listen session's one shape, as the API answers it (its secret aside)."""
    connected = is_connected(session, config, now)
    expires = session.last_seen_at + timedelta(seconds=config.grace_period)
    return Session(
        id=session.id,
        forward_to=session.forward_to,
        events=list(session.events),
        connected=connected,
        last_seen_at=rfc3339(session.last_seen_at) or "",
        expires_at=None if connected else rfc3339(expires),
        created_at=rfc3339(session.created_at) or "",
    )


async def fetch(
    conn: AsyncConnection, workspace_id: str, session_id: str, *, for_update: bool = False
) -> ListenSession:
    """This workspace's listen session ``session_id``; ``NotFound`` if there is none."""
    query = _select().where(
        endpoints.c.workspace_id == workspace_id,
        endpoints.c.id == session_id,
        endpoints.c.kind == EndpointKind.LISTEN.value,
    )
    if for_update:
        query = query.with_for_update(of=listen_sessions)
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound("listen session", session_id)
    return ListenSession.from_row(row)


async def open_session(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    api_key_id: str,
    body: SessionOpen,
    config: ListenConfig,
    now: datetime,
) -> SessionOpened:
    """Resume this key's session for ``body.forward_to`` if it has not expired, else make one.

    Resuming keeps the secret and every delivery queued while no stream was connected; the
    event filter becomes ``body.events``. Two racing opens of a new session: the unique
    (api_key_id, forward_to) constraint fails one of them; the router retries it, and the
    retry resumes the winner's session.
    """
    await check_subscribable(conn, workspace_id, body.events)
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
    grace = timedelta(seconds=config.grace_period)
    resumed = existing is not None and existing.last_seen_at + grace >= now
    if existing is not None and resumed:
        session_id = existing.id
        # A new `rex listen` on it also starts a fresh health record: one that a 410 from
        # the local server disabled (as the worker would) is enabled again.
        await conn.execute(
            sa.update(endpoints)
            .where(endpoints.c.id == session_id)
            .values(
                events=body.events,
                enabled=True,
                disabled_reason=None,
                failing_since=None,
                updated_at=now,
            )
        )
        await conn.execute(
            sa.update(listen_sessions)
            .where(listen_sessions.c.endpoint_id == session_id)
            .values(last_seen_at=now)
        )
    else:
        if existing is not None:  # expired, not swept yet
            await delete_endpoints(conn, [existing.id])
        await _check_session_quota(conn, workspace_id, config.max_sessions_per_workspace)
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
    session = await fetch(conn, workspace_id, session_id)
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
    return SessionOpened(
        **serialize(session, config, now).model_dump(),
        secret=session.secret,
        resumed=resumed,
        pending=pending,
        grace_period=config.grace_period,
        keepalive=config.heartbeat,
        timeout=config.timeout,
    )


async def get(
    conn: AsyncConnection, workspace_id: str, session_id: str, config: ListenConfig, now: datetime
) -> Session:
    return serialize(await fetch(conn, workspace_id, session_id), config, now)


async def list_page(
    conn: AsyncConnection,
    workspace_id: str,
    config: ListenConfig,
    now: datetime,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[Session], str | None]:
    query = _select().where(
        endpoints.c.workspace_id == workspace_id, endpoints.c.kind == EndpointKind.LISTEN.value
    )
    rows, next_cursor = await fetch_page(conn, query, endpoints.c.id, limit=limit, cursor=cursor)
    sessions = [serialize(ListenSession.from_row(row), config, now) for row in rows]
    return sessions, next_cursor


async def delete(conn: AsyncConnection, workspace_id: str, session_id: str) -> None:
    """End a session now: its secret stops working and its queued deliveries are dropped."""
    await fetch(conn, workspace_id, session_id, for_update=True)
    await delete_endpoints(conn, [session_id])


async def send_test(
    conn: AsyncConnection, workspace_id: str, session_id: str, now: datetime
) -> DeliveryData:
    """Queue a ``webhook.test`` event for this session alone; returns its delivery."""
    session = await fetch(conn, workspace_id, session_id)
    if not session.enabled:
        raise Conflict(
            f"This listen session is disabled ({session.disabled_reason}); run rex listen "
            "again to resume it, enabled, before testing.",
        )
    event_id = await record_event(
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
    config: ListenConfig, attempts_made: int, at: datetime, report: AttemptReport
) -> AttemptOutcome:
    """The delivery worker's rule (``rex.worker.retry.outcome_for``) applied to what the CLI
    reports: 2xx is success, 410 fails the delivery and disables the session's endpoint,
    anything else is retried on ``REX_RETRY_SCHEDULE`` (honouring a bounded Retry-After on
    429/503) until it fails."""
    excerpt = report.response_excerpt
    answer = Answer(
        attempt=attempts_made,
        at=at,
        status_code=report.status_code,
        error=report.error,
        latency_ms=report.latency_ms,
        excerpt=excerpt[:EXCERPT_CHARS] if excerpt is not None else None,
        retry_after=report.retry_after,
    )
    return outcome_for(config.retry, answer)


async def record_report(
    conn: AsyncConnection,
    workspace_id: str,
    session_id: str,
    report: AttemptReport,
    config: ListenConfig,
    now: datetime,
) -> DeliveryData:
    """Store what the CLI reports about one streamed delivery, as the worker would.

    Only a delivery still leased to ``report.lease`` moves on (see ``record_attempts``): a
    report that comes after the stream was replaced is recorded as an attempt, since it
    happened, but leaves the newer stream's state alone. A delivery that is no longer
    pending (a repeated report) is returned unchanged.
    """
    await fetch(conn, workspace_id, session_id)
    row = (
        await conn.execute(
            sa.select(deliveries).where(
                deliveries.c.id == report.delivery_id,
                deliveries.c.endpoint_id == session_id,
                deliveries.c.workspace_id == workspace_id,
            )
        )
    ).first()
    if row is None:
        raise NotFound(
            "delivery",
            report.delivery_id,
            message=f"No delivery with id {report.delivery_id!r} in this session.",
            field="delivery_id",
        )
    delivery = Delivery.from_row(row)
    if delivery.status is DeliveryStatus.PENDING:
        at = now - timedelta(milliseconds=report.latency_ms)
        outcome = attempt_outcome(config, delivery.attempt_count + 1, at, report)
        await record_attempts(conn, worker_id=report.lease, results=[(delivery, outcome)])
    return await get_delivery(conn, workspace_id, report.delivery_id)


# -- the stream's side: attach, heartbeat, detach ----------------------------------------


async def attach(
    conn: AsyncConnection, session_id: str, connection_id: str, config: ListenConfig, now: datetime
) -> int | None:
    """Make ``connection_id`` the stream serving the session, replacing any other.

    Leases held by earlier streams are freed, so what they were sent but never reported
    goes out again now. Returns how many deliveries the stream may have in flight, or
    None when the session is gone or expired.
    """
    cutoff = now - timedelta(seconds=config.grace_period)
    result = await conn.execute(
        sa.update(listen_sessions)
        .where(
            listen_sessions.c.endpoint_id == session_id, listen_sessions.c.last_seen_at >= cutoff
        )
        .values(connection_id=connection_id, last_seen_at=now)
    )
    if result.rowcount == 0:
        return None
    await release_endpoint_leases(conn, endpoint_id=session_id)
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
    await release_endpoint_leases(conn, endpoint_id=session_id, worker_id=worker_id)


async def delete_expired(conn: AsyncConnection, config: ListenConfig, now: datetime) -> int:
    """Remove sessions not seen for the grace period, with their queued deliveries.

    Concurrency: on PostgreSQL the expired sessions are locked ``FOR UPDATE SKIP LOCKED``,
    so one being resumed right now (``open_session`` holds its lock) is skipped rather than
    deleted under it, and several API processes sweeping at once do not wait on each other.
    """
    cutoff = now - timedelta(seconds=config.grace_period)
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
    await delete_endpoints(conn, ids)
    return len(ids)

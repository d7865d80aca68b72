"""Operational events and the alerts they raise outside webhooks.

``endpoint.failing``, ``endpoint.disabled``, ``endpoint.recovered`` and ``delivery.failed``
are recorded like any event, for the workspace's endpoints that subscribe to them, never for
the endpoint they are about. They also go to the workspace's alert destinations: its hidden
``alert_email`` endpoint (``mailto:`` its ``notify_emails``) and ``alert_slack`` endpoint
(``slack+`` its ``notify_slack_url``). Those are deliveries like any other, so an alert is
retried and recorded, never lost, and it commits with the state change that raised it.

Rate limit: one alert per endpoint and state change. ``endpoints.alert_state`` holds the state
last announced (NULL, ``failing``, ``disabled``); each change is a conditional UPDATE of it,
so with several workers only one announces it. ``delivery.failed`` goes to every subscribed
endpoint for each delivery, but to the alert destinations only for the first one since the
endpoint last succeeded (``endpoints.failure_alerted``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex._signing import generate_secret
from rex.db.schema import deliveries, endpoints
from rex.ids import new_id, rfc3339
from rex.outbox.catalogue import OPERATIONAL_EVENTS, EventType
from rex.outbox.events import notify_queued, record_event
from rex.outbox.operator import delete_endpoints
from rex.outbox.records import (
    AttemptData,
    AttemptOutcome,
    Delivery,
    DeliveryData,
    DeliveryStatus,
    Endpoint,
    EndpointData,
    EndpointKind,
    SystemRole,
)

SLACK_PREFIX = "slack+"
"""An ``alert_slack`` endpoint's URL is this prefix and the Slack incoming-webhook URL: the
worker's transport posts ``{"text": ...}`` to it instead of the signed event."""


def mailto_url(emails: list[str]) -> str:
    """The ``alert_email`` endpoint's URL, as ``rex.mail.transport`` reads it (``mailto:``
    and the addresses, comma-separated)."""
    return "mailto:" + ",".join(quote(e, safe="@+") for e in emails)


ALERT_ROLES = (SystemRole.ALERT_EMAIL.value, SystemRole.ALERT_SLACK.value)

# Only the endpoints a user made through /webhooks raise operational events: not a
# `rex listen` session, nor Rex's own hidden endpoints (an alert about an alert would loop).
WATCHED = sa.and_(endpoints.c.kind == EndpointKind.WEBHOOK.value, endpoints.c.system_role.is_(None))

_ALERT_TARGETS = sa.select(endpoints.c.id).where(
    endpoints.c.workspace_id == sa.bindparam("workspace_id"),
    endpoints.c.enabled.is_(True),
    endpoints.c.system_role.in_(ALERT_ROLES),
)


class EndpointHealthData(EndpointData):
    """What an ``endpoint.*`` event carries: the endpoint as the API shows it, and its health."""

    failing_since: str | None
    last_success_at: str | None


class DeliveryFailedData(DeliveryData):
    """What ``delivery.failed`` carries: the delivery as the API shows it, its last attempt
    (as ``GET /deliveries/{id}`` shows attempts), and its endpoint (as ``endpoint.*`` do)."""

    last_attempt: AttemptData
    endpoint: EndpointHealthData


def endpoint_data(row: Any) -> EndpointHealthData:
    """What an ``endpoint.*`` event carries: the endpoint as the API shows it, and its health."""
    return {
        **Endpoint.from_row(row).public(),
        "failing_since": rfc3339(row.failing_since),
        "last_success_at": rfc3339(row.last_success_at),
    }


async def announce(
    conn: AsyncConnection,
    *,
    row: Any,
    event_type: str,
    data: EndpointHealthData | DeliveryFailedData,
    object_id: str,
    now: datetime,
    alert: bool = True,
) -> str:
    """Record an operational event about the endpoint ``row`` (not sent to it) and, with
    ``alert``, queue it for the workspace's alert destinations. Returns the event id."""
    event_id = await record_event(
        conn,
        workspace_id=row.workspace_id,
        event_type=event_type,
        data=data,
        object_id=object_id,
        now=now,
        exclude_endpoint_id=row.id,
    )
    if alert and row.kind == EndpointKind.WEBHOOK.value and row.system_role is None:
        await queue_alerts(
            conn, workspace_id=row.workspace_id, event_id=event_id, event_type=event_type, now=now
        )
    return event_id


async def queue_alerts(
    conn: AsyncConnection, *, workspace_id: str, event_id: str, event_type: str, now: datetime
) -> int:
    """Queue the event for the workspace's enabled alert endpoints; returns how many."""
    targets = (await conn.execute(_ALERT_TARGETS, {"workspace_id": workspace_id})).scalars().all()
    if not targets:
        return 0
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
    await notify_queued(conn)
    return len(targets)


def render_alert(event: Mapping[str, Any]) -> tuple[str, str]:
    """The subject and text of an alert (email and Slack) for an operational event."""
    kind = event.get("event")
    data = event.get("data") or {}
    endpoint = data.get("endpoint") if kind == EventType.DELIVERY_FAILED else data
    endpoint = endpoint or {}
    name = endpoint.get("description") or endpoint.get("url") or endpoint.get("id") or "?"
    where = f"{endpoint.get('url', '')} ({endpoint.get('id', '')})"
    last_success = endpoint.get("last_success_at") or "never"
    if kind == EventType.ENDPOINT_FAILING:
        subject = f"Webhook endpoint failing: {name}"
        lines = [
            f"Deliveries to {where} have been failing since {endpoint.get('failing_since')}.",
            f"Last successful delivery: {last_success}.",
            "Rex keeps retrying them; it disables the endpoint if it goes on failing.",
        ]
    elif kind == EventType.ENDPOINT_DISABLED:
        subject = f"Webhook endpoint disabled: {name}"
        lines = [
            f"Rex disabled {where}.",
            f"Reason: {endpoint.get('disabled_reason')}",
            'Its deliveries wait; re-enable it with PATCH /webhooks/{id} {"enabled": true}.',
        ]
    elif kind == EventType.ENDPOINT_RECOVERED:
        subject = f"Webhook endpoint recovered: {name}"
        lines = [f"Deliveries to {where} succeed again."]
    else:
        delivery = data
        last = delivery.get("last_attempt") or {}
        outcome = last.get("error") or (
            f"HTTP {last['status_code']}" if last.get("status_code") else "no answer"
        )
        subject = f"Delivery failed: {delivery.get('event')} to {name}"
        lines = [
            f"Delivery {delivery.get('id')} of event {delivery.get('event_id')} "
            f"({delivery.get('event')}) to {where} failed for good after "
            f"{delivery.get('attempt_count')} attempt(s); last outcome: {outcome}.",
            f"Retry it with POST /deliveries/{delivery.get('id')}/retry.",
            "Further deliveries to this endpoint that fail before it succeeds again are not "
            "emailed one by one: see GET /deliveries?status=failed.",
        ]
    return f"[Rex] {subject}", "\n".join(lines) + f"\n\nEvent: {event.get('id')}\n"


def delivery_failed_data(row: Any, endpoint_row: Any, last: AttemptOutcome) -> DeliveryFailedData:
    """What ``delivery.failed`` carries: the delivery, its last attempt, and the endpoint."""
    delivery = Delivery.from_row(row).public()
    return {
        **delivery,
        "status": DeliveryStatus.FAILED.value,
        "last_attempt": {
            "at": rfc3339(last.at),
            "status_code": last.status_code,
            "error": last.error,
            "latency_ms": last.latency_ms,
            "response_excerpt": last.response_excerpt,
        },
        "endpoint": endpoint_data(endpoint_row),
    }


_FAILURE_ALERT = (
    sa.update(endpoints)
    .where(endpoints.c.id == sa.bindparam("endpoint_id"), endpoints.c.failure_alerted.is_(False))
    .values(failure_alerted=True)
)


async def announce_failed_deliveries(
    conn: AsyncConnection, failed: Mapping[str, AttemptOutcome]
) -> int:
    """``delivery.failed`` for each delivery (id → its last outcome) that just failed for
    good, to the endpoints subscribed; to the alert destinations only for the first one
    since its endpoint last succeeded. Deliveries of operational events and test events are
    not announced (two failing endpoints would otherwise tell each other forever)."""
    rows = (
        await conn.execute(
            sa.select(deliveries).where(
                deliveries.c.id.in_(list(failed)),
                deliveries.c.event_type.not_in([*OPERATIONAL_EVENTS, EventType.WEBHOOK_TEST.value]),
            )
        )
    ).all()
    if not rows:
        return 0
    watched = {
        row.id: row
        for row in await conn.execute(
            sa.select(endpoints).where(
                endpoints.c.id.in_({row.endpoint_id for row in rows}), WATCHED
            )
        )
    }
    announced = 0
    for row in sorted(rows, key=lambda r: r.id):
        endpoint_row = watched.get(row.endpoint_id)
        if endpoint_row is None:
            continue
        outcome = failed[row.id]
        alert = (await conn.execute(_FAILURE_ALERT, {"endpoint_id": row.endpoint_id})).rowcount
        await announce(
            conn,
            row=endpoint_row,
            event_type=EventType.DELIVERY_FAILED,
            data=delivery_failed_data(row, endpoint_row, outcome),
            object_id=row.id,
            now=outcome.at,
            alert=bool(alert),
        )
        announced += 1
    return announced


async def sync_alert_endpoint(
    conn: AsyncConnection, *, workspace_id: str, role: SystemRole, url: str | None, now: datetime
) -> None:
    """Create, update or delete the workspace's hidden alert endpoint of ``role`` so that it
    sends to ``url`` (None: no such alerts; its pending alerts go with it)."""
    current = (
        await conn.execute(
            sa.select(endpoints.c.id).where(
                endpoints.c.workspace_id == workspace_id, endpoints.c.system_role == role.value
            )
        )
    ).scalar()
    if url is None:
        if current is not None:
            await delete_endpoints(conn, [current])
        return
    if current is not None:
        await conn.execute(
            sa.update(endpoints)
            .where(endpoints.c.id == current)
            .values(url=url, enabled=True, disabled_reason=None, failing_since=None, updated_at=now)
        )
        return
    await conn.execute(
        sa.insert(endpoints).values(
            id=new_id("wh"),
            workspace_id=workspace_id,
            url=url,
            # Never matched by a subscription: alerts are queued for it by queue_alerts.
            events=[],
            description=f"Operational alerts ({role.value})",
            secret=generate_secret(),
            enabled=True,
            max_concurrency=2,
            kind=EndpointKind.SYSTEM.value,  # never shown through /webhooks
            system_role=role.value,
            created_at=now,
            updated_at=now,
        )
    )

"""What each operations page of the console reads (Home, Webhooks, deliveries, Events,
Settings), one function per page, through the features' services: the routes render what
these return, and ``bench/console.py`` times them.

Every read is scoped to the signed-in workspace: an id of another workspace is a
``NotFound``, exactly as in the API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.console import charts
from rex.console import endpoint_health as h
from rex.console import ops_queries as q
from rex.console.sent import SentRequest, rebuild
from rex.db.pagination import fetch_page
from rex.db.schema import attempts, deliveries, endpoints, events
from rex.delivery import service as delivery_service
from rex.errors import NotFound
from rex.events import service as events_service
from rex.json_types import JsonObject
from rex.outbox.catalogue import EVENT_TYPES
from rex.outbox.records import Attempt, DeliveryData, DeliveryStatus, EndpointKind

PAGE_SIZE = 50
CACHE = q.TTLCache()
"""This process's cache of the figures that may be seconds old (see ``rex.console.ops_queries``)."""
STATUSES = tuple(s.value for s in DeliveryStatus)
EVENT_TYPE_CHOICES = tuple(sorted(EVENT_TYPES))


@dataclass
class Page:
    """One page of a list, as the ``ui.pager`` macro shows it (``rex.console.paging.Page``'s
    shape): its items, the cursor it was asked with and the next page's."""

    items: list[Any]
    next_cursor: str | None
    cursor: str | None = None


def page(items: list[Any], next_cursor: str | None, cursor: str | None) -> Page:
    return Page(items=list(items), next_cursor=next_cursor, cursor=cursor or None)


@dataclass
class Home:
    leads: q.Series
    hourly: q.Series
    latency: q.Latency
    troubled: list[h.EndpointHealth]
    backlog: q.Backlog
    now: datetime

    @property
    def leads_chart(self) -> charts.Html:
        return charts.leads_chart(self.leads)

    @property
    def leads_table(self) -> charts.Html:
        return charts.series_table(
            self.leads, caption="Leads per day by source", label_header="Day (UTC)"
        )

    @property
    def deliveries_chart(self) -> charts.Html:
        return charts.deliveries_chart(self.hourly)

    @property
    def deliveries_table(self) -> charts.Html:
        return charts.series_table(
            self.hourly, caption="Deliveries per hour by outcome", label_header="Hour (UTC)"
        )


async def home(conn: AsyncConnection, workspace_id: str, *, now: datetime) -> Home:
    return Home(
        leads=await q.leads_per_day(conn, workspace_id, now=now, cache=CACHE),
        hourly=await q.deliveries_per_hour(conn, workspace_id, now=now, hours=24, cache=CACHE),
        latency=await q.capture_to_delivery(conn, workspace_id, now=now, cache=CACHE),
        troubled=await h.troubled_endpoints(conn, workspace_id, now=now, cache=CACHE),
        backlog=await q.backlog(conn, workspace_id, now=now),
        now=now,
    )


async def webhooks(
    conn: AsyncConnection, workspace_id: str, *, now: datetime, cursor: str | None
) -> tuple[list[h.EndpointHealth], str | None]:
    return await h.endpoints_page(
        conn, workspace_id, now=now, limit=PAGE_SIZE, cursor=cursor, cache=CACHE
    )


async def endpoint(
    conn: AsyncConnection, workspace_id: str, endpoint_id: str, *, now: datetime
) -> h.EndpointHealth:
    row = (
        await conn.execute(
            sa.select(*h.ENDPOINT_COLUMNS).where(
                endpoints.c.workspace_id == workspace_id,
                endpoints.c.id == endpoint_id,
                endpoints.c.kind == EndpointKind.WEBHOOK.value,
            )
        )
    ).first()
    if row is None:
        raise NotFound("webhook endpoint", endpoint_id)
    return (await h.with_health(conn, workspace_id, [row], now=now, cache=CACHE))[0]


@dataclass
class DeliveryLog:
    rows: list[DeliveryData]
    next_cursor: str | None
    status: str | None
    event_type: str | None
    endpoint_id: str | None
    urls: dict[str, str] = field(default_factory=dict)


async def delivery_log(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    status: str | None,
    event_type: str | None,
    endpoint_id: str | None,
    cursor: str | None,
    limit: int = PAGE_SIZE,
) -> DeliveryLog:
    """Deliveries newest first, filtered by status, event type and endpoint (unknown filter
    values are ``Invalid`` in the route, before this is called)."""
    rows, next_cursor = await delivery_service.page(
        conn,
        workspace_id,
        endpoint_id=endpoint_id,
        status=status,
        event_type=event_type,
        limit=limit,
        cursor=cursor,
    )
    return DeliveryLog(
        rows=rows,
        next_cursor=next_cursor,
        status=status,
        event_type=event_type,
        endpoint_id=endpoint_id,
        urls=await _endpoint_urls(conn, workspace_id, {r["endpoint_id"] for r in rows}),
    )


async def _endpoint_urls(conn: AsyncConnection, workspace_id: str, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = await conn.execute(
        sa.select(endpoints.c.id, endpoints.c.url).where(
            endpoints.c.workspace_id == workspace_id, endpoints.c.id.in_(sorted(ids))
        )
    )
    return {row.id: row.url for row in rows}


@dataclass
class AttemptView:
    attempt: Attempt
    request: SentRequest

    @property
    def succeeded(self) -> bool:
        code = self.attempt.status_code
        return code is not None and 200 <= code < 300


@dataclass
class DeliveryDetail:
    delivery: DeliveryData
    endpoint_url: str
    endpoint_enabled: bool
    body: str
    body_pretty: str
    attempts: list[AttemptView]
    next_request: SentRequest | None
    """The request of the next attempt, when the delivery is still pending."""

    @property
    def request(self) -> SentRequest:
        """The request shown first: the latest attempt's, or the next one's."""
        if self.attempts:
            return self.attempts[-1].request
        assert self.next_request is not None
        return self.next_request


async def delivery_detail(
    conn: AsyncConnection, workspace_id: str, delivery_id: str, *, now: datetime
) -> DeliveryDetail:
    delivery = await delivery_service.get(conn, workspace_id, delivery_id)
    endpoint_row = (
        await conn.execute(
            sa.select(endpoints).where(
                endpoints.c.workspace_id == workspace_id,
                endpoints.c.id == delivery["endpoint_id"],
            )
        )
    ).one()
    payload = (
        await conn.execute(
            sa.select(events.c.payload).where(
                events.c.workspace_id == workspace_id, events.c.id == delivery["event_id"]
            )
        )
    ).scalar_one()
    attempt_rows = await conn.execute(
        sa.select(attempts).where(attempts.c.delivery_id == delivery_id).order_by(attempts.c.at)
    )

    def request(at: datetime | None) -> SentRequest:
        return rebuild(
            delivery_id=delivery_id,
            event_id=delivery["event_id"],
            event_type=delivery["event"],
            payload=payload,
            endpoint=endpoint_row,
            at=at,
            now=now,
        )

    views = [AttemptView(a, request(a.at)) for a in map(Attempt.from_row, attempt_rows)]
    pending = delivery["status"] == DeliveryStatus.PENDING.value
    try:
        pretty = json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        pretty = payload
    return DeliveryDetail(
        delivery=delivery,
        endpoint_url=endpoint_row.url,
        endpoint_enabled=bool(endpoint_row.enabled),
        body=payload,
        body_pretty=pretty,
        attempts=views,
        next_request=request(None) if pending or not views else None,
    )


class DeliveryStatusOf(TypedDict):
    """A delivery of an event, as the Events page lists it."""

    id: str
    status: str


@dataclass
class EventRow:
    id: str
    type: str
    object_id: str | None
    created_at: datetime
    deliveries: list[DeliveryStatusOf]


async def events_log(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    type: str | None,
    object_id: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
) -> tuple[list[EventRow], str | None]:
    """Events newest first, filtered, each with its deliveries (one query for the page)."""
    query = sa.select(events.c.id, events.c.type, events.c.object_id, events.c.created_at).where(
        events.c.workspace_id == workspace_id
    )
    if type is not None:
        query = query.where(events.c.type == type)
    if object_id is not None:
        query = query.where(events.c.object_id == object_id)
    if since is not None:
        query = query.where(events.c.created_at >= since)
    if until is not None:
        query = query.where(events.c.created_at < until)
    rows, next_cursor = await fetch_page(conn, query, events.c.id, limit=PAGE_SIZE, cursor=cursor)
    found = {row.id: EventRow(row.id, row.type, row.object_id, row.created_at, []) for row in rows}
    if found:
        # No ORDER BY: it would lead the planner to walk the workspace's deliveries in id
        # order instead of looking up these events' through the event_id index.
        rows_of_page = await conn.execute(
            sa.select(deliveries.c.id, deliveries.c.event_id, deliveries.c.status).where(
                deliveries.c.workspace_id == workspace_id, deliveries.c.event_id.in_(found)
            )
        )
        for row in sorted(rows_of_page, key=lambda r: r.id):
            found[row.event_id].deliveries.append({"id": row.id, "status": row.status})
    return list(found.values()), next_cursor


async def event_detail(
    conn: AsyncConnection, workspace_id: str, event_id: str
) -> tuple[str, JsonObject]:
    """The event's envelope exactly as delivered (text) and, parsed, with its deliveries."""
    event = await events_service.get(conn, workspace_id, event_id)
    payload = (
        await conn.execute(sa.select(events.c.payload).where(events.c.id == event_id))
    ).scalar_one()
    return payload, event

"""Events: the workspace's events newest first, filtered by type, object id and time range,
each with its deliveries; an event's page shows its envelope exactly as delivered."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from starlette.responses import Response

from rex.console import ops_pages
from rex.console.auth import RuntimeDep, ViewerDep
from rex.console.pages.webhooks import parse_moment
from rex.console.routing import console_router
from rex.console.templating import render
from rex.errors import Invalid

router = console_router()

Text = Annotated[str | None, Query(max_length=200)]


@router.get("/events")
async def event_list(
    request: Request,
    viewer: ViewerDep,
    runtime: RuntimeDep,
    type: Text = None,
    object_id: Text = None,
    since: Text = None,
    until: Text = None,
    cursor: Text = None,
) -> Response:
    if type and type not in ops_pages.EVENT_TYPE_CHOICES:
        raise Invalid("type", f"type: {type!r} is not an event type of Rex.")
    start, end = parse_moment(since, "since"), parse_moment(until, "until")
    if start and end and end <= start:
        raise Invalid("until", "until: must be after since.")
    async with runtime.db.read() as conn:
        rows, next_cursor = await ops_pages.events_log(
            conn,
            viewer.workspace_id,
            type=type or None,
            object_id=(object_id or "").strip() or None,
            since=start,
            until=end,
            cursor=cursor or None,
        )
    return render(
        request,
        "events.html",
        {
            "nav": "events",
            "page": ops_pages.page(rows, next_cursor, cursor),
            "type_options": [(t, t) for t in ops_pages.EVENT_TYPE_CHOICES],
            "filters": {
                "type": type or "",
                "object_id": object_id or "",
                "since": since or "",
                "until": until or "",
            },
        },
    )


@router.get("/events/{event_id}")
async def event_detail(
    event_id: str, request: Request, viewer: ViewerDep, runtime: RuntimeDep
) -> Response:
    async with runtime.db.read() as conn:
        payload, event = await ops_pages.event_detail(conn, viewer.workspace_id, event_id)
    return render(request, "event.html", {"nav": "events", "payload": payload, "event": event})

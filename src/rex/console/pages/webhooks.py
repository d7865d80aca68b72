"""Webhooks: endpoints with their health; create (the secret shown once), edit the events,
enable and disable, rotate the secret (shown once), send a test, recover failed deliveries;
the delivery log (by status and event type) and a delivery's detail, with Retry.

Every write goes through ``rex.webhooks.service`` / ``rex.delivery.service``, as the API's
do, so the same events and deliveries follow. A page showing a secret answers the POST
itself (never a redirect carrying it) with ``Cache-Control: no-store``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Form, Query, Request
from starlette.responses import RedirectResponse, Response

from rex.console import ops_pages
from rex.console.auth import RuntimeDep, ViewerDep
from rex.console.forms import parse
from rex.console.routing import console_router
from rex.console.templating import render
from rex.delivery import service as delivery_service
from rex.errors import Invalid
from rex.outbox.catalogue import EVENT_TYPES, WILDCARD
from rex.webhooks import service as webhooks_service
from rex.webhooks.schemas import EndpointCreate, EndpointUpdate, Recovery, SecretRotation

router = console_router()

Text = Annotated[str | None, Query(max_length=200)]
NO_STORE = {"Cache-Control": "no-store"}
SUBSCRIBABLE = tuple(sorted(t for t in EVENT_TYPES if t != "webhook.test"))


def _choice(value: str | None, allowed: tuple[str, ...], field: str) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise Invalid(field, f"{field}: {value!r} is not one of {', '.join(allowed)}.")
    return value


def _events(selected: list[str], all_events: str | None) -> list[str] | str:
    if all_events:
        return WILDCARD
    if not selected:
        raise Invalid("events", "events: pick at least one event, or every event.")
    return selected


def _see(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


@router.get("/webhooks")
async def endpoint_list(
    request: Request, viewer: ViewerDep, runtime: RuntimeDep, cursor: Text = None
) -> Response:
    async with runtime.db.read() as conn:
        items, next_cursor = await ops_pages.webhooks(
            conn, viewer.workspace_id, now=runtime.clock.now(), cursor=cursor or None
        )
    return render(
        request,
        "webhooks.html",
        {
            "nav": "webhooks",
            "page": ops_pages.page(items, next_cursor, cursor),
            "event_types": SUBSCRIBABLE,
        },
    )


@router.post("/webhooks")
async def create_endpoint(
    request: Request,
    viewer: ViewerDep,
    runtime: RuntimeDep,
    url: Annotated[str, Form(max_length=2048)] = "",
    description: Annotated[str, Form(max_length=1000)] = "",
    events: Annotated[list[str] | None, Form()] = None,
    all_events: Annotated[str | None, Form()] = None,
) -> Response:
    body = parse(
        EndpointCreate,
        {
            "url": url.strip(),
            "description": description,
            "events": _events(events or [], all_events),
        },
    )
    async with runtime.db.transaction() as conn:
        created = await webhooks_service.create(
            conn,
            viewer.workspace_id,
            body,
            runtime.destination_policy,
            max_endpoints=runtime.settings.max_endpoints_per_workspace,
        )
    return render(
        request,
        "secret_once.html",
        {
            "nav": "webhooks",
            "title": "Endpoint created",
            "endpoint": created,
            "secret": created["secret"],
            "what": "This endpoint's signing secret",
        },
        headers=NO_STORE,
    )


@router.get("/webhooks/{endpoint_id}")
async def endpoint_detail(
    endpoint_id: str,
    request: Request,
    viewer: ViewerDep,
    runtime: RuntimeDep,
    done: Text = None,
) -> Response:
    async with runtime.db.read() as conn:
        endpoint = await ops_pages.endpoint(
            conn, viewer.workspace_id, endpoint_id, now=runtime.clock.now()
        )
        log = await ops_pages.delivery_log(
            conn,
            viewer.workspace_id,
            status=None,
            event_type=None,
            endpoint_id=endpoint_id,
            cursor=None,
            limit=10,
        )
    notices = {
        "saved": "Saved.",
        "enabled": "Endpoint enabled.",
        "disabled": "Endpoint disabled: nothing is sent to it until you enable it again.",
        "test": "Test event queued: see its delivery below.",
    }
    return render(
        request,
        "endpoint.html",
        {
            "nav": "webhooks",
            "endpoint": endpoint,
            "log": log,
            "event_types": SUBSCRIBABLE,
            "notice": notices.get(done or ""),
            "now": runtime.clock.now(),
        },
    )


@router.post("/webhooks/{endpoint_id}/events")
async def edit_events(
    endpoint_id: str,
    viewer: ViewerDep,
    runtime: RuntimeDep,
    events: Annotated[list[str] | None, Form()] = None,
    all_events: Annotated[str | None, Form()] = None,
    description: Annotated[str | None, Form(max_length=1000)] = None,
    has_description: Annotated[str | None, Form(max_length=1)] = None,
) -> Response:
    """The endpoint page's form: its events and its description. An emptied Description
    clears it (``has_description`` says the form had the field: an empty field arrives as
    nothing at all, which otherwise would leave the description as it was)."""
    values: dict[str, Any] = {"events": _events(events or [], all_events)}
    text = (description or "").strip()
    if text:
        values["description"] = text
    body = parse(EndpointUpdate, values)  # drops empty values: "clear" is said explicitly
    if not text and has_description:
        changes = body.model_dump(exclude_unset=True)
        body = EndpointUpdate.model_validate({**changes, "description": None})
    async with runtime.db.transaction() as conn:
        await webhooks_service.update(
            conn, viewer.workspace_id, endpoint_id, body, runtime.destination_policy
        )
    return _see(f"/console/webhooks/{endpoint_id}?done=saved")


@router.post("/webhooks/{endpoint_id}/enabled")
async def set_enabled(
    endpoint_id: str,
    viewer: ViewerDep,
    runtime: RuntimeDep,
    enabled: Annotated[str, Form()] = "",
) -> Response:
    on = enabled == "true"
    async with runtime.db.transaction() as conn:
        await webhooks_service.update(
            conn,
            viewer.workspace_id,
            endpoint_id,
            EndpointUpdate(enabled=on),
            runtime.destination_policy,
        )
    return _see(f"/console/webhooks/{endpoint_id}?done={'enabled' if on else 'disabled'}")


@router.post("/webhooks/{endpoint_id}/rotate-secret")
async def rotate_secret(
    endpoint_id: str, request: Request, viewer: ViewerDep, runtime: RuntimeDep
) -> Response:
    async with runtime.db.transaction() as conn:
        endpoint = await webhooks_service.rotate_secret(
            conn, viewer.workspace_id, endpoint_id, SecretRotation(), now=runtime.clock.now()
        )
    return render(
        request,
        "secret_once.html",
        {
            "nav": "webhooks",
            "title": "Secret rotated",
            "endpoint": endpoint,
            "secret": endpoint["secret"],
            "what": "The new signing secret",
            "rotation": True,
        },
        headers=NO_STORE,
    )


@router.post("/webhooks/{endpoint_id}/test")
async def send_test(endpoint_id: str, viewer: ViewerDep, runtime: RuntimeDep) -> Response:
    async with runtime.db.transaction() as conn:
        delivery = await webhooks_service.send_test(conn, viewer.workspace_id, endpoint_id)
    return _see(f"/console/deliveries/{delivery['id']}?done=test")


@router.post("/webhooks/{endpoint_id}/recover")
async def recover(
    endpoint_id: str,
    viewer: ViewerDep,
    runtime: RuntimeDep,
    since: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    moment = parse_moment(since, "since")
    if moment is None:
        raise Invalid("since", "since: give the date and time to recover failed deliveries from.")
    async with runtime.db.transaction() as conn:
        result = await webhooks_service.recover(
            conn, viewer.workspace_id, endpoint_id, Recovery(since=moment)
        )
    return _see(
        f"/console/deliveries?endpoint={endpoint_id}&status=pending&requeued={result['requeued']}"
    )


def parse_moment(value: str | None, field: str) -> datetime | None:
    """A ``datetime-local`` value (read as UTC) or an RFC 3339 time; ``Invalid`` otherwise."""
    if not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(
            field, f"{field}: {value!r} is not a date and time (2026-03-16T12:00)."
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@router.get("/deliveries")
async def delivery_list(
    request: Request,
    viewer: ViewerDep,
    runtime: RuntimeDep,
    status: Text = None,
    event_type: Text = None,
    endpoint: Text = None,
    cursor: Text = None,
    requeued: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    picked_status = _choice(status, ops_pages.STATUSES, "status")
    picked_type = _choice(event_type, ops_pages.EVENT_TYPE_CHOICES, "event_type")
    async with runtime.db.read() as conn:
        shown_endpoint = None
        if endpoint:
            shown_endpoint = await ops_pages.endpoint(
                conn, viewer.workspace_id, endpoint, now=runtime.clock.now()
            )
        log = await ops_pages.delivery_log(
            conn,
            viewer.workspace_id,
            status=picked_status,
            event_type=picked_type,
            endpoint_id=endpoint or None,
            cursor=cursor or None,
        )
    notice = None
    if requeued is not None:
        notice = f"{requeued} failed {'delivery' if requeued == 1 else 'deliveries'} due again now."
    return render(
        request,
        "deliveries.html",
        {
            "nav": "webhooks",
            "log": log,
            "page": ops_pages.page(log.rows, log.next_cursor, cursor),
            "endpoint": shown_endpoint,
            "status_options": [(s, s) for s in ops_pages.STATUSES],
            "type_options": [(t, t) for t in ops_pages.EVENT_TYPE_CHOICES],
            "notice": notice,
        },
    )


@router.get("/deliveries/{delivery_id}")
async def delivery_detail(
    delivery_id: str,
    request: Request,
    viewer: ViewerDep,
    runtime: RuntimeDep,
    done: Text = None,
) -> Response:
    async with runtime.db.read() as conn:
        detail = await ops_pages.delivery_detail(
            conn, viewer.workspace_id, delivery_id, now=runtime.clock.now()
        )
    notices = {
        "retry": "Retry queued: the delivery is due now. Reload to see its new attempt.",
        "test": "Test event queued. Reload to see its attempt.",
    }
    return render(
        request,
        "delivery.html",
        {"nav": "webhooks", "detail": detail, "notice": notices.get(done or "")},
    )


@router.post("/deliveries/{delivery_id}/retry")
async def retry(delivery_id: str, viewer: ViewerDep, runtime: RuntimeDep) -> Response:
    async with runtime.db.transaction() as conn:
        await delivery_service.retry(conn, viewer.workspace_id, delivery_id)
    return _see(f"/console/deliveries/{delivery_id}?done=retry")

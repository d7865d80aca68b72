"""Operator commands on the HTTP API: webhooks, deliveries, events, contacts.

Each reads ``REX_URL`` and ``REX_API_KEY``, prints a table (or ``--json``: the object, or a
JSON array for lists), and fails with one line on stderr.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from rex.cli.api import RexApi, connect
from rex.cli.output import (
    Column,
    JsonOption,
    console,
    field,
    print_json,
    print_record,
    print_table,
    say,
    time_field,
    when,
)
from rex.json_types import JsonObject

webhooks_app = typer.Typer(no_args_is_help=True, help="Webhook endpoints (subscriptions).")
deliveries_app = typer.Typer(no_args_is_help=True, help="Deliveries of events to endpoints.")
events_app = typer.Typer(no_args_is_help=True, help="Events Rex emitted.")
contacts_app = typer.Typer(no_args_is_help=True, help="Contacts.")

LimitOption = Annotated[
    int, typer.Option("--limit", min=1, max=10_000, help="How many to show, newest first.")
]
IdArgument = Annotated[
    str, typer.Argument(metavar="ID", help="The object's id.", show_default=False)
]


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


# -- webhooks --------------------------------------------------------------------------

ENDPOINT_COLUMNS: list[Column] = [
    ("ID", field("id")),
    ("URL", field("url")),
    ("EVENTS", field("events")),
    (
        "ENABLED",
        lambda e: e.get("enabled") if e.get("enabled") else e.get("disabled_reason") or False,
    ),
    ("CREATED", time_field("created_at")),
]


def _endpoint_record(endpoint: Mapping[str, Any]) -> list[tuple[str, Any]]:
    pairs = [
        ("id", endpoint.get("id")),
        ("url", endpoint.get("url")),
        ("events", endpoint.get("events")),
        ("description", endpoint.get("description")),
        ("enabled", endpoint.get("enabled")),
        ("disabled_reason", endpoint.get("disabled_reason")),
        ("created_at", endpoint.get("created_at")),
    ]
    if "secret" in endpoint:
        pairs.append(("secret", endpoint["secret"]))
    return pairs


@webhooks_app.command("list")
def webhooks_list(limit: LimitOption = 20, as_json: JsonOption = False) -> None:
    """List webhook endpoints."""
    with connect() as api:
        endpoints = list(api.pages("/webhooks", limit=limit))
    if as_json:
        print_json(endpoints)
        return
    print_table(
        endpoints, ENDPOINT_COLUMNS, empty="No webhook endpoints yet (rex webhooks create URL)."
    )


@webhooks_app.command("create")
def webhooks_create(
    url: Annotated[
        str, typer.Argument(metavar="URL", help="Where to POST events.", show_default=False)
    ],
    events: Annotated[
        str, typer.Option(help='Comma-separated event names, or "*" for every event.')
    ] = "*",
    secret: Annotated[
        str | None, typer.Option(help="Signing secret (one is generated when absent).")
    ] = None,
    description: Annotated[str | None, typer.Option(help="A note for people.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Subscribe URL to events. The secret is printed only now."""
    body: JsonObject = {"url": url, "events": _csv(events)}
    if secret is not None:
        body["secret"] = secret
    if description is not None:
        body["description"] = description
    with connect() as api:
        endpoint = api.post("/webhooks", body)["data"]
    if as_json:
        print_json(endpoint)
        return
    print_record(_endpoint_record(endpoint), title="Created webhook endpoint")
    say("The secret is shown only now: keep it where your receiver can read it.")


@webhooks_app.command("delete")
def webhooks_delete(endpoint_id: IdArgument, as_json: JsonOption = False) -> None:
    """Delete an endpoint and its pending deliveries."""
    with connect() as api:
        deleted = api.delete(f"/webhooks/{endpoint_id}")["data"]
    if as_json:
        print_json(deleted)
        return
    say(f"Deleted webhook endpoint {deleted['id']}.")


@webhooks_app.command("test")
def webhooks_test(endpoint_id: IdArgument, as_json: JsonOption = False) -> None:
    """Send a webhook.test event to an endpoint now, whatever its filter."""
    with connect() as api:
        delivery = api.post(f"/webhooks/{endpoint_id}/test")["data"]
    if as_json:
        print_json(delivery)
        return
    say(
        f"Sent webhook.test to {endpoint_id}: delivery {delivery['id']} ({delivery['status']}; "
        f"see `rex deliveries get {delivery['id']}`)."
    )


# -- deliveries ------------------------------------------------------------------------

DELIVERY_COLUMNS: list[Column] = [
    ("ID", field("id")),
    ("EVENT", field("event")),
    ("STATUS", field("status")),
    ("ATTEMPTS", field("attempt_count")),
    ("NEXT ATTEMPT", time_field("next_attempt_at")),
    ("ENDPOINT", field("endpoint_id")),
    ("EVENT ID", field("event_id")),
    ("CREATED", time_field("created_at")),
]

ATTEMPT_COLUMNS: list[Column] = [
    ("AT", time_field("at")),
    ("STATUS", lambda a: a.get("status_code") or "-"),
    ("ERROR", field("error")),
    ("LATENCY", lambda a: f"{a.get('latency_ms')} ms"),
    ("RESPONSE", lambda a: " ".join(str(a.get("response_excerpt") or "").split())[:80] or None),
]


def _endpoint_deliveries(
    api: RexApi, endpoint_id: str, *, failed: bool, limit: int
) -> list[JsonObject]:
    status = "failed" if failed else None
    items = api.pages(f"/webhooks/{endpoint_id}/deliveries", limit=limit, status=status)
    return [d for d in items if not failed or d.get("status") == "failed"]


@deliveries_app.command("list")
def deliveries_list(
    failed: Annotated[bool, typer.Option("--failed", help="Only failed deliveries.")] = False,
    endpoint: Annotated[
        str | None, typer.Option(help="Only this endpoint's (default: every endpoint's).")
    ] = None,
    limit: LimitOption = 20,
    as_json: JsonOption = False,
) -> None:
    """List deliveries, newest first."""
    with connect() as api:
        if endpoint is not None:
            deliveries = _endpoint_deliveries(api, endpoint, failed=failed, limit=limit)
        else:
            deliveries = []
            for each in api.pages("/webhooks", limit=10_000):
                deliveries += _endpoint_deliveries(api, each["id"], failed=failed, limit=limit)
            # Ids are time-sortable: newest first across endpoints.
            deliveries = sorted(deliveries, key=lambda d: str(d["id"]), reverse=True)[:limit]
    if as_json:
        print_json(deliveries)
        return
    print_table(
        deliveries,
        DELIVERY_COLUMNS,
        empty="No failed deliveries." if failed else "No deliveries.",
    )


@deliveries_app.command("get")
def deliveries_get(delivery_id: IdArgument, as_json: JsonOption = False) -> None:
    """Show a delivery and every attempt made."""
    with connect() as api:
        delivery = api.get(f"/deliveries/{delivery_id}")["data"]
    if as_json:
        print_json(delivery)
        return
    print_record(
        [(name.lower().replace(" ", "_"), get(delivery)) for name, get in DELIVERY_COLUMNS],
        title=f"Delivery {delivery['id']}",
    )
    print_table(delivery.get("attempts") or [], ATTEMPT_COLUMNS, empty="No attempts yet.")


@deliveries_app.command("retry")
def deliveries_retry(delivery_id: IdArgument, as_json: JsonOption = False) -> None:
    """Send a delivery again now (a new attempt of the same event id)."""
    with connect() as api:
        delivery = api.post(f"/deliveries/{delivery_id}/retry")["data"]
    if as_json:
        print_json(delivery)
        return
    say(
        f"Retrying delivery {delivery['id']} of {delivery.get('event')} "
        f"({delivery.get('status')}, {delivery.get('attempt_count')} attempt(s) so far)."
    )


# -- events ----------------------------------------------------------------------------


def _event_type(event: Mapping[str, Any]) -> Any:
    return event.get("event") or event.get("type")


EVENT_COLUMNS: list[Column] = [
    ("ID", field("id")),
    ("TYPE", _event_type),
    ("OBJECT", field("object_id")),
    ("CREATED", lambda e: when(e.get("created_at") or e.get("timestamp"))),
]


@events_app.command("list")
def events_list(
    type: Annotated[str | None, typer.Option("--type", help="Only this event type.")] = None,
    object_id: Annotated[str | None, typer.Option(help="Only events about this object.")] = None,
    since: Annotated[str | None, typer.Option(help="From this time (RFC 3339).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (RFC 3339).")] = None,
    limit: LimitOption = 20,
    as_json: JsonOption = False,
) -> None:
    """List events, newest first."""
    with connect() as api:
        events = list(
            api.pages(
                "/events", limit=limit, type=type, object_id=object_id, since=since, until=until
            )
        )
    if as_json:
        print_json(events)
        return
    print_table(events, EVENT_COLUMNS, empty="No events.")


@events_app.command("get")
def events_get(event_id: IdArgument, as_json: JsonOption = False) -> None:
    """Show an event, its payload and its deliveries."""
    with connect() as api:
        event = api.get(f"/events/{event_id}")["data"]
    if as_json:
        print_json(event)
        return
    print_record(
        [(name.lower(), get(event)) for name, get in EVENT_COLUMNS], title=f"Event {event['id']}"
    )
    payload = {k: v for k, v in event.items() if k not in {"deliveries"}}
    body = payload.get("data", payload.get("payload", payload))
    console().print(json.dumps(body, indent=2, ensure_ascii=False))
    print_table(
        event.get("deliveries") or [],
        DELIVERY_COLUMNS,
        empty="No deliveries (no endpoint was subscribed).",
        title="Deliveries",
    )


# -- contacts --------------------------------------------------------------------------

CONTACT_COLUMNS: list[Column] = [
    ("ID", field("id")),
    ("EMAIL", field("email")),
    (
        "NAME",
        lambda c: " ".join(p for p in (c.get("first_name"), c.get("last_name")) if p) or None,
    ),
    ("STAGE", field("stage")),
    ("SOURCE", field("source")),
    ("CREATED", time_field("created_at")),
]


@contacts_app.command("list")
def contacts_list(
    email: Annotated[str | None, typer.Option(help="Only this email address.")] = None,
    stage: Annotated[str | None, typer.Option(help="Only contacts in this stage.")] = None,
    limit: LimitOption = 20,
    as_json: JsonOption = False,
) -> None:
    """List contacts, newest first."""
    with connect() as api:
        contacts = list(api.pages("/contacts", limit=limit, email=email, stage=stage))
    if as_json:
        print_json(contacts)
        return
    print_table(contacts, CONTACT_COLUMNS, empty="No contacts.")

"""``rex trigger EVENT``: make the real event happen, through the API, with sample objects.

Like ``stripe trigger``, nothing is faked: a sample contact, deal or task is created (and
then changed or deleted, as the event needs) with the same requests an application would
send, so the real event, with its real payload, reaches every subscribed endpoint and every
``rex listen`` session. The objects are left in place, marked as samples.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from rex.cli._errors import CliError
from rex.cli.api import RexApi, connect
from rex.cli.output import JsonOption, print_json, say
from rex.json_types import JsonObject
from rex.outbox.catalogue import OPERATIONAL_EVENTS, EventType, is_custom_event_name

SAMPLE_SOURCE = "rex trigger"


@dataclass
class Run:
    """What a trigger did: each step's request and the object it returned."""

    api: RexApi
    steps: list[JsonObject] = field(default_factory=list)

    def call(self, method: str, path: str, body: Any = None) -> JsonObject:
        data: JsonObject = self.api.request(method, path, json=body)["data"]
        self.steps.append({"request": f"{method} {path}", "data": data})
        return data


def _sample_email() -> str:
    return f"sample+{secrets.token_hex(6)}@example.com"


def _contact(run: Run) -> JsonObject:
    return run.call(
        "POST",
        "/contacts",
        {
            "email": _sample_email(),
            "first_name": "Sample",
            "last_name": "Contact",
            "company": "Example Inc.",
            "source": SAMPLE_SOURCE,
            "metadata": {"sample": True},
        },
    )


def _deal(run: Run) -> JsonObject:
    # The default pipeline and its first stage apply (DESIGN.md: deals).
    return run.call("POST", "/deals", {"name": "Sample deal", "amount": 120_000, "currency": "USD"})


def _task(run: Run) -> JsonObject:
    return run.call("POST", "/tasks", {"title": "Sample task", "body": "Made by rex trigger."})


def contact_updated(run: Run) -> None:
    contact = _contact(run)
    run.call("PATCH", f"/contacts/{contact['id']}", {"stage": "customer", "phone": "+15550100"})


def contact_deleted(run: Run) -> None:
    run.call("DELETE", f"/contacts/{_contact(run)['id']}")


def deal_updated(run: Run) -> None:
    run.call("PATCH", f"/deals/{_deal(run)['id']}", {"amount": 150_000})


def deal_stage_changed(run: Run) -> None:
    deal = _deal(run)
    # "lead" -> "qualified" in the default pipeline.
    target = "proposal" if deal.get("stage") == "qualified" else "qualified"
    run.call("PATCH", f"/deals/{deal['id']}", {"stage": target})


def deal_deleted(run: Run) -> None:
    run.call("DELETE", f"/deals/{_deal(run)['id']}")


def task_updated(run: Run) -> None:
    run.call("PATCH", f"/tasks/{_task(run)['id']}", {"title": "Sample task (edited)"})


def task_completed(run: Run) -> None:
    run.call("PATCH", f"/tasks/{_task(run)['id']}", {"status": "done"})


def task_deleted(run: Run) -> None:
    run.call("DELETE", f"/tasks/{_task(run)['id']}")


def webhook_test(run: Run, endpoint: str | None = None) -> None:
    """A test event to every enabled endpoint and every listen session (or to one)."""
    if endpoint is not None:
        path = "/listen/sessions" if _is_listen_session(run.api, endpoint) else "/webhooks"
        run.call("POST", f"{path}/{endpoint}/test")
        return
    targets = [
        f"/webhooks/{e['id']}/test"
        for e in run.api.pages("/webhooks", limit=10_000)
        if e["enabled"]
    ]
    targets += [
        f"/listen/sessions/{s['id']}/test" for s in run.api.pages("/listen/sessions", limit=1000)
    ]
    if not targets:
        raise CliError(
            "nothing to test: no enabled webhook endpoint and no rex listen session "
            "(rex webhooks create URL, or rex listen --forward-to URL)"
        )
    for target in targets:
        run.call("POST", target)


def _is_listen_session(api: RexApi, endpoint_id: str) -> bool:
    return any(s["id"] == endpoint_id for s in api.pages("/listen/sessions", limit=1000))


FIXTURES: dict[str, Callable[[Run], Any]] = {
    EventType.CONTACT_CREATED: _contact,
    EventType.CONTACT_UPDATED: contact_updated,
    EventType.CONTACT_DELETED: contact_deleted,
    EventType.DEAL_CREATED: _deal,
    EventType.DEAL_UPDATED: deal_updated,
    EventType.DEAL_STAGE_CHANGED: deal_stage_changed,
    EventType.DEAL_DELETED: deal_deleted,
    EventType.TASK_CREATED: _task,
    EventType.TASK_UPDATED: task_updated,
    EventType.TASK_COMPLETED: task_completed,
    EventType.TASK_DELETED: task_deleted,
    EventType.WEBHOOK_TEST: webhook_test,
}


def publish_custom(run: Run, event: str, data: str | None, object_id: str | None) -> None:
    """Publish an event of the workspace's own type: ``data`` as given, else the first of
    its schema's ``examples``, else an empty object (the server checks it either way)."""
    payload: Any
    if data is not None:
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise CliError(f"--data is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise CliError('--data must be a JSON object, like \'{"invoice_id": "in_1"}\'')
    else:
        found: JsonObject = run.api.request("GET", f"/event-types/{event}")["data"]
        schema = found.get("schema") or {}
        examples = schema.get("examples") if isinstance(schema, dict) else None
        payload = examples[0] if isinstance(examples, list) and examples else {}
    body: JsonObject = {"type": event, "data": payload}
    if object_id is not None:
        body["object_id"] = object_id
    run.call("POST", "/events", body)


def trigger(
    event: Annotated[
        str,
        typer.Argument(
            metavar="EVENT",
            help=(
                "The event to cause: "
                + ", ".join(sorted(FIXTURES))
                + ", or one of your own types (GET /event-types)."
            ),
            show_default=False,
        ),
    ],
    endpoint: Annotated[
        str | None,
        typer.Option(help="webhook.test only: test this endpoint or listen session alone."),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help=(
                "Your own event types only: the event's data, a JSON object (default: the "
                "first of its schema's examples, else {})."
            )
        ),
    ] = None,
    object_id: Annotated[
        str | None, typer.Option(help="Your own event types only: what the event is about.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Cause EVENT for real with sample objects, so it reaches every subscriber; an event
    type of your own is published (POST /events)."""
    custom = event not in FIXTURES and is_custom_event_name(event)
    if (data is not None or object_id is not None) and not custom:
        raise CliError("--data and --object-id only apply to your own event types")
    if custom:
        if endpoint is not None:
            raise CliError("--endpoint only applies to webhook.test")
        with connect() as api:
            run = Run(api)
            publish_custom(run, event, data, object_id)
        if as_json:
            print_json(run.steps)
            return
        say(f"  POST /events  ->  {run.steps[0]['data'].get('id', '')}  {event}")
        say(f"Triggered {event}: watch your listener (or `rex events list --type {event}`).")
        return
    if event not in FIXTURES:
        if event in OPERATIONAL_EVENTS:
            raise CliError(
                f"{event} is an operational event: Rex emits it itself when an endpoint's "
                "health changes or a delivery fails for good; it cannot be triggered"
            )
        raise CliError(f"unknown event {event!r}; choose one of: {', '.join(sorted(FIXTURES))}")
    if endpoint is not None and event != EventType.WEBHOOK_TEST:
        raise CliError("--endpoint only applies to webhook.test")
    with connect() as api:
        run = Run(api)
        if event == EventType.WEBHOOK_TEST:
            webhook_test(run, endpoint)
        else:
            FIXTURES[event](run)
    if as_json:
        print_json(run.steps)
        return
    for step in run.steps:
        made = step["data"]
        label = made.get("email") or made.get("name") or made.get("title") or made.get("event")
        say(f"  {step['request']}  ->  {made.get('id', '')}  {label or ''}".rstrip())
    say(f"Triggered {event}: watch your listener (or `rex events list --type {event}`).")

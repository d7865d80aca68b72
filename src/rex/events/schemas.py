"""Response shapes for the events API, and the payloads Rex POSTs to webhook endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rex.contacts.schemas import Contact
from rex.deals.schemas import Deal
from rex.delivery.schemas import Delivery
from rex.json_types import JsonObject
from rex.outbox.catalogue import EventType
from rex.tasks.schemas import Task

_EVENT_EXAMPLE: JsonObject = {
    "id": "evt_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
    "event": "deal.updated",
    "timestamp": "2026-03-16T12:00:01Z",
    "data": {
        "id": "deal_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
        "name": "Acme - 50 seats",
        "amount": 1500000,
        "currency": "USD",
        "stage": "proposal",
        "status": "open",
    },
    "previous_attributes": {"amount": 1200000, "stage": "qualified"},
}


class Event(BaseModel):
    """An event exactly as it was (or will be) POSTed to subscribed endpoints."""

    model_config = ConfigDict(
        populate_by_name=True, json_schema_extra={"examples": [_EVENT_EXAMPLE]}
    )

    id: str = Field(
        examples=["evt_01HQ3Z8W6X9Y2V4T5R7P8N0M1K"],
        description="The deduplication key: retries of one event reuse it.",
    )
    event: str = Field(
        examples=["deal.updated"],
        description="The event type: a built-in one, or one of your own (`GET /event-types`).",
    )
    timestamp: str = Field(examples=["2026-03-16T12:00:01Z"])
    data: JsonObject = Field(
        description="The object as the API returns it (your own events: the data published)."
    )
    previous_attributes: JsonObject | None = Field(
        None, description="`*.updated` only: old values of exactly the fields that changed."
    )
    from_: str | None = Field(
        None, alias="from", description="`deal.stage_changed` only: the stage left."
    )
    to: str | None = Field(None, description="`deal.stage_changed` only: the stage entered.")


class EventTypeCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "invoice.paid",
                    "description": "An invoice was paid in the billing system.",
                    "schema": {
                        "type": "object",
                        "required": ["invoice_id", "amount"],
                        "properties": {
                            "invoice_id": {"type": "string"},
                            "amount": {"type": "integer", "minimum": 0},
                        },
                    },
                }
            ]
        },
    )

    name: str = Field(
        min_length=1,
        max_length=200,
        description=(
            "Lower-case words joined by dots (`invoice.paid`, `trial.started`), at most 64 "
            "characters, not a built-in type's name."
        ),
    )
    description: str | None = Field(None, max_length=1000)
    schema_: JsonObject | None = Field(
        None,
        alias="schema",
        description=(
            "A JSON Schema (draft 2020-12 unless its `$schema` says otherwise) that the `data` "
            "of every published event must satisfy; only references inside it (`#/...`)."
        ),
    )


class EventTypeRecord(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str | None = Field(
        examples=["et_01HQ3Z8W6X9Y2V4T5R7P8N0M1K"], description="null for built-in types."
    )
    name: str = Field(examples=["invoice.paid"])
    description: str | None
    schema_: JsonObject | None = Field(alias="schema")
    builtin: bool = Field(description="true for the types Rex emits itself.")
    archived: bool = Field(description="Archived (deleted) types can no longer be published.")
    created_at: str | None
    updated_at: str | None


class EventTypeEnvelope(BaseModel):
    data: EventTypeRecord


class EventTypeList(BaseModel):
    data: list[EventTypeRecord]
    next_cursor: str | None = Field(description="Always null: every type is on one page.")


class EventPublish(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "invoice.paid",
                    "data": {"invoice_id": "in_1042", "amount": 4900},
                    "object_id": "in_1042",
                }
            ]
        },
    )

    type: str = Field(min_length=1, max_length=200, description="One of your own event types.")
    data: JsonObject = Field(description="The event's data, checked against its schema.")
    object_id: str | None = Field(
        None,
        min_length=1,
        max_length=40,
        description="What the event is about, for `GET /events?object_id=`.",
    )


class EventWithDeliveries(Event):
    deliveries: list[Delivery] = Field(description="One per endpoint the event was sent to.")


class EventEnvelope(BaseModel):
    data: EventWithDeliveries


class EventList(BaseModel):
    data: list[Event]
    next_cursor: str | None


# --- Webhook payloads (documented as OpenAPI `webhooks`) -------------------------------------


class _Payload(BaseModel):
    id: str = Field(
        examples=["evt_01HQ3Z8W6X9Y2V4T5R7P8N0M1K"],
        description="Deduplicate on this: a retried delivery carries the same id.",
    )
    timestamp: str = Field(examples=["2026-03-16T12:00:01Z"])


_CONTACT: JsonObject = {
    "id": "cont_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
    "email": "jane@example.com",
    "first_name": "Jane",
    "last_name": "Doe",
    "phone": None,
    "company": None,
    "stage": "lead",
    "source": "organic",
    "first_touch": None,
    "last_touch": None,
    "consent": None,
    "metadata": {},
    "created_at": "2026-03-16T12:00:00Z",
    "updated_at": "2026-03-16T12:00:00Z",
}
_DEAL: JsonObject = {
    "id": "deal_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
    "name": "Acme - 50 seats",
    "amount": 1500000,
    "currency": "USD",
    "pipeline_id": "pipe_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
    "stage": "proposal",
    "status": "open",
    "expected_close_date": "2026-06-30",
    "contact_id": "cont_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
    "metadata": {},
    "created_at": "2026-03-16T12:00:00Z",
    "updated_at": "2026-03-17T09:30:00Z",
}
_TASK: JsonObject = {
    "id": "task_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
    "title": "Call Jane about pricing",
    "body": None,
    "due_at": "2026-03-18T09:00:00Z",
    "status": "done",
    "completed_at": "2026-03-18T08:45:00Z",
    "contact_id": "cont_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
    "deal_id": None,
    "created_at": "2026-03-16T12:00:00Z",
    "updated_at": "2026-03-18T08:45:00Z",
}
_EVT = {"id": "evt_01HQ3Z8W6X9Y2V4T5R7P8N0M1K", "timestamp": "2026-03-17T09:30:00Z"}


def _examples(*examples: JsonObject) -> ConfigDict:
    return ConfigDict(
        populate_by_name=True, json_schema_extra={"examples": [dict(e) for e in examples]}
    )


class ContactEventPayload(_Payload):
    model_config = _examples(
        {**_EVT, "event": "contact.created", "data": _CONTACT},
        {
            **_EVT,
            "event": "contact.updated",
            "data": {**_CONTACT, "company": "Acme"},
            "previous_attributes": {"company": None},
        },
    )

    event: Literal[EventType.CONTACT_CREATED, EventType.CONTACT_UPDATED, EventType.CONTACT_DELETED]
    data: Contact
    previous_attributes: JsonObject | None = Field(
        None, description="contact.updated only: old values of the changed fields."
    )


class DealEventPayload(_Payload):
    model_config = _examples(
        {
            **_EVT,
            "event": "deal.updated",
            "data": _DEAL,
            "previous_attributes": {"amount": 1200000, "stage": "qualified"},
        }
    )

    event: Literal[EventType.DEAL_CREATED, EventType.DEAL_UPDATED, EventType.DEAL_DELETED]
    data: Deal
    previous_attributes: JsonObject | None = Field(
        None, description="deal.updated only: old values of the changed fields."
    )


class DealStageChangedPayload(_Payload):
    model_config = _examples(
        {
            **_EVT,
            "event": "deal.stage_changed",
            "data": _DEAL,
            "from": "qualified",
            "to": "proposal",
        }
    )

    event: Literal[EventType.DEAL_STAGE_CHANGED]
    data: Deal
    from_: str = Field(alias="from", examples=["qualified"])
    to: str = Field(examples=["proposal"])


class TaskEventPayload(_Payload):
    model_config = _examples({**_EVT, "event": "task.completed", "data": _TASK})

    event: Literal[
        EventType.TASK_CREATED,
        EventType.TASK_UPDATED,
        EventType.TASK_COMPLETED,
        EventType.TASK_DELETED,
    ]
    data: Task
    previous_attributes: JsonObject | None = Field(
        None, description="task.updated only: old values of the changed fields."
    )


class WebhookTestData(BaseModel):
    endpoint_id: str
    message: str


class WebhookTestPayload(_Payload):
    model_config = _examples(
        {
            **_EVT,
            "event": "webhook.test",
            "data": {
                "endpoint_id": "wh_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
                "message": "This is a test event from Rex. Your endpoint received it.",
            },
        }
    )

    event: Literal[EventType.WEBHOOK_TEST]
    data: WebhookTestData


_ENDPOINT: JsonObject = {
    "id": "wh_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
    "url": "https://your-server.com/webhooks/rex",
    "events": ["contact.created"],
    "description": None,
    "enabled": True,
    "disabled_reason": None,
    "max_concurrency": 10,
    "ordering": "none",
    "headers": {},
    "rate_limit": None,
    "filter": None,
    "created_at": "2026-03-16T12:00:00Z",
    "failing_since": "2026-03-17T08:30:00Z",
    "last_success_at": "2026-03-17T08:29:12Z",
}
_ENDPOINT_DATA = (
    "The endpoint this is about, as `GET /webhooks/{id}` shows it, with `failing_since` (the "
    "first failure since its last success; null once it succeeds) and `last_success_at`. "
    "Never sent to that endpoint itself."
)


class EndpointDisabledPayload(_Payload):
    model_config = _examples(
        {
            **_EVT,
            "event": "endpoint.disabled",
            "data": {
                **_ENDPOINT,
                "enabled": False,
                "disabled_reason": "No successful delivery for 5 days.",
            },
        }
    )

    event: Literal[EventType.ENDPOINT_DISABLED]
    data: JsonObject = Field(
        description="The endpoint, as `GET /webhooks/{id}` shows it, with why it was disabled "
        "(`disabled_reason`) and its health (`failing_since`, `last_success_at`)."
    )


class EndpointFailingPayload(_Payload):
    model_config = _examples({**_EVT, "event": "endpoint.failing", "data": _ENDPOINT})

    event: Literal[EventType.ENDPOINT_FAILING]
    data: JsonObject = Field(description=_ENDPOINT_DATA)


class EndpointRecoveredPayload(_Payload):
    model_config = _examples(
        {
            **_EVT,
            "event": "endpoint.recovered",
            "data": {**_ENDPOINT, "failing_since": None, "last_success_at": _EVT["timestamp"]},
        }
    )

    event: Literal[EventType.ENDPOINT_RECOVERED]
    data: JsonObject = Field(description=_ENDPOINT_DATA)


class DeliveryFailedPayload(_Payload):
    model_config = _examples(
        {
            **_EVT,
            "event": "delivery.failed",
            "data": {
                "id": "dlv_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
                "endpoint_id": "wh_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
                "event_id": "evt_01HQ3Z8W6X9Y2V4T5R7P8N0M1J",
                "event": "contact.created",
                "status": "failed",
                "attempt_count": 8,
                "next_attempt_at": None,
                "created_at": "2026-03-16T12:00:01Z",
                "last_attempt": {
                    "at": "2026-03-17T09:30:00Z",
                    "status_code": 500,
                    "error": None,
                    "latency_ms": 112,
                    "response_excerpt": "Internal Server Error",
                },
                "endpoint": _ENDPOINT,
            },
        }
    )

    event: Literal[EventType.DELIVERY_FAILED]
    data: JsonObject = Field(
        description="The delivery that failed for good (its schedule exhausted, or a final "
        "answer) as `GET /deliveries/{id}` shows it; `last_attempt`, as that answer lists "
        "attempts; and `endpoint`, as `endpoint.*` events carry it. Retry it with "
        "`POST /deliveries/{id}/retry`."
    )


class CustomEventPayload(_Payload):
    model_config = _examples(
        {**_EVT, "event": "invoice.paid", "data": {"invoice_id": "in_1042", "amount": 4900}}
    )

    event: str = Field(
        examples=["invoice.paid"], description="One of your own types (`GET /event-types`)."
    )
    data: JsonObject = Field(
        description="The data published with `POST /events`, valid under the type's schema."
    )

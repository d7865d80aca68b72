"""Response shapes for the events API, and the payloads Rex POSTs to webhook endpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rex.contacts.schemas import Contact
from rex.deals.schemas import Deal
from rex.delivery.schemas import Delivery
from rex.events.catalogue import EventType
from rex.tasks.schemas import Task

_EVENT_EXAMPLE: dict[str, Any] = {
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
    event: EventType
    timestamp: str = Field(examples=["2026-03-16T12:00:01Z"])
    data: dict[str, Any] = Field(description="The object as the API returns it.")
    previous_attributes: dict[str, Any] | None = Field(
        None, description="`*.updated` only: old values of exactly the fields that changed."
    )
    from_: str | None = Field(
        None, alias="from", description="`deal.stage_changed` only: the stage left."
    )
    to: str | None = Field(None, description="`deal.stage_changed` only: the stage entered.")


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


class ContactEventPayload(_Payload):
    event: Literal["contact.created", "contact.updated", "contact.deleted"]
    data: Contact
    previous_attributes: dict[str, Any] | None = Field(
        None, description="contact.updated only: old values of the changed fields."
    )


class DealEventPayload(_Payload):
    event: Literal["deal.created", "deal.updated", "deal.deleted"]
    data: Deal
    previous_attributes: dict[str, Any] | None = Field(
        None, description="deal.updated only: old values of the changed fields."
    )


class DealStageChangedPayload(_Payload):
    model_config = ConfigDict(populate_by_name=True)

    event: Literal["deal.stage_changed"]
    data: Deal
    from_: str = Field(alias="from", examples=["qualified"])
    to: str = Field(examples=["proposal"])


class TaskEventPayload(_Payload):
    event: Literal["task.created", "task.updated", "task.completed", "task.deleted"]
    data: Task
    previous_attributes: dict[str, Any] | None = Field(
        None, description="task.updated only: old values of the changed fields."
    )


class WebhookTestData(BaseModel):
    endpoint_id: str
    message: str


class WebhookTestPayload(_Payload):
    event: Literal["webhook.test"]
    data: WebhookTestData


class EndpointDisabledPayload(_Payload):
    event: Literal["endpoint.disabled"]
    data: dict[str, Any] = Field(description="The endpoint, and why it was disabled.")

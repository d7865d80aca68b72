"""The payloads Rex POSTs to subscribers, documented as OpenAPI 3.1 ``webhooks``.

(No ``from __future__ import annotations`` here: FastAPI must see each payload model itself.)
"""

from typing import Annotated

from fastapi import FastAPI, Header
from pydantic import BaseModel

from rex.events.schemas import (
    ContactEventPayload,
    CustomEventPayload,
    DealEventPayload,
    DealStageChangedPayload,
    DeliveryFailedPayload,
    EndpointDisabledPayload,
    EndpointFailingPayload,
    EndpointRecoveredPayload,
    TaskEventPayload,
    WebhookTestPayload,
)
from rex.outbox.catalogue import EventType

_PAYLOADS: dict[EventType, tuple[type[BaseModel], str]] = {
    EventType.CONTACT_CREATED: (ContactEventPayload, "A contact was created (API or capture)."),
    EventType.CONTACT_UPDATED: (
        ContactEventPayload,
        "A contact changed; `previous_attributes` has the old values of the changed fields.",
    ),
    EventType.CONTACT_DELETED: (ContactEventPayload, "A contact was deleted (its last state)."),
    EventType.DEAL_CREATED: (DealEventPayload, "A deal was created."),
    EventType.DEAL_UPDATED: (
        DealEventPayload,
        "A deal changed; `previous_attributes` has the old values of the changed fields. "
        "Sent for every change, stage moves included.",
    ),
    EventType.DEAL_DELETED: (DealEventPayload, "A deal was deleted (its last state)."),
    EventType.DEAL_STAGE_CHANGED: (
        DealStageChangedPayload,
        "A deal moved to another stage (or pipeline): `from` and `to` are stage names. "
        "Sent alongside the `deal.updated` of the same change.",
    ),
    EventType.TASK_CREATED: (TaskEventPayload, "A task was created."),
    EventType.TASK_UPDATED: (
        TaskEventPayload,
        "A task changed; `previous_attributes` has the old values of the changed fields.",
    ),
    EventType.TASK_COMPLETED: (
        TaskEventPayload,
        "A task's status moved to `done`. Sent alongside the `task.updated` of that change.",
    ),
    EventType.TASK_DELETED: (TaskEventPayload, "A task was deleted (its last state)."),
    EventType.WEBHOOK_TEST: (
        WebhookTestPayload,
        "Sent by `POST /webhooks/{id}/test` to that endpoint only.",
    ),
    EventType.ENDPOINT_DISABLED: (
        EndpointDisabledPayload,
        "An endpoint was disabled after failing for too long, or answering 410 Gone (for "
        "operators). Also sent to the workspace's `notify_emails` and `notify_slack_url`.",
    ),
    EventType.ENDPOINT_FAILING: (
        EndpointFailingPayload,
        "An endpoint has had no successful delivery for `REX_ENDPOINT_FAILING_AFTER` (1 hour) "
        "while its deliveries fail. Sent once until it recovers; also to the workspace's "
        "`notify_emails` and `notify_slack_url`.",
    ),
    EventType.ENDPOINT_RECOVERED: (
        EndpointRecoveredPayload,
        "The first successful delivery to an endpoint announced as failing or disabled. Also "
        "sent to the workspace's `notify_emails` and `notify_slack_url`.",
    ),
    EventType.DELIVERY_FAILED: (
        DeliveryFailedPayload,
        "A delivery failed for good: its retry schedule is exhausted, or the answer was "
        "final. Sent for every such delivery; the workspace's `notify_emails` and "
        "`notify_slack_url` get the first one since the endpoint last succeeded.",
    ),
}

BUILTIN_DESCRIPTIONS: dict[str, str] = {
    str(event_type): description for event_type, (_, description) in _PAYLOADS.items()
}
"""What each built-in event type means (``GET /event-types`` shows it)."""

_SIGNATURE_HELP = (
    '`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>`; one `v1=` per '
    "active secret during a rotation, newest first. Verify with `rex.verify_signature`."
)


def payload_model(event_type: str) -> type[BaseModel]:
    """The model documenting what ``event_type`` deliveries carry."""
    return _PAYLOADS[EventType(event_type)][0]


def register_webhooks(app: FastAPI) -> None:
    """Add one ``webhooks`` entry per event type (the catalogue) to ``app``'s OpenAPI."""
    for event_type, (model, description) in _PAYLOADS.items():
        _register(app, event_type, model, description)
    _register(
        app,
        CUSTOM_EVENT_ENTRY,
        CustomEventPayload,
        "An event of one of your own types (`POST /event-types`), published with "
        "`POST /events`: the same envelope, signatures and retries as Rex's own events.",
        operation_id="webhook_custom_event",
    )


CUSTOM_EVENT_ENTRY = "your.own.event"
"""The ``webhooks`` entry standing for every custom event type (each workspace has its own)."""


def _register(
    app: FastAPI,
    event_type: str,
    model: type[BaseModel],
    description: str,
    *,
    operation_id: str | None = None,
) -> None:
    async def receive(
        body: model,  # type: ignore[valid-type]
        x_rex_signature: Annotated[str, Header(description=_SIGNATURE_HELP)],
        x_rex_event: Annotated[str, Header(description="The event type.")],
        x_rex_event_id: Annotated[str, Header(description="The event id (dedup key).")],
        x_rex_delivery_id: Annotated[str, Header(description="This delivery's id.")],
    ) -> None:
        pass

    receive.__doc__ = (
        f"{description}\n\nAnswer any 2xx within the delivery timeout; anything else is "
        "retried with exponential backoff (410 Gone disables the endpoint)."
    )
    app.webhooks.post(
        event_type,
        summary=event_type,
        operation_id=operation_id or f"webhook_{event_type.replace('.', '_')}",
        tags=["webhook events"],
    )(receive)

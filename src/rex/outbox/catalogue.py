"""Every event type Rex emits. Subscriptions name these (or ``"*"``)."""

from __future__ import annotations

import re
from enum import StrEnum


class EventType(StrEnum):
    CONTACT_CREATED = "contact.created"
    CONTACT_UPDATED = "contact.updated"
    CONTACT_DELETED = "contact.deleted"
    DEAL_CREATED = "deal.created"
    DEAL_UPDATED = "deal.updated"
    DEAL_DELETED = "deal.deleted"
    DEAL_STAGE_CHANGED = "deal.stage_changed"
    TASK_CREATED = "task.created"
    TASK_UPDATED = "task.updated"
    TASK_COMPLETED = "task.completed"
    TASK_DELETED = "task.deleted"
    WEBHOOK_TEST = "webhook.test"
    ENDPOINT_DISABLED = "endpoint.disabled"
    # Operational events (rex.outbox.alerts): also sent to the workspace's alert destinations.
    ENDPOINT_FAILING = "endpoint.failing"
    ENDPOINT_RECOVERED = "endpoint.recovered"
    DELIVERY_FAILED = "delivery.failed"


EVENT_TYPES: frozenset[str] = frozenset(e.value for e in EventType)

SUBMISSION_ACCEPTED = "submission.accepted"
"""Internal: the event a form's new-lead email is a delivery of, queued for the form's own
(hidden) endpoint only. Not an ``EventType``: never subscribable, never listed by ``/events``
(a public ``submission.*`` event would be a contract of its own; ``DESIGN.md`` has none)."""
INTERNAL_EVENT_TYPES: frozenset[str] = frozenset({SUBMISSION_ACCEPTED})
OPERATIONAL_EVENTS: frozenset[str] = frozenset(
    {
        EventType.ENDPOINT_FAILING,
        EventType.ENDPOINT_DISABLED,
        EventType.ENDPOINT_RECOVERED,
        EventType.DELIVERY_FAILED,
    }
)
"""About Rex's own delivery: never announced in turn when their deliveries fail."""
NAMED_ONLY: frozenset[str] = frozenset(
    {EventType.ENDPOINT_FAILING, EventType.ENDPOINT_RECOVERED, EventType.DELIVERY_FAILED}
)
"""Sent only to endpoints that name them, never through ``"*"``: a catch-all subscriber
is not flooded with its neighbours' failures (``endpoint.disabled`` stays under ``"*"``, as
it always was)."""
WILDCARD = "*"

# A workspace's own event types (POST /event-types): lower-case, dotted, at most 64
# characters, and none of the built-in names above.
CUSTOM_EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
CUSTOM_EVENT_NAME_MAX = 64


def is_custom_event_name(name: str) -> bool:
    """Is ``name`` shaped like a workspace's own event type (and not a built-in one)?"""
    return (
        len(name) <= CUSTOM_EVENT_NAME_MAX
        and CUSTOM_EVENT_NAME.fullmatch(name) is not None
        and name not in EVENT_TYPES
    )


def matches(subscribed: list[str], event_type: str) -> bool:
    """Does an endpoint subscribed to ``subscribed`` receive ``event_type``?

    ``webhook.test`` is never matched by a filter: it goes only to the endpoint being tested.
    """
    if event_type == EventType.WEBHOOK_TEST:
        return False
    if event_type in NAMED_ONLY:
        return event_type in subscribed
    return WILDCARD in subscribed or event_type in subscribed

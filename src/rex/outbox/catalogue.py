"""Every event type Rex emits. Subscriptions name these (or ``"*"``)."""

from __future__ import annotations

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


EVENT_TYPES: frozenset[str] = frozenset(e.value for e in EventType)

SUBMISSION_ACCEPTED = "submission.accepted"
"""Internal: the event a form's new-lead email is a delivery of, queued for the form's own
(hidden) endpoint only. Not an ``EventType``: never subscribable, never listed by ``/events``
(a public ``submission.*`` event would be a contract of its own; ``DESIGN.md`` has none)."""
INTERNAL_EVENT_TYPES: frozenset[str] = frozenset({SUBMISSION_ACCEPTED})
WILDCARD = "*"


def matches(subscribed: list[str], event_type: str) -> bool:
    """Does an endpoint subscribed to ``subscribed`` receive ``event_type``?

    ``webhook.test`` is never matched by a filter: it goes only to the endpoint being tested.
    """
    if event_type == EventType.WEBHOOK_TEST:
        return False
    return WILDCARD in subscribed or event_type in subscribed

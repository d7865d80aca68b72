"""The outbox's vocabulary and records: delivery states, endpoint kinds, what a claim hands
a sender, what an attempt leaves behind, and one typed record per stored row (endpoint,
delivery, attempt, listen session), each built from its row here and nowhere else."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, TypedDict

from rex.ids import rfc3339
from rex.json_types import JsonObject

MASK = "••••••"

NOTIFY_CHANNEL = "rex_deliveries"
"""The PostgreSQL channel notified when deliveries are queued (a wake-up hint)."""


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class EndpointKind(StrEnum):
    """What an endpoint is, which says who sends its deliveries and who sees it:

    - ``webhook``: a subscription made through ``/webhooks``, sent by the delivery workers;
    - ``listen``: a ``rex listen`` session, streamed by the API process to the CLI;
    - ``system``: Rex's own (a form's new-lead emails; operational alerts), sent by the
      delivery workers like a webhook (retried, recorded) but never shown, counted or
      editable through ``/webhooks``: whatever owns it (the form) manages it.
    """

    WEBHOOK = "webhook"
    LISTEN = "listen"
    SYSTEM = "system"


PUBLIC_ENDPOINT_KINDS = (EndpointKind.WEBHOOK,)
"""The kinds ``/webhooks`` lists, reads, edits and counts (and whose disabling is announced)."""
HIDDEN_ENDPOINT_KINDS = (EndpointKind.SYSTEM,)
"""The kinds no API shows: not their endpoints, not their deliveries."""

# The kinds each sender claims deliveries for: the workers send webhooks and Rex's own.
_CLAIMED_WITH = {
    EndpointKind.WEBHOOK: EndpointKind.SYSTEM,
    EndpointKind.LISTEN: EndpointKind.LISTEN,
    EndpointKind.SYSTEM: EndpointKind.WEBHOOK,
}


def claimed_kinds(kind: EndpointKind) -> dict[str, str]:
    """Bind values for a claim's ``kind IN (:kind, :also_kind)`` (two kinds at most)."""
    return {"kind": kind.value, "also_kind": _CLAIMED_WITH[kind].value}


class SystemRole(StrEnum):
    """Rex's own endpoints (``endpoints.system_role``), hidden from ``/webhooks``: they are
    sent by the workers like any webhook (retried, recorded), but managed through the
    setting that made them."""

    FORM_NOTIFY = "form_notify"
    """A form's new-lead emails (``mailto:``; ``forms.notify_emails``)."""
    ALERT_EMAIL = "alert_email"
    """The workspace's operational alerts by email (``workspaces.notify_emails``)."""
    ALERT_SLACK = "alert_slack"
    """The workspace's operational alerts to Slack (``workspaces.notify_slack_url``)."""


class HeldDelivery(Protocol):
    """A delivery an attempt was made for: all ``record_attempts`` needs to know of it."""

    @property
    def id(self) -> str: ...

    @property
    def endpoint_id(self) -> str: ...


@dataclass(frozen=True)
class ClaimedDelivery:
    """A due delivery this worker holds a lease on, with everything needed to send it."""

    id: str
    workspace_id: str
    endpoint_id: str
    event_id: str
    event_type: str
    attempt_count: int
    url: str
    secrets: tuple[str, ...]  # newest first: one v1= each
    payload: bytes
    ordering_key: str | None = None
    """Its group on an ordered endpoint (``rex.outbox.ordering``); None when not ordered."""
    # The endpoint's own headers (credentials: never logged), sent before Rex's.
    headers: tuple[tuple[str, str], ...] = ()
    # Under the endpoint's rate limit: the time this delivery's slot starts; the sender
    # waits until then (a fraction of a second away at most, see rex.outbox.queue).
    send_at: datetime | None = None


@dataclass(frozen=True)
class AttemptOutcome:
    at: datetime
    status_code: int | None
    error: str | None
    latency_ms: int
    response_excerpt: str | None
    # What the delivery becomes: delivered, failed, or pending again at next_attempt_at.
    status: DeliveryStatus
    next_attempt_at: datetime | None
    # Set when this answer disables the endpoint at once (410 Gone): the reason shown.
    disable_endpoint: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is DeliveryStatus.DELIVERED


@dataclass(frozen=True)
class RecordedAttempts:
    held: int
    """How many deliveries this worker still held (a row whose lease was taken over keeps
    the new owner's state; its attempt is still recorded, because it happened)."""
    disabled_endpoints: list[str]
    """Endpoints these attempts disabled (410 Gone, or failing for too long); each was
    announced with an ``endpoint.disabled`` event in the same transaction."""


# -- the shapes the API shows (and events carry), one per record -------------------------


class EndpointData(TypedDict):
    """An endpoint as ``GET /webhooks/{id}`` shows it (``rex.webhooks.schemas.Endpoint``)."""

    id: str
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    max_concurrency: int
    ordering: str
    headers: dict[str, str]
    rate_limit: int | None
    filter: JsonObject | None  # JSON: the user's conditions, as given
    created_at: str


class EndpointWithSecretData(EndpointData):
    """An endpoint as created or rotated: the only answers that show its secret."""

    secret: str


class DeliveryData(TypedDict):
    """A delivery as ``GET /deliveries`` lists it (``rex.delivery.schemas.Delivery``)."""

    id: str
    endpoint_id: str
    event_id: str
    event: str
    status: str
    attempt_count: int
    next_attempt_at: str | None
    created_at: str


class AttemptData(TypedDict):
    """An attempt as ``GET /deliveries/{id}`` shows it (``rex.delivery.schemas.Attempt``)."""

    at: str
    status_code: int | None
    error: str | None
    latency_ms: int
    response_excerpt: str | None


class DeliveryWithAttemptsData(DeliveryData):
    attempts: list[AttemptData]


# -- stored rows, typed ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A subscription (``webhook``) or a ``rex listen`` session's endpoint (``listen``)."""

    id: str
    workspace_id: str
    url: str
    events: tuple[str, ...]
    description: str | None
    secret: str
    enabled: bool
    disabled_reason: str | None
    max_concurrency: int
    kind: EndpointKind
    created_at: datetime
    ordering: str = "none"
    headers: tuple[tuple[str, str], ...] = ()
    rate_limit: int | None = None
    filter: JsonObject | None = None

    @classmethod
    def from_row(cls, row: Any) -> Endpoint:
        return cls(
            id=row.id,
            workspace_id=row.workspace_id,
            url=row.url,
            events=tuple(row.events),
            description=row.description,
            secret=row.secret,
            enabled=row.enabled,
            disabled_reason=row.disabled_reason,
            max_concurrency=row.max_concurrency,
            kind=EndpointKind(row.kind),
            created_at=row.created_at,
            ordering=row.ordering,
            headers=tuple(decode_custom_headers(row.headers).items()),
            rate_limit=row.rate_limit,
            filter=row.filter,
        )

    def public(self) -> EndpointData:
        """The endpoint as the API shows it, and as ``endpoint.*`` events carry it."""
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "description": self.description,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "max_concurrency": self.max_concurrency,
            "ordering": self.ordering,
            "headers": masked(dict(self.headers)),
            "rate_limit": self.rate_limit,
            "filter": self.filter,
            "created_at": rfc3339(self.created_at),
        }

    def with_secret(self) -> EndpointWithSecretData:
        """The endpoint as its creation and a rotation answer: with its secret."""
        return {**self.public(), "secret": self.secret}


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one endpoint, and where it stands."""

    id: str
    workspace_id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Delivery:
        return cls(
            id=row.id,
            workspace_id=row.workspace_id,
            endpoint_id=row.endpoint_id,
            event_id=row.event_id,
            event_type=row.event_type,
            status=DeliveryStatus(row.status),
            attempt_count=row.attempt_count,
            next_attempt_at=row.next_attempt_at,
            created_at=row.created_at,
        )

    def public(self) -> DeliveryData:
        return {
            "id": self.id,
            "endpoint_id": self.endpoint_id,
            "event_id": self.event_id,
            "event": self.event_type,
            "status": self.status.value,
            "attempt_count": self.attempt_count,
            "next_attempt_at": rfc3339(self.next_attempt_at),
            "created_at": rfc3339(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class Attempt:
    """One recorded attempt of a delivery."""

    at: datetime
    status_code: int | None
    error: str | None
    latency_ms: int
    response_excerpt: str | None

    @classmethod
    def from_row(cls, row: Any) -> Attempt:
        return cls(
            at=row.at,
            status_code=row.status_code,
            error=row.error,
            latency_ms=row.latency_ms,
            response_excerpt=row.response_excerpt,
        )

    def public(self) -> AttemptData:
        return {
            "at": rfc3339(self.at),
            "status_code": self.status_code,
            "error": self.error,
            "latency_ms": self.latency_ms,
            "response_excerpt": self.response_excerpt,
        }


@dataclass(frozen=True, slots=True)
class ListenSession:
    """A ``rex listen`` session: its endpoint (kind ``listen``) and its session row."""

    id: str
    events: tuple[str, ...]
    secret: str
    max_concurrency: int
    enabled: bool
    """False once its local server answered 410 Gone; a new ``rex listen`` enables it."""
    disabled_reason: str | None
    forward_to: str
    api_key_id: str
    connection_id: str | None
    last_seen_at: datetime
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> ListenSession:
        return cls(
            id=row.id,
            events=tuple(row.events),
            secret=row.secret,
            max_concurrency=row.max_concurrency,
            enabled=row.enabled,
            disabled_reason=row.disabled_reason,
            forward_to=row.forward_to,
            api_key_id=row.api_key_id,
            connection_id=row.connection_id,
            last_seen_at=row.last_seen_at,
            created_at=row.created_at,
        )


# -- an endpoint's own headers, as stored and as shown -----------------------------------


def masked(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers as the API shows them: the names, and of each value only its last four
    characters when it is long enough (16 or more) for those not to give it away."""
    return {
        name: MASK + value[-4:] if len(value) >= 16 else MASK for name, value in headers.items()
    }


def encode_custom_headers(headers: Mapping[str, str]) -> str | None:
    """The stored form (JSON text, which the column encrypts); None when there are none."""
    return json.dumps(dict(headers), ensure_ascii=False) if headers else None


def decode_custom_headers(stored: str | None) -> dict[str, str]:
    if not stored:
        return {}
    decoded: dict[str, str] = json.loads(stored)
    return decoded

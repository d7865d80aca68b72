"""Request and response shapes for webhook endpoints."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from rex.json_types import JsonObject
from rex.outbox.catalogue import EVENT_TYPES, WILDCARD, is_custom_event_name
from rex.outbox.filters import check_filter
from rex.outbox.ordering import Ordering
from rex.worker.headers import check_custom_headers

Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]
MIN_SECRET_LENGTH = 32
# The seeds' placeholder secrets, shorter than 32 characters: the seeds must keep working as
# written, so these exact strings are still accepted (docs/security.md says to replace them).
SEED_EXAMPLE_SECRETS = frozenset({"whsec_your_signing_secret", "whsec_test_secret"})


def _check_secret(value: str | None) -> str | None:
    if value is not None and len(value) < MIN_SECRET_LENGTH and value not in SEED_EXAMPLE_SECRETS:
        raise ValueError(
            f"a signing secret needs at least {MIN_SECRET_LENGTH} characters (this one has "
            f"{len(value)}); leave it out and Rex generates a strong one"
        )
    return value


Secret = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=500)]
MaxConcurrency = Annotated[
    int,
    Field(
        ge=1,
        le=100,
        description="Deliveries to this endpoint in flight at once, across all workers.",
    ),
]
DEFAULT_MAX_CONCURRENCY = 10
OrderingMode = Annotated[
    Literal[Ordering.NONE, Ordering.ENDPOINT, Ordering.OBJECT],
    Field(
        description=(
            "`none`: deliveries go out as soon as they are due, up to `max_concurrency` at "
            "once. `endpoint`: one at a time, in the order the events were recorded. "
            "`object`: in order per object (the event's `object_id`: a contact's "
            "`contact.created` before its `contact.updated`), different objects in parallel. "
            "In both ordered modes a failing delivery holds back the ones behind it until it "
            "is delivered or fails for good, so a slow or failing endpoint stalls its own "
            "queue."
        ),
    ),
]


def _check_events(value: list[str] | str) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if not names:
        raise ValueError('give at least one event name, or "*" for all')
    # A workspace's own types (lower-case dotted names) are checked against its catalogue
    # by the service, which has the database.
    unknown = sorted(
        n for n in set(names) - EVENT_TYPES - {WILDCARD} if not is_custom_event_name(n)
    )
    if unknown:
        raise ValueError(
            f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(sorted(EVENT_TYPES))}"
            " and your own (GET /event-types)"
        )
    return sorted(set(names))


# The delivery options of issue 16 (headers, rate limit, filter), shared by create and update.
HEADERS_DESCRIPTION = (
    "Extra headers sent with every delivery, for receivers behind their own auth "
    '(`{"Authorization": "Bearer ..."}`). Rex\'s own (`Content-Type`, `Content-Length`, '
    "`Host`, `User-Agent`, `X-Rex-*`, `webhook-*`) and connection headers are refused. Values "
    "are stored encrypted, never logged, and shown masked (`••••••` and, for values of 16 "
    "characters or more, their last four). In a PATCH, the given names are set and a null "
    "value removes one; `headers: null` removes them all."
)
RATE_LIMIT_DESCRIPTION = (
    "Most deliveries per second to this endpoint, across every worker and process "
    "(null: no limit). Deliveries over it wait their turn, they are never dropped. "
    "`max_concurrency` separately caps how many are in flight at once."
)
FILTER_DESCRIPTION = (
    "Equality conditions on dotted paths of the event "
    '(`{"data.source": "organic", "data.stage": ["won", "lost"]}`): a list means any of '
    "its values, and every condition must hold for the event to be delivered. A missing path "
    "reads as null. Evaluated when the event is recorded: an event that fails it queues no "
    "delivery. `POST /webhooks/{id}/test` ignores it."
)
RateLimit = Annotated[int, Field(ge=1, le=10_000)]


def _check_headers(value: Any) -> Any:
    return check_custom_headers(value)


def _check_create_headers(value: Any) -> Any:
    checked = check_custom_headers(value)
    if checked and any(v is None for v in checked.values()):
        raise ValueError("a header value cannot be null when creating an endpoint")
    return checked


def _check_filter(value: Any) -> Any:
    return check_filter(value)


class EndpointCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://your-server.com/webhooks/rex",
                    "events": ["contact.created"],
                    "secret": "whsec_your_signing_secret",
                }
            ]
        },
    )

    url: Url
    events: list[str] | str = Field(description='Event names, or "*" for every event.')
    secret: Secret | None = Field(
        None,
        description=(
            "Signing secret, at least 32 characters; one of the form whsec_... is generated "
            "when absent."
        ),
    )
    description: Description | None = None
    max_concurrency: MaxConcurrency = DEFAULT_MAX_CONCURRENCY
    ordering: OrderingMode = Ordering.NONE
    headers: dict[str, str] | None = Field(None, description=HEADERS_DESCRIPTION)
    rate_limit: RateLimit | None = Field(None, description=RATE_LIMIT_DESCRIPTION)
    filter: JsonObject | None = Field(None, description=FILTER_DESCRIPTION)

    _events = field_validator("events")(_check_events)
    _secret = field_validator("secret")(_check_secret)
    _headers = field_validator("headers", mode="before")(_check_create_headers)
    _filter = field_validator("filter", mode="before")(_check_filter)


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"events": ["contact.created", "deal.updated"]}]},
    )

    url: Url | None = None
    events: list[str] | str | None = None
    description: Description | None = None
    enabled: bool | None = None
    max_concurrency: MaxConcurrency | None = None
    ordering: OrderingMode | None = None
    headers: dict[str, str | None] | None = Field(None, description=HEADERS_DESCRIPTION)
    rate_limit: RateLimit | None = Field(None, description=RATE_LIMIT_DESCRIPTION)
    filter: JsonObject | None = Field(
        None, description=FILTER_DESCRIPTION + " `filter: null` removes it."
    )

    _headers = field_validator("headers", mode="before")(_check_headers)
    _filter = field_validator("filter", mode="before")(_check_filter)

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str] | str | None) -> list[str] | None:
        return None if value is None else _check_events(value)


class Endpoint(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "wh_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
                    "url": "https://your-server.com/webhooks/rex",
                    "events": ["contact.created"],
                    "description": None,
                    "enabled": True,
                    "disabled_reason": None,
                    "max_concurrency": 10,
                    "ordering": "none",
                    "created_at": "2026-03-16T12:00:00Z",
                }
            ]
        }
    )

    id: str = Field(examples=["wh_01HQ3Z8W6X9Y2V4T5R7P8N0M1K"])
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why Rex disabled it (410 Gone, failing for too long); null when enabled."
    )
    max_concurrency: int
    ordering: OrderingMode
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="The extra headers, values masked.",
        examples=[{"Authorization": "••••••ab12"}],
    )
    rate_limit: int | None = Field(None, description="Deliveries per second; null: no limit.")
    filter: JsonObject | None = Field(
        None, description="Conditions an event must meet to be delivered; null: none."
    )
    created_at: str


class EndpointWithSecret(Endpoint):
    secret: str = Field(description="Shown on creation and rotation only.")


class EndpointEnvelope(BaseModel):
    data: Endpoint


class EndpointCreatedEnvelope(BaseModel):
    data: EndpointWithSecret


class EndpointList(BaseModel):
    data: list[Endpoint]
    next_cursor: str | None


class SecretRotation(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{}, {"secret": "whsec_my_new_secret_of_at_least_32_chars"}]
        },
    )

    secret: Secret | None = Field(
        None,
        description=(
            "The new secret (at least 32 characters); one of the form whsec_... is generated "
            "when absent."
        ),
    )

    _secret = field_validator("secret")(_check_secret)


class Recovery(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"since": "2026-03-16T00:00:00Z"}]}
    )

    since: AwareDatetime = Field(
        description="Re-queue failed deliveries created at or after this time (RFC 3339)."
    )


class RecoveryResult(BaseModel):
    endpoint_id: str
    since: str
    requeued: int = Field(description="How many failed deliveries are due again now.")


class RecoveryEnvelope(BaseModel):
    data: RecoveryResult

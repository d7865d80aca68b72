"""Request and response shapes for webhook endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from rex.outbox.catalogue import EVENT_TYPES, WILDCARD

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
    Literal["none", "endpoint", "object"],
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
    unknown = sorted(set(names) - EVENT_TYPES - {WILDCARD})
    if unknown:
        raise ValueError(
            f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(sorted(EVENT_TYPES))}"
        )
    return sorted(set(names))


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
    ordering: OrderingMode = "none"

    _events = field_validator("events")(_check_events)
    _secret = field_validator("secret")(_check_secret)


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

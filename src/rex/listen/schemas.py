"""Request and response shapes for `rex listen` sessions."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from rex.outbox.catalogue import EVENT_TYPES, WILDCARD, is_custom_event_name

ForwardTo = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]


def _check_events(value: list[str] | str) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if not names:
        raise ValueError('give at least one event name, or "*" for all')
    # The workspace's own types are checked against its catalogue by the service.
    unknown = sorted(
        n for n in set(names) - EVENT_TYPES - {WILDCARD} if not is_custom_event_name(n)
    )
    if unknown:
        raise ValueError(
            f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(sorted(EVENT_TYPES))}"
        )
    return sorted(set(names))


class SessionOpen(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"forward_to": "http://127.0.0.1:3000/webhooks/rex", "events": ["contact.created"]}
            ]
        },
    )

    forward_to: ForwardTo = Field(
        description="The local URL the CLI posts deliveries to. Rex never connects to it; "
        "with the API key, it names the session a restarted `rex listen` resumes."
    )
    events: list[str] | str = Field(
        default=WILDCARD, description='Event names, or "*" for every event (the default).'
    )

    _events = field_validator("events")(_check_events)

    @field_validator("forward_to")
    @classmethod
    def _http_url(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or scheme.lower() not in {"http", "https"} or not rest:
            raise ValueError("must be an http:// or https:// URL")
        return value


class Session(BaseModel):
    id: str = Field(
        description="The session's endpoint id: its deliveries carry it as endpoint_id.",
        examples=["wh_01HQ3Z8W6X9Y2V4T5R7P8N0M1K"],
    )
    forward_to: str
    events: list[str]
    connected: bool = Field(description="Whether a `rex listen` is streaming it now.")
    last_seen_at: str = Field(description="Last heartbeat of a connected stream.")
    expires_at: str | None = Field(
        description="When the session is removed unless a `rex listen` reconnects "
        "(null while connected)."
    )
    created_at: str


class SessionOpened(Session):
    secret: str = Field(description="The signing secret of this session's deliveries.")
    resumed: bool = Field(description="True when an existing session was resumed.")
    pending: int = Field(description="Deliveries waiting to be sent to it.")
    grace_period: float = Field(description="Seconds a disconnected session is kept.")
    keepalive: float = Field(description="Seconds between heartbeats on the stream at most.")
    timeout: float = Field(description="Seconds the CLI should wait for the local URL.")


class SessionEnvelope(BaseModel):
    data: Session


class SessionOpenedEnvelope(BaseModel):
    data: SessionOpened


class SessionList(BaseModel):
    data: list[Session]
    next_cursor: str | None


class AttemptReport(BaseModel):
    """What happened when the CLI posted one delivery to the local URL."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "delivery_id": "dlv_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
                    "lease": "listen:01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
                    "status_code": 200,
                    "latency_ms": 12,
                    "response_excerpt": "ok",
                }
            ]
        },
    )

    delivery_id: str = Field(max_length=40)
    lease: str = Field(max_length=100, description="The `lease` of the streamed delivery.")
    status_code: int | None = Field(None, ge=100, le=599)
    error: str | None = Field(None, max_length=500)
    latency_ms: int = Field(ge=0, le=86_400_000)
    response_excerpt: str | None = Field(
        None, max_length=4096, description="The start of the response (1 KiB is kept)."
    )
    retry_after: float | None = Field(
        None, ge=0, description="Seconds from the local answer's Retry-After (429/503)."
    )

    @model_validator(mode="after")
    def _status_or_error(self) -> AttemptReport:
        if self.status_code is None and not self.error:
            raise ValueError("give status_code, or error when no response came")
        return self


StreamEvent = Literal["ready", "delivery", "superseded", "gone"]

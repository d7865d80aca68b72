"""Request and response shapes for contacts."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from rex.contacts.email import normalize_email
from rex.db.records import row_values
from rex.json_types import JsonObject
from rex.states import DEFAULT_CONTACT_STAGE

Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(normalize_email)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
Stage = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Metadata = JsonObject


class Touch(BaseModel):
    """Attribution of one visit: first touch is kept forever, last touch is replaced."""

    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    landing_page: str | None = None
    referrer: str | None = None
    gclid: str | None = None
    fbclid: str | None = None
    at: str | None = Field(None, description="When this touch was recorded (RFC 3339).")


class Consent(BaseModel):
    granted: bool
    text: str | None = None
    at: str | None = None
    ip: str | None = None


class ContactCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "jane@example.com",
                    "first_name": "Jane",
                    "last_name": "Doe",
                    "company": "Acme",
                    "source": "sales-call",
                }
            ]
        },
    )

    email: Email
    first_name: Name | None = None
    last_name: Name | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    company: Name | None = None
    stage: Stage = DEFAULT_CONTACT_STAGE
    source: Name | None = None
    metadata: Metadata = Field(default_factory=dict)


class ContactUpdate(BaseModel):
    """Only the fields sent are changed. ``metadata`` is merged; a key set to null is removed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"stage": "customer", "metadata": {"plan": "team"}}]},
    )

    email: Email | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    company: Name | None = None
    stage: Stage | None = None
    source: Name | None = None
    metadata: Metadata | None = None


class Contact(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "cont_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
                    "email": "jane@example.com",
                    "first_name": "Jane",
                    "last_name": "Doe",
                    "phone": None,
                    "company": None,
                    "stage": "lead",
                    "source": "organic",
                    "first_touch": {
                        "utm_source": "google",
                        "utm_campaign": "spring-launch",
                        "landing_page": "/pricing",
                        "at": "2026-03-16T12:00:00Z",
                    },
                    "last_touch": {
                        "utm_source": "google",
                        "utm_campaign": "spring-launch",
                        "landing_page": "/pricing",
                        "at": "2026-03-16T12:00:00Z",
                    },
                    "consent": None,
                    "metadata": {},
                    "created_at": "2026-03-16T12:00:00Z",
                    "updated_at": "2026-03-16T12:00:00Z",
                }
            ]
        }
    )

    id: str = Field(examples=["cont_01HQ3Z8W6X9Y2V4T5R7P8N0M1K"])
    email: str = Field(examples=["jane@example.com"])
    first_name: str | None
    last_name: str | None
    phone: str | None
    company: str | None
    stage: str = Field(examples=["lead"])
    source: str | None = Field(examples=["organic"])
    first_touch: Touch | None
    last_touch: Touch | None
    consent: Consent | None
    metadata: Metadata
    created_at: str = Field(examples=["2026-03-16T12:00:00Z"])
    updated_at: str

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> Contact:
        """The contact a ``contacts`` row holds."""
        return cls.model_validate(
            {**row_values(row, cls.model_fields), "metadata": row.metadata or {}}
        )

    def data(self) -> JsonObject:
        """The contact's one shape: API answers and event ``data`` alike (every key, nulls
        included)."""
        return self.model_dump(mode="json")


# Fields whose change is reported in previous_attributes (everything but bookkeeping).
TRACKED = tuple(
    name for name in Contact.model_fields if name not in ("id", "created_at", "updated_at")
)


class ContactEnvelope(BaseModel):
    data: Contact


class ContactList(BaseModel):
    data: list[Contact]
    next_cursor: str | None

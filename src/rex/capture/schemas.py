"""What a capture accepts. Unknown top-level fields are kept in ``metadata``, never dropped."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from rex.contacts.schemas import Email, Name

ATTRIBUTION_KEYS = (
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "landing_page",
    "referrer",
    "gclid",
    "fbclid",
)

Attribution = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2048)]


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    granted: StrictBool
    text: Annotated[str, StringConstraints(max_length=2000)] | None = None


class CaptureIn(BaseModel):
    """A lead. Attribution (``utm_*``, ``landing_page``, ``referrer``, ``gclid``, ``fbclid``)
    may be sent at the top level or inside ``metadata``."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "email": "jane@example.com",
                    "first_name": "Jane",
                    "last_name": "Doe",
                    "source": "organic",
                    "metadata": {
                        "utm_source": "google",
                        "utm_campaign": "spring-launch",
                        "landing_page": "/pricing",
                    },
                }
            ]
        },
    )

    email: Email
    first_name: Name | None = None
    last_name: Name | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    company: Name | None = None
    source: Name | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    consent: ConsentIn | None = None
    utm_source: Attribution | None = None
    utm_medium: Attribution | None = None
    utm_campaign: Attribution | None = None
    utm_term: Attribution | None = None
    utm_content: Attribution | None = None
    landing_page: Attribution | None = None
    referrer: Attribution | None = None
    gclid: Attribution | None = None
    fbclid: Attribution | None = None

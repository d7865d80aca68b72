"""What a capture accepts. Unknown top-level fields are kept in ``metadata``, never dropped."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from rex.contacts.schemas import Email, Name, Touch
from rex.json_types import JsonObject

# The keys of a touch, its time aside (declared once, on ``Touch``).
ATTRIBUTION_KEYS = tuple(name for name in Touch.model_fields if name != "at")

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
    metadata: JsonObject = Field(default_factory=dict)
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


def _inline_refs(schema: JsonObject) -> JsonObject:
    """Replace ``#/$defs/...`` references by their definitions: a request body schema inside
    an OpenAPI document cannot point at its own ``$defs``."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: JsonObject = resolve(schema)
    return resolved


def capture_json_schema() -> JsonObject:
    """The JSON body's schema, self-contained for the OpenAPI document."""
    return _inline_refs(CaptureIn.model_json_schema())


def _text(description: str | None = None, **extra: Any) -> JsonObject:
    return {"type": "string", **({"description": description} if description else {}), **extra}


# The same lead as HTML form fields (application/x-www-form-urlencoded or multipart/form-data).
CAPTURE_FORM_SCHEMA: JsonObject = {
    "type": "object",
    "description": (
        "A plain HTML form post. `metadata[KEY]=value` nests into metadata; any other field is "
        "kept in metadata too (repeated fields and `name[]` become lists). Empty fields are "
        "skipped. Fields starting with `_` are control fields and never stored."
    ),
    "required": ["email"],
    "properties": {
        "email": _text(format="email", examples=["jane@example.com"]),
        "first_name": _text(),
        "last_name": _text(),
        "phone": _text(),
        "company": _text(),
        "source": _text(examples=["website"]),
        **{key: _text() for key in ATTRIBUTION_KEYS},
        "consent": _text(
            "A checkbox: on/true/yes/1 grants, off/false/no/0 refuses; any other value grants "
            "consent and is kept as its text."
        ),
        "consent[text]": _text(
            "The consent wording shown; sent without a ticked consent it records a refusal."
        ),
        "_next": _text(
            "Where to send the browser afterwards (303). Followed only when its origin is in "
            "the workspace's allowed_origins; otherwise the workspace's redirect_url or Rex's "
            "thank-you page. May be relative to the page that posted the form.",
        ),
        "_gotcha": _text(
            "Honeypot: leave it hidden and empty. When filled, the post is answered like a "
            "success and nothing is stored or sent."
        ),
    },
    "additionalProperties": _text("`metadata[KEY]` or any other field: kept in metadata."),
}

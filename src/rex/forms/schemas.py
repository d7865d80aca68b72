"""Request and response shapes for ``/forms``."""

from __future__ import annotations

from typing import Annotated, Literal, TypedDict

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from rex.contacts.schemas import Email
from rex.forms.mapping import TARGETS, valid_target
from rex.json_types import JsonObject

CaptchaProvider = Literal["turnstile", "hcaptcha", "recaptcha_v2", "recaptcha_v3"]


def _check_map(value: dict[str, str]) -> dict[str, str]:
    for target in value:
        if not valid_target(target):
            raise ValueError(
                f"field_map key {target!r} is not a contact field: use one of "
                f"{', '.join(TARGETS)} or metadata.<key>"
            )
    return value


def _check_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("https://", "http://")):
        raise ValueError("redirect_url must be an http(s) URL")
    return value


FieldMap = Annotated[
    dict[
        Annotated[str, StringConstraints(min_length=1, max_length=120)],
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)],
    ],
    Field(max_length=50),
    AfterValidator(_check_map),
]
FieldName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
RedirectUrl = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_check_url)]


class CaptchaIn(BaseModel):
    """Server-side CAPTCHA check for a form: the provider and your secret key."""

    model_config = ConfigDict(extra="forbid")

    provider: CaptchaProvider
    secret: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    min_score: float = Field(
        0.5, ge=0.0, le=1.0, description="reCAPTCHA v3 only: the lowest score accepted."
    )


class CaptchaOut(BaseModel):
    provider: CaptchaProvider
    min_score: float


class FormCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Pricing page",
                    "field_map": {"email": "payload.invitee.email", "first_name": "q3_name[first]"},
                    "redirect_url": "https://example.com/thanks",
                    "honeypot_fields": ["website"],
                    "captcha": {"provider": "turnstile", "secret": "0x4AAAAAAA..."},
                    "notify_emails": ["sales@example.com"],
                    "success_message": "Thanks! We will be in touch.",
                }
            ]
        },
    )

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    field_map: FieldMap = Field(default_factory=dict)
    redirect_url: RedirectUrl | None = None
    honeypot_fields: Annotated[list[FieldName], Field(max_length=20)] = Field(default_factory=list)
    captcha: CaptchaIn | None = None
    notify_emails: Annotated[list[Email], Field(max_length=10)] = Field(default_factory=list)
    success_message: Annotated[str, StringConstraints(max_length=2000)] | None = None


class FormUpdate(BaseModel):
    """The fields sent are changed; ``null`` clears an optional one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"field_map": {"email": "answers.0.email"}, "notify_emails": ["a@example.com"]}
            ]
        },
    )

    name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
        | None
    ) = None
    field_map: FieldMap | None = None
    redirect_url: RedirectUrl | None = None
    honeypot_fields: Annotated[list[FieldName], Field(max_length=20)] | None = None
    captcha: CaptchaIn | None = None
    notify_emails: Annotated[list[Email], Field(max_length=10)] | None = None
    success_message: Annotated[str, StringConstraints(max_length=2000)] | None = None


class Form(BaseModel):
    id: str
    name: str
    capture_url: str = Field(description="Where the form posts: `POST /capture/{id}`.")
    field_map: dict[str, str]
    redirect_url: str | None
    honeypot_fields: list[str]
    captcha: CaptchaOut | None
    notify_emails: list[str]
    success_message: str | None
    created_at: str
    updated_at: str


class FormEnvelope(BaseModel):
    data: Form


class FormList(BaseModel):
    data: list[Form]
    next_cursor: str | None


class StoredForm(TypedDict):
    """A form as stored, CAPTCHA secret included (``schemas.public`` is what the API shows)."""

    id: str
    workspace_id: str
    name: str
    field_map: dict[str, str]
    redirect_url: str | None
    honeypot_fields: list[str]
    captcha: JsonObject | None  # {"provider", "secret", "min_score"}
    notify_emails: list[str]
    success_message: str | None
    notify_endpoint_id: str | None
    created_at: str
    updated_at: str


class CaptchaData(TypedDict):
    provider: str
    min_score: float


class FormData(TypedDict):
    """A form as the API shows it (``Form``): never its CAPTCHA secret."""

    id: str
    name: str
    capture_url: str
    field_map: dict[str, str]
    redirect_url: str | None
    honeypot_fields: list[str]
    captcha: CaptchaData | None
    notify_emails: list[str]
    success_message: str | None
    created_at: str
    updated_at: str


def public(form: StoredForm, base_url: str) -> FormData:
    """A stored form as the API shows it: the CAPTCHA secret never leaves."""
    captcha = form["captcha"]
    return {
        "id": form["id"],
        "name": form["name"],
        "capture_url": f"{base_url.rstrip('/')}/capture/{form['id']}",
        "field_map": form["field_map"],
        "redirect_url": form["redirect_url"],
        "honeypot_fields": form["honeypot_fields"],
        "captcha": (
            {"provider": captcha["provider"], "min_score": captcha.get("min_score", 0.5)}
            if captcha
            else None
        ),
        "notify_emails": form["notify_emails"],
        "success_message": form["success_message"],
        "created_at": form["created_at"],
        "updated_at": form["updated_at"],
    }

"""Request and response shapes for ``/workspace`` (the key's own workspace's settings)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from rex.contacts.schemas import Email
from rex.settings import parse_rate_limit
from rex.workspaces.origins import InvalidOrigin, normalize_origin

MAX_ALLOWED_ORIGINS = 100
MAX_NOTIFY_EMAILS = 10
_Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
_Url = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2048)]
_RateText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)]


def _origin(value: str) -> str:
    try:
        return normalize_origin(value)
    except InvalidOrigin as exc:
        raise ValueError(str(exc)) from None


_Origin = Annotated[str, StringConstraints(max_length=300), AfterValidator(_origin)]


class WorkspaceOut(BaseModel):
    id: str = Field(examples=["ws_01HQ3Z8W6X9Y2V4T5R7P8N0M1K"])
    slug: str = Field(
        examples=["acme"], description="Captures on acme.<REX_BASE_DOMAIN> land here."
    )
    name: str
    allowed_origins: list[str] = Field(
        examples=[["https://www.acme.com"]],
        description="Sites whose scripts may read /capture answers (CORS) and where form "
        "posts may be redirected (`_next`, `redirect_url`). `*` opens CORS to any site but "
        "never allows a redirect.",
    )
    redirect_url: str | None = Field(
        description="Where a form post goes when it has no allowed `_next` "
        "(its origin must be in allowed_origins); null: Rex's thank-you page."
    )
    capture_rate_limit: str | None = Field(
        examples=["600/minute"],
        description="This workspace's capture limit (`N/second|minute|hour` or `off`); null: "
        "the server's REX_CAPTURE_WORKSPACE_RATE_LIMIT.",
    )
    notify_emails: list[str] = Field(
        examples=[["ops@acme.com"]],
        description="Who gets operational alerts by email (`endpoint.failing`, "
        "`endpoint.disabled`, `endpoint.recovered`, `delivery.failed`), sent through "
        "REX_SMTP_URL from REX_MAIL_FROM: one email per endpoint and state change.",
    )
    notify_slack_url: str | None = Field(
        examples=["https://hooks.slack.com/services/T000/B000/XXXX"],
        description="A Slack incoming webhook that gets the same alerts as a text message "
        '(`{"text": ...}`); the same destination rules as webhook endpoints apply.',
    )
    created_at: str


class WorkspaceEnvelope(BaseModel):
    data: WorkspaceOut


class WorkspaceUpdate(BaseModel):
    """Only the fields sent are changed; `redirect_url` and `capture_rate_limit` take null."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "allowed_origins": ["https://www.acme.com"],
                    "redirect_url": "https://www.acme.com/thanks",
                    "capture_rate_limit": "600/minute",
                },
                {
                    "notify_emails": ["ops@acme.com"],
                    "notify_slack_url": "https://hooks.slack.com/services/T000/B000/XXXX",
                },
            ]
        },
    )

    name: _Name | None = None
    allowed_origins: list[_Origin] | None = None
    redirect_url: _Url | None = None
    capture_rate_limit: _RateText | None = None
    notify_emails: Annotated[list[Email], Field(max_length=MAX_NOTIFY_EMAILS)] | None = None
    notify_slack_url: _Url | None = None

    @model_validator(mode="before")
    @classmethod
    def _slug_is_read_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and "slug" in data:
            raise ValueError("The slug cannot be changed: it is the workspace's host name.")
        return data

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if len(value) > MAX_ALLOWED_ORIGINS:
            raise ValueError(f"at most {MAX_ALLOWED_ORIGINS} origins")
        return list(dict.fromkeys(value))  # without duplicates, in the order given

    @field_validator("redirect_url")
    @classmethod
    def _redirect(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL like https://www.acme.com/thanks")
        return value

    @field_validator("notify_emails")
    @classmethod
    def _emails(cls, value: list[str] | None) -> list[str]:
        if value is None:  # only when sent: an absent field is not validated
            raise ValueError("notify_emails cannot be null (send [] to clear it)")
        return list(dict.fromkeys(value))

    @field_validator("notify_slack_url")
    @classmethod
    def _slack(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise ValueError(
                "must be an absolute http(s) URL like "
                "https://hooks.slack.com/services/T000/B000/XXXX"
            )
        return value

    @field_validator("capture_rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = parse_rate_limit(value)  # ValueError: "rate limit must look like 60/minute ..."
        if parsed is None:
            return "off"
        return value.replace(" ", "").lower()

    @model_validator(mode="after")
    def _not_null(self) -> WorkspaceUpdate:
        for name in ("name", "allowed_origins"):
            if name in self.model_fields_set and getattr(self, name) is None:
                hint = " (send [] to clear it)" if name == "allowed_origins" else ""
                raise ValueError(f"{name} cannot be null{hint}")
        return self

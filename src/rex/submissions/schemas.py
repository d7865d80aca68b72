"""Response shapes for ``/submissions``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from rex.submissions.service import SubmissionStatus

SubmissionStatusName = Literal[
    SubmissionStatus.ACCEPTED, SubmissionStatus.SPAM, SubmissionStatus.REJECTED
]


class Submission(BaseModel):
    id: str
    form_id: str | None = Field(description="`null` for the workspace's default form, `/capture`.")
    status: SubmissionStatusName
    reason: str | None = Field(description="Why it is spam or rejected.")
    shape: str | None = Field(description="The tool recognised (`typeform`, `mailchimp`...).")
    content_type: str | None
    field_names: list[str]
    fields: Any = Field(description="The fields received (a JSON body's object as sent).")
    raw_body: str | None = Field(description="The body as received, up to 64 KiB.")
    raw_truncated: bool
    contact_id: str | None
    created_at: str
    updated_at: str


class SubmissionEnvelope(BaseModel):
    data: Submission


class SubmissionList(BaseModel):
    data: list[Submission]
    next_cursor: str | None

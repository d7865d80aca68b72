"""``reprocess``: a stored submission through its form's *current* mapping and recognition,
so the leads refused before a ``field_map`` was fixed can be recovered. The CAPTCHA is not
asked again (its token was single-use; the operator decides)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.datastructures import Headers

from rex.capture import intake, service
from rex.capture.body import body_kind, parse_capture
from rex.errors import DomainError
from rex.forms import service as forms_service
from rex.ids import utcnow
from rex.submissions import service as submissions
from rex.submissions.service import SubmissionStatus


async def _received(row: sa.Row[Any]) -> intake.Received | str:
    """The submission's fields again, or the reason they cannot be read."""
    try:
        kind = body_kind(row.content_type)
    except DomainError as exc:
        return exc.message
    if isinstance(row.fields, dict):
        return intake.Received.from_stored(kind, row.fields)
    stored = submissions.submission(row)["fields"]
    if isinstance(stored, dict):  # a JSON body, read back from the raw body
        return intake.Received.from_stored(kind, stored)
    if row.raw_body is None or row.raw_truncated:
        return row.reason or "the body could not be read"
    try:
        headers = Headers({"content-type": row.content_type or ""})
        parsed = await parse_capture(row.raw_body.encode("utf-8"), headers, kind)
    except DomainError as exc:
        return exc.message
    return intake.Received(kind, parsed.fields, parsed.controls, parsed.names)


async def reprocess(
    conn: AsyncConnection, workspace_id: str, submission_id: str
) -> submissions.SubmissionData:
    """Apply the form's current rules to the submission again; returns it, updated. An
    accepted submission is left as it is."""
    row = await submissions.get_row(conn, workspace_id, submission_id, for_update=True)
    if row.status == SubmissionStatus.ACCEPTED:
        return submissions.submission(row)
    form = await forms_service.find(conn, workspace_id, row.form_id) if row.form_id else None
    now = utcnow()
    received = await _received(row)
    if isinstance(received, str):
        await submissions.update_outcome(
            conn, row.id, status=SubmissionStatus.REJECTED, reason=received, shape=row.shape,
            contact_id=None, now=now,
        )  # fmt: skip
        return await submissions.get(conn, workspace_id, submission_id)
    decision = intake.decide(received, form, referer=None)
    if decision.status is not SubmissionStatus.ACCEPTED or decision.lead is None:
        await submissions.update_outcome(
            conn, row.id, status=decision.status, reason=decision.reason, shape=decision.shape,
            contact_id=None, now=now,
        )  # fmt: skip
        return await submissions.get(conn, workspace_id, submission_id)
    contact, _ = await service.capture(conn, workspace_id, decision.lead, now=now, client_ip=None)
    await submissions.update_outcome(
        conn, row.id, status=SubmissionStatus.ACCEPTED, reason=None, shape=decision.shape,
        contact_id=contact.id, now=now,
    )  # fmt: skip
    if form is not None and (notify_endpoint_id := form["notify_endpoint_id"]):
        await submissions.queue_notification(
            conn,
            workspace_id=workspace_id,
            endpoint_id=notify_endpoint_id,
            form=form,
            submission_id=row.id,
            fields=submissions.submission(row)["fields"],
            contact=contact.data(),
            now=now,
        )
    return await submissions.get(conn, workspace_id, submission_id)

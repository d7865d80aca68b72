"""From a received body to a decision: accepted (with the lead), spam, or rejected (with the
error to answer). Shared by ``/capture``, ``/capture/{form_id}`` and reprocessing.

The steps: honeypots, then the form's ``field_map``, then recognition (``recognise``), then
the lead's validation. A body written for Rex (``recognise.is_plain``) skips recognition and
is validated exactly as before it existed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.capture import recognise as rec
from rex.capture import service
from rex.capture.body import BodyKind, attribution_from_referer
from rex.capture.limits import check_metadata
from rex.capture.schemas import CaptureIn
from rex.contacts.schemas import Contact
from rex.errors import DomainError, Invalid, invalid_input
from rex.forms import mapping
from rex.forms.schemas import StoredForm
from rex.submissions import service as submissions
from rex.submissions.service import SubmissionStatus

log = structlog.get_logger("rex.capture")

MAX_NAMES_IN_MESSAGE = 20


@dataclass
class Received:
    """What a post carried, parsed: the fields (nested as HTML forms nest them, or the JSON
    object), the control fields (``_next``, ``_gotcha``...), and every field name sent."""

    kind: BodyKind
    fields: dict[str, Any]
    controls: dict[str, str] = field(default_factory=dict)
    names: frozenset[str] = frozenset()
    user_agent: str | None = None

    def stored(self) -> dict[str, Any]:
        """The fields as a submission keeps them (controls included)."""
        return {**self.fields, **self.controls}

    @classmethod
    def from_stored(cls, kind: BodyKind, stored: dict[str, Any]) -> Received:
        controls = {
            k: "" if v is None or v is False else str(v)
            for k, v in stored.items()
            if k.startswith("_")
        }
        fields = {k: v for k, v in stored.items() if not k.startswith("_")}
        return cls(kind, fields, controls, frozenset(stored))


@dataclass
class Decision:
    status: SubmissionStatus
    reason: str | None
    shape: str | None
    lead: CaptureIn | None
    error: DomainError | None = None


def received_names(received: Received) -> list[str]:
    """The field names that arrived, as a person would list them (no control fields)."""
    names = [k for k in received.fields if not k.startswith("_")]
    return names or sorted(received.names)


def _no_email(received: Received) -> Invalid:
    names = received_names(received)
    shown = ", ".join(names[:MAX_NAMES_IN_MESSAGE]) + (", ..." if len(names) > 20 else "")
    return Invalid("email", f"no email field found; received: {shown or 'no fields'}")


def honeypot_filled(received: Received, form: StoredForm | None) -> str | None:
    """The name of a filled honeypot field, or None."""
    own = {name.casefold() for name in (form["honeypot_fields"] if form else [])}
    candidates = {**received.fields, **received.controls}
    for name, value in candidates.items():
        folded = name.casefold()
        if not (
            folded in rec.HONEYPOT_FIELDS or folded in own or rec.MAILCHIMP_HONEYPOT.match(name)
        ):
            continue
        if isinstance(value, str) and value.strip():
            return name
        if isinstance(value, list | dict) and value:
            return name
    return None


def validate(lead: dict[str, Any]) -> CaptureIn:
    """``CaptureIn`` plus the metadata limits; ``Invalid`` naming the field."""
    try:
        valid = CaptureIn.model_validate(lead)
    except ValidationError as exc:
        raise invalid_input(exc.errors(include_url=False)) from None
    check_metadata(valid.metadata, valid.model_extra or {})
    return valid


def decide(received: Received, form: StoredForm | None, *, referer: str | None) -> Decision:
    """Honeypots, mapping, recognition and validation of one post (no I/O)."""
    field_map = form["field_map"] if form else {}
    shape = None
    if not field_map and rec.is_plain(received.fields):
        lead_fields: dict[str, Any] = dict(received.fields)
    else:
        mapped = mapping.apply(field_map, received.stored()) if field_map else None
        own = frozenset(form["honeypot_fields"] if form else [])
        recognised = rec.recognise(
            received.fields,
            received.controls,
            user_agent=received.user_agent,
            mapped=mapped,
            skip=own,
            names=received.names,
        )
        lead_fields, shape = recognised.lead, recognised.shape
        if shape and not lead_fields.get("source"):
            lead_fields["source"] = shape
    attribution_from_referer(lead_fields, referer)
    trap = honeypot_filled(received, form)
    try:
        if not lead_fields.get("email") and "email" not in received.fields:
            raise _no_email(received)
        lead = validate(lead_fields)
    except Invalid as exc:
        status = SubmissionStatus.SPAM if trap else SubmissionStatus.REJECTED
        return Decision(status, exc.message, shape, None, exc)
    if trap:
        return Decision(SubmissionStatus.SPAM, f"honeypot field {trap!r} filled", shape, lead)
    return Decision(SubmissionStatus.ACCEPTED, None, shape, lead)


def log_refused(
    status: SubmissionStatus, reason: str | None, form_id: str | None, names: list[str]
) -> None:
    """One line per rejected or spam submission: form, reason, field names, never values."""
    log.info(
        "capture_refused",
        status=status.value,
        form=form_id or "default",
        reason=(reason or "")[:300],
        fields=names[:50],
    )


async def accept(
    conn: AsyncConnection,
    workspace_id: str,
    lead: CaptureIn,
    *,
    now: datetime,
    client_ip: str | None,
    submission: dict[str, Any],
    form: StoredForm | None,
    fields: dict[str, Any] | None = None,
    max_metadata_bytes: int = 16 * 1024,
) -> tuple[Contact, bool]:
    """The capture, its submission and (for a form with ``notify_emails``) its new-lead
    email, in the caller's transaction."""
    contact, created = await service.capture(
        conn,
        workspace_id,
        lead,
        now=now,
        client_ip=client_ip,
        max_metadata_bytes=max_metadata_bytes,
    )
    submission["status"] = SubmissionStatus.ACCEPTED.value
    submission["contact_id"] = contact.id
    await submissions.record(conn, submission)
    if form is not None and (notify_endpoint_id := form["notify_endpoint_id"]):
        await submissions.queue_notification(
            conn,
            workspace_id=workspace_id,
            endpoint_id=notify_endpoint_id,
            form=form,
            submission_id=submission["id"],
            fields=fields if fields is not None else submission["fields"],
            contact=contact.data(),
            now=now,
        )
    return contact, created

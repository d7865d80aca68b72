"""The capture upsert: one contact per (workspace, email), whatever the concurrency."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.capture.limits import MAX_STORED_METADATA_KEYS, json_size
from rex.capture.schemas import ATTRIBUTION_KEYS, CaptureIn
from rex.changes import Changes
from rex.consent import service as consent_service
from rex.consent.service import ConsentValue, as_consent
from rex.contacts import service as contacts_service
from rex.contacts.schemas import Contact
from rex.db.schema import contacts
from rex.errors import Invalid
from rex.ids import new_id, rfc3339
from rex.outbox.catalogue import EventType
from rex.outbox.events import record_event
from rex.states import DEFAULT_CONTACT_STAGE

# Built once: the values travel as bound parameters, so SQLAlchemy compiles this once too.
_INSERT_NEW = {
    name: insert(contacts)
    .on_conflict_do_nothing(index_elements=["workspace_id", "email"])
    .returning(contacts)
    for name, insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}


TouchValue = dict[str, str]
"""A stored touch: the attribution keys a capture carried, and ``at``."""


class LeadColumns(TypedDict):
    """The contact columns a capture carries (its touch aside)."""

    email: str
    first_name: str | None
    last_name: str | None
    phone: str | None
    company: str | None
    source: str | None
    metadata: dict[str, Any]  # free-form JSON from the form
    consent: ConsentValue | None


def _split_lead(
    lead: CaptureIn, now: datetime, client_ip: str | None
) -> tuple[LeadColumns, TouchValue | None]:
    """Turn a capture into contact columns: attribution out of metadata into a touch."""
    metadata = dict(lead.metadata)
    metadata.update(lead.model_extra or {})
    touch: TouchValue = {}
    for key in ATTRIBUTION_KEYS:
        top_level = getattr(lead, key)
        nested = metadata.pop(key, None)
        value = top_level if top_level is not None else nested
        if value is not None and value != "":
            touch[key] = str(value)
    consent = None
    if lead.consent is not None:
        consent = as_consent(lead.consent.granted, lead.consent.text, now, client_ip)
    columns = LeadColumns(
        email=lead.email,
        first_name=lead.first_name or None,
        last_name=lead.last_name or None,
        phone=lead.phone or None,
        company=lead.company or None,
        source=lead.source or None,
        metadata=metadata,
        consent=consent,
    )
    return columns, {**touch, "at": rfc3339(now) or ""} if touch else None


def preview(lead: CaptureIn, *, now: datetime, client_ip: str | None) -> Contact:
    """The contact a capture of ``lead`` would create, without storing anything.

    A filled honeypot is answered with this, so a bot cannot tell it was caught.
    """
    fields, touch = _split_lead(lead, now, client_ip)
    return Contact.model_validate(
        {
            **fields,
            "id": new_id("cont"),
            "stage": DEFAULT_CONTACT_STAGE,
            "first_touch": touch,
            "last_touch": touch,
            "created_at": rfc3339(now),
            "updated_at": rfc3339(now),
        }
    )


def _without_time(touch: Mapping[str, str | None] | None) -> dict[str, str] | None:
    """The attribution of a touch, stored (sparse) or answered (every key) alike."""
    return {k: v for k, v in touch.items() if k != "at" and v is not None} if touch else None


async def capture(
    conn: AsyncConnection,
    workspace_id: str,
    lead: CaptureIn,
    *,
    now: datetime,
    client_ip: str | None,
    max_metadata_bytes: int = 16 * 1024,
) -> tuple[Contact, bool]:
    """Create or update the contact for ``lead.email``; returns ``(contact, created)``.

    Emits ``contact.created``, or ``contact.updated`` when the capture changed something.
    Anonymous, so fill-only: it never overwrites a field, never revokes consent (it may add
    a grant to the history), and never grows the stored metadata past ``max_metadata_bytes``
    (compact JSON).
    """
    fields, touch = _split_lead(lead, now, client_ip)
    if json_size(fields["metadata"]) > max_metadata_bytes:
        raise Invalid(
            "metadata",
            f"metadata: {json_size(fields['metadata'])} bytes is too much; a contact's "
            f"metadata is at most {max_metadata_bytes} bytes (REX_MAX_CONTACT_METADATA_BYTES)",
        )
    values = {
        "id": new_id("cont"),
        "workspace_id": workspace_id,
        **fields,
        "stage": DEFAULT_CONTACT_STAGE,
        "first_touch": touch,
        "last_touch": touch,
        "created_at": now,
        "updated_at": now,
    }
    # INSERT .. ON CONFLICT DO NOTHING: of many concurrent captures of one new address, one
    # inserts; on PostgreSQL the others wait on the unique index until it commits, then take
    # the update path below and lock the row (FOR UPDATE), so exactly one contact.created.
    row = (await conn.execute(_INSERT_NEW[conn.dialect.name], values)).first()
    if row is not None:
        contact = Contact.from_row(row)
        if lead.consent is not None:
            await consent_service.append(
                conn, workspace_id, contact.id, granted=lead.consent.granted,
                text=lead.consent.text, ip=client_ip, via="capture", now=now,
            )  # fmt: skip
        await record_event(
            conn,
            workspace_id=workspace_id,
            event_type=EventType.CONTACT_CREATED,
            data=contact.data(),
            object_id=contact.id,
            now=now,
        )
        return contact, True

    existing = (
        await conn.execute(
            sa.select(contacts)
            .where(contacts.c.workspace_id == workspace_id, contacts.c.email == fields["email"])
            .with_for_update()
        )
    ).one()
    stored = Contact.from_row(existing)
    offered = {
        "first_name": fields["first_name"],
        "last_name": fields["last_name"],
        "phone": fields["phone"],
        "company": fields["company"],
        "source": fields["source"],
    }
    changes: Changes = {
        key: value for key, value in offered.items() if value and not getattr(stored, key)
    }
    room = max(0, MAX_STORED_METADATA_KEYS - len(stored.metadata))
    new_keys = {k: v for k, v in fields["metadata"].items() if k not in stored.metadata}
    metadata = dict(stored.metadata)
    size = json_size(metadata)
    for key, value in list(new_keys.items())[:room]:
        # Compact JSON: '"key":value' plus a comma (or the braces of an empty object).
        grown = size + json_size(key) + 1 + json_size(value) + (1 if metadata else 0)
        if grown > max_metadata_bytes:
            continue  # fill-only: a key that does not fit is dropped, the rest still may fit
        metadata[key] = value
        size = grown
    if len(metadata) != len(stored.metadata):
        changes["metadata"] = metadata
    if touch is not None:
        if stored.first_touch is None:
            changes["first_touch"] = touch
        # A repeat of the same attribution is not a change worth an event.
        last = stored.last_touch.model_dump() if stored.last_touch is not None else None
        if _without_time(last) != _without_time(touch):
            changes["last_touch"] = touch
    consent = fields["consent"]
    if consent is not None and consent_service.capture_decision(
        stored.consent, consent["granted"], consent["text"]
    ):
        changes["consent"] = consent
        await consent_service.append(
            conn, workspace_id, stored.id, granted=True, text=consent["text"],
            ip=client_ip, via="capture", now=now,
        )  # fmt: skip
    return await contacts_service.apply_changes(conn, workspace_id, stored, changes), False

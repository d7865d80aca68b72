"""The capture upsert: one contact per (workspace, email), whatever the concurrency."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.capture.limits import MAX_STORED_METADATA_KEYS, json_size
from rex.capture.schemas import ATTRIBUTION_KEYS, CaptureIn
from rex.consent import service as consent_service
from rex.contacts import service as contacts_service
from rex.contacts.schemas import Contact
from rex.db.schema import contacts
from rex.errors import Invalid
from rex.ids import new_id, rfc3339
from rex.outbox.catalogue import EventType
from rex.outbox.events import record_event
from rex.states import DEFAULT_CONTACT_STAGE

# Fields a capture may fill when they are empty; it never overwrites them.
_FILL_ONLY = ("first_name", "last_name", "phone", "company", "source")


# Built once: the values travel as bound parameters, so SQLAlchemy compiles this once too.
_INSERT_NEW = {
    name: insert(contacts)
    .on_conflict_do_nothing(index_elements=["workspace_id", "email"])
    .returning(contacts)
    for name, insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}


def _split_lead(lead: CaptureIn, now: datetime, client_ip: str | None) -> dict[str, Any]:
    """Turn a capture into contact columns: attribution out of metadata into a touch."""
    metadata = dict(lead.metadata)
    metadata.update(lead.model_extra or {})
    touch: dict[str, Any] = {}
    for key in ATTRIBUTION_KEYS:
        top_level = getattr(lead, key)
        nested = metadata.pop(key, None)
        value = top_level if top_level is not None else nested
        if value is not None and value != "":
            touch[key] = str(value)
    consent = None
    if lead.consent is not None:
        consent = {
            "granted": lead.consent.granted,
            "text": lead.consent.text,
            "at": rfc3339(now),
            "ip": client_ip,
        }
    return {
        "email": lead.email,
        "first_name": lead.first_name or None,
        "last_name": lead.last_name or None,
        "phone": lead.phone or None,
        "company": lead.company or None,
        "source": lead.source or None,
        "metadata": metadata,
        "touch": {**touch, "at": rfc3339(now)} if touch else None,
        "consent": consent,
    }


def preview(lead: CaptureIn, *, now: datetime, client_ip: str | None) -> dict[str, Any]:
    """The contact a capture of ``lead`` would create, without storing anything.

    A filled honeypot is answered with this, so a bot cannot tell it was caught.
    """
    fields = _split_lead(lead, now, client_ip)
    touch = fields.pop("touch")
    contact = Contact.model_validate(
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
    return contact.data()


def _without_time(touch: dict[str, Any] | None) -> dict[str, Any] | None:
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
) -> tuple[dict[str, Any], bool]:
    """Create or update the contact for ``lead.email``; returns ``(contact, created)``.

    Emits ``contact.created``, or ``contact.updated`` when the capture changed something.
    Anonymous, so fill-only: it never overwrites a field, never revokes consent (it may add
    a grant to the history), and never grows the stored metadata past ``max_metadata_bytes``
    (compact JSON).
    """
    fields = _split_lead(lead, now, client_ip)
    if json_size(fields["metadata"]) > max_metadata_bytes:
        raise Invalid(
            "metadata",
            f"metadata: {json_size(fields['metadata'])} bytes is too much; a contact's "
            f"metadata is at most {max_metadata_bytes} bytes (REX_MAX_CONTACT_METADATA_BYTES)",
        )
    touch = fields.pop("touch")
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
        contact = Contact.from_row(row).data()
        if lead.consent is not None:
            await consent_service.append(
                conn, workspace_id, contact["id"], granted=lead.consent.granted,
                text=lead.consent.text, ip=client_ip, via="capture", now=now,
            )  # fmt: skip
        await record_event(
            conn,
            workspace_id=workspace_id,
            event_type=EventType.CONTACT_CREATED,
            data=contact,
            object_id=contact["id"],
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
    before = stored.data()
    changes: dict[str, Any] = {
        key: fields[key] for key in _FILL_ONLY if not before[key] and fields[key]
    }
    room = max(0, MAX_STORED_METADATA_KEYS - len(before["metadata"]))
    new_keys = {k: v for k, v in fields["metadata"].items() if k not in before["metadata"]}
    metadata = dict(before["metadata"])
    size = json_size(metadata)
    for key, value in list(new_keys.items())[:room]:
        # Compact JSON: '"key":value' plus a comma (or the braces of an empty object).
        grown = size + json_size(key) + 1 + json_size(value) + (1 if metadata else 0)
        if grown > max_metadata_bytes:
            continue  # fill-only: a key that does not fit is dropped, the rest still may fit
        metadata[key] = value
        size = grown
    if len(metadata) != len(before["metadata"]):
        changes["metadata"] = metadata
    if touch is not None:
        if before["first_touch"] is None:
            changes["first_touch"] = touch
        # A repeat of the same attribution is not a change worth an event.
        if _without_time(before["last_touch"]) != _without_time(touch):
            changes["last_touch"] = touch
    consent = fields["consent"]
    if consent is not None and consent_service.capture_decision(
        before["consent"], consent["granted"], consent["text"]
    ):
        changes["consent"] = consent
        await consent_service.append(
            conn, workspace_id, stored.id, granted=True, text=consent["text"],
            ip=client_ip, via="capture", now=now,
        )  # fmt: skip
    updated = await contacts_service.apply_changes(conn, workspace_id, stored, changes)
    return updated.data(), False

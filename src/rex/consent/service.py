"""Consent records: appended, never changed. Callers own the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.consent.schemas import ConsentRecord
from rex.contacts.schemas import Consent
from rex.db.schema import consent_records
from rex.ids import rfc3339


class ConsentValue(TypedDict):
    """The ``consent`` object a contact stores and shows: its latest record."""

    granted: bool
    text: str | None
    at: str | None
    ip: str | None


def as_consent(granted: bool, text: str | None, at: datetime, ip: str | None) -> ConsentValue:
    """The ``consent`` object a contact shows: its latest record."""
    return {"granted": granted, "text": text, "at": rfc3339(at), "ip": ip}


async def append(
    conn: AsyncConnection,
    workspace_id: str,
    contact_id: str,
    *,
    granted: bool,
    text: str | None,
    ip: str | None,
    via: str,
    now: datetime,
) -> None:
    await conn.execute(
        sa.insert(consent_records).values(
            workspace_id=workspace_id,
            contact_id=contact_id,
            granted=granted,
            text=text,
            ip=ip,
            via=via,
            created_at=now,
        )
    )


async def history(conn: AsyncConnection, workspace_id: str, contact_id: str) -> list[ConsentRecord]:
    rows = await conn.execute(
        sa.select(consent_records)
        .where(
            consent_records.c.workspace_id == workspace_id,
            consent_records.c.contact_id == contact_id,
        )
        .order_by(consent_records.c.id)
    )
    return [ConsentRecord.from_row(row) for row in rows]


def capture_decision(current: Consent | None, granted: bool, text: str | None) -> bool:
    """Whether an anonymous capture's consent answer is recorded on an existing contact.

    A capture may add a grant (none yet, a refusal, or new wording); it never revokes, and a
    repeat of the current grant records nothing.
    """
    if not granted:
        return False
    if current is None or not current.granted:
        return True
    return current.text != text

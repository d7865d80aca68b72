"""Submissions as stored: record one per post that passed the abuse limits, list, read,
queue a form's new-lead email, prune with the events' retention."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.pagination import fetch_page
from rex.db.schema import submissions
from rex.errors import NotFound
from rex.ids import rfc3339
from rex.outbox.catalogue import SUBMISSION_ACCEPTED
from rex.outbox.events import record_event

MAX_RAW_BYTES = 64 * 1024
NOTIFICATION_EVENT = SUBMISSION_ACCEPTED
"""The event a form's new-lead email is a delivery of (sent to its mailto: endpoint only;
internal, see ``rex.outbox.catalogue``)."""


class SubmissionStatus(StrEnum):
    ACCEPTED = "accepted"
    SPAM = "spam"
    REJECTED = "rejected"


_INSERT = sa.insert(submissions)


def raw_text(body: bytes) -> tuple[str, bool]:
    """The body as storable text (at most 64 KiB, no NUL), and whether it was cut."""
    text = body[:MAX_RAW_BYTES].decode("utf-8", "replace").replace("\x00", "\ufffd")
    return text, len(body) > MAX_RAW_BYTES


def field_names(fields: Any) -> list[str]:
    return [str(k) for k in fields] if isinstance(fields, dict) else []


def _fields(row: Any) -> Any:
    """The fields received: stored for form posts; a JSON body's own object otherwise."""
    if row.fields is not None or row.raw_body is None or row.raw_truncated:
        return row.fields
    if "json" not in (row.content_type or "application/json"):
        return None
    try:
        data = orjson.loads(row.raw_body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def serialize(row: Any) -> dict[str, Any]:
    fields = _fields(row)
    return {
        "id": row.id,
        "form_id": row.form_id,
        "status": row.status,
        "reason": row.reason,
        "shape": row.shape,
        "content_type": row.content_type,
        "field_names": field_names(fields),
        "fields": fields,
        "raw_body": row.raw_body,
        "raw_truncated": row.raw_truncated,
        "contact_id": row.contact_id,
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    }


async def record(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(_INSERT, values)


async def get_row(
    conn: AsyncConnection, workspace_id: str, submission_id: str, *, for_update: bool = False
) -> Any:
    query = sa.select(submissions).where(
        submissions.c.workspace_id == workspace_id, submissions.c.id == submission_id
    )
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound("submission", submission_id)
    return row


async def get(conn: AsyncConnection, workspace_id: str, submission_id: str) -> dict[str, Any]:
    return serialize(await get_row(conn, workspace_id, submission_id))


async def list_page(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    limit: int,
    cursor: str | None,
    status: str | None = None,
    form_id: str | None = None,
    since: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    query = sa.select(submissions).where(submissions.c.workspace_id == workspace_id)
    if status is not None:
        query = query.where(submissions.c.status == status)
    if form_id is not None:
        query = query.where(submissions.c.form_id == form_id)
    if since is not None:
        query = query.where(submissions.c.created_at >= since)
    rows, next_cursor = await fetch_page(conn, query, submissions.c.id, limit=limit, cursor=cursor)
    return [serialize(row) for row in rows], next_cursor


async def update_outcome(
    conn: AsyncConnection,
    submission_id: str,
    *,
    status: SubmissionStatus,
    reason: str | None,
    shape: str | None,
    contact_id: str | None,
    now: datetime,
) -> None:
    await conn.execute(
        sa.update(submissions)
        .where(submissions.c.id == submission_id)
        .values(status=status.value, reason=reason, shape=shape, contact_id=contact_id,
                updated_at=now)
    )  # fmt: skip


async def queue_notification(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    endpoint_id: str,
    form: dict[str, Any],
    submission_id: str,
    fields: Any,
    contact: dict[str, Any],
    now: datetime,
) -> None:
    """Queue the new-lead email of a form's accepted submission, in the capture's
    transaction: committed with the lead or not at all, then sent by the workers."""
    await record_event(
        conn,
        workspace_id=workspace_id,
        event_type=NOTIFICATION_EVENT,
        data={
            "id": submission_id,
            "form": {"id": form["id"], "name": form["name"]},
            "contact": contact,
            "fields": fields if isinstance(fields, dict) else {},
        },
        object_id=submission_id,
        now=now,
        only_endpoint_id=endpoint_id,
    )

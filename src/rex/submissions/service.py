"""Submissions as stored: record one per post that passed the abuse limits, list, read,
queue a form's new-lead email, prune with the events' retention."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any, TypedDict

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.pagination import fetch_page
from rex.db.schema import submissions
from rex.errors import NotFound
from rex.forms.schemas import StoredForm
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
# The same INSERT for SQLite's write connection, run inline on the driver: one per capture,
# and SQLAlchemy's execution machinery cost ten times what SQLite does for it (0.19 ms
# against 0.02 ms a row in a profile), most of what the submissions inbox added to /capture.
_COLUMNS = tuple(column.name for column in submissions.columns)
_INLINE_INSERT = (
    f"INSERT INTO submissions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)
_INLINE = "rex_inline_execute"


@functools.cache
def _bind_processors(dialect: Dialect) -> tuple[Callable[[Any], Any] | None, ...]:
    """Each column's conversion to what the driver stores, exactly as SQLAlchemy does."""
    return tuple(
        column.type.dialect_impl(dialect).bind_processor(dialect) for column in submissions.columns
    )


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


class SubmissionData(TypedDict):
    """A submission as the API shows it (``rex.submissions.schemas.Submission``)."""

    id: str
    form_id: str | None
    status: str
    reason: str | None
    shape: str | None
    content_type: str | None
    field_names: list[str]
    fields: Any  # as received: a form's fields, or a JSON body's object
    raw_body: str | None
    raw_truncated: bool
    contact_id: str | None
    created_at: str
    updated_at: str


def serialize(row: Any) -> dict[str, Any]:
    """``submission``, as the console's pages hold it (``rex.console`` types rows as dicts)."""
    return dict(submission(row))


def submission(row: Any) -> SubmissionData:
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
    """Insert one submission (``values`` has every column) in the caller's transaction."""
    sync = conn.sync_connection
    if (
        sync is not None
        and sync.dialect.name == "sqlite"
        and sync.get_execution_options().get("rex_immediate")
    ):
        # A group-commit unit on SQLite: the write lock is held (BEGIN IMMEDIATE), so the
        # statement never waits and may run inline, as the batch's savepoints do.
        execute = conn.info.get(_INLINE)
        if execute is None:
            raw = await conn.get_raw_connection()
            execute = getattr(raw.driver_connection, "execute_inline", None)
            conn.info[_INLINE] = execute or False
        if execute:
            processors = _bind_processors(conn.dialect)
            execute(
                _INLINE_INSERT,
                [
                    process(values[name]) if process is not None else values[name]
                    for name, process in zip(_COLUMNS, processors, strict=True)
                ],
            )
            return
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


async def get(conn: AsyncConnection, workspace_id: str, submission_id: str) -> SubmissionData:
    return submission(await get_row(conn, workspace_id, submission_id))


async def list_page(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    limit: int,
    cursor: str | None,
    status: str | None = None,
    form_id: str | None = None,
    since: datetime | None = None,
) -> tuple[list[SubmissionData], str | None]:
    query = sa.select(submissions).where(submissions.c.workspace_id == workspace_id)
    if status is not None:
        query = query.where(submissions.c.status == status)
    if form_id is not None:
        query = query.where(submissions.c.form_id == form_id)
    if since is not None:
        query = query.where(submissions.c.created_at >= since)
    rows, next_cursor = await fetch_page(conn, query, submissions.c.id, limit=limit, cursor=cursor)
    return [submission(row) for row in rows], next_cursor


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
    form: StoredForm,
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

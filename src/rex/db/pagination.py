"""Cursor pagination over prefixed ULID ids, newest first: the storage half.

A page is the rows after a cursor plus the cursor of the next page (``None`` on the last).
The HTTP half (the ``limit``/``cursor`` query parameters) is ``rex.api.pagination``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.errors import BadCursor

# What a cursor decodes to: the prefixed ULID of the last row of the previous page.
_ID = re.compile(r"^[a-z]{2,8}_[0-9A-HJKMNP-TV-Z]{26}$")


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a cursor stands for; ``BadCursor`` when this API did not hand it out."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        value = ""
    if not _ID.match(value):
        raise BadCursor()
    return value


async def fetch_page(
    conn: AsyncConnection,
    query: sa.Select[Any],
    id_column: sa.ColumnElement[str],
    *,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[sa.Row[Any]], str | None]:
    """Run ``query`` newest first from ``cursor``; return the rows and the next cursor."""
    if cursor is not None:
        query = query.where(id_column < decode_cursor(cursor))
    rows = (await conn.execute(query.order_by(id_column.desc()).limit(limit + 1))).all()
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(rows[-1].id)
    return rows, None

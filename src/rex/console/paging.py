"""Cursor pagination for console pages, on ``rex.db.pagination`` (newest first by id).

A handler takes ``cursor: str | None = None`` from the query, calls ``fetch`` and passes
the ``Page`` to its template, which shows ``{{ ui.pager(page, query) }}``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.pagination import fetch_page

T = TypeVar("T")

PAGE_SIZE = 50


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None
    cursor: str | None = None  # the cursor this page was asked with (None: the first page)
    extra: dict[str, Any] = field(default_factory=dict)


async def fetch(
    conn: AsyncConnection,
    query: sa.Select[Any],
    id_column: sa.ColumnElement[str],
    *,
    cursor: str | None,
    limit: int = PAGE_SIZE,
    convert: Callable[[sa.Row[Any]], T] | None = None,
) -> Page[Any]:
    """One page of ``query``, newest first from ``cursor`` (``BadCursor`` on a forged one:
    the console answers 400)."""
    rows: Sequence[sa.Row[Any]]
    rows, next_cursor = await fetch_page(conn, query, id_column, limit=limit, cursor=cursor or None)
    items = [convert(row) for row in rows] if convert else list(rows)
    return Page(items=items, next_cursor=next_cursor, cursor=cursor or None)

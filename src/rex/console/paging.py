"""Cursor pagination for console pages, on ``rex.db.pagination`` (newest first by id).

A handler takes ``cursor: str | None = None`` from the query, calls ``fetch`` and passes
the ``Page`` to its template, which shows ``{{ ui.pager(page, query) }}``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.pagination import decode_cursor, encode_cursor, fetch_page

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
    floor: str | None = None,
) -> Page[Any]:
    """One page of ``query``, newest first from ``cursor`` (``BadCursor`` on a forged one:
    the console answers 400), no lower than ``floor`` when given (``search_floor``): a page
    that stops there has ``extra["searched_to"]`` and goes on below it."""
    rows: Sequence[sa.Row[Any]]
    if floor is not None:
        query = query.where(id_column >= floor)
    rows, next_cursor = await fetch_page(conn, query, id_column, limit=limit, cursor=cursor or None)
    items = [convert(row) for row in rows] if convert else list(rows)
    page: Page[Any] = Page(items=items, next_cursor=next_cursor, cursor=cursor or None)
    if floor is not None and next_cursor is None:
        page.next_cursor = encode_cursor(floor)
        page.extra["searched_to"] = floor
    return page


async def distinct_values(
    conn: AsyncConnection,
    column: sa.Column[Any],
    workspace_id: str,
    *,
    limit: int = 100,
) -> list[Any]:
    """The distinct non-null values of ``column`` in one workspace, in order, at most
    ``limit``: one index seek per value (a loose index scan over an index on
    ``(workspace_id, column, ...)``), so it costs the same with 100 rows or 10 million,
    where ``GROUP BY`` reads every row of the workspace."""
    table = column.table
    workspace = table.c.workspace_id
    seen = sa.select(
        sa.select(column)
        .where(workspace == workspace_id, column.is_not(None))
        .order_by(column)
        .limit(1)
        .scalar_subquery()
        .label("value"),
        sa.literal(1).label("n"),
    ).cte("seen", recursive=True)
    step = (
        sa.select(column)
        .where(workspace == workspace_id, column > seen.c.value)
        .order_by(column)
        .limit(1)
        .scalar_subquery()
    )
    seen = seen.union_all(
        sa.select(step, seen.c.n + 1).where(seen.c.value.is_not(None), seen.c.n < limit)
    )
    query = sa.select(seen.c.value).where(seen.c.value.is_not(None))
    return [row.value for row in await conn.execute(query)]


SEARCH_WINDOW = 20_000
"""Rows a search reads per page at most (see ``search_floor``)."""


async def search_floor(
    conn: AsyncConnection,
    id_column: sa.Column[str],
    workspace_id: str,
    cursor: str | None,
    *,
    window: int = SEARCH_WINDOW,
) -> str | None:
    """The id ``window`` rows below ``cursor`` (the newest row without one), or ``None`` when
    fewer rows are left: a search that no index answers (a substring) reads only the
    ``window`` rows between the two, so a page costs the same however large the table is.
    The page then goes on below the floor (``Page.extra["searched_to"]``) when it did not
    fill up inside the window."""
    table = id_column.table
    query = sa.select(id_column).where(table.c.workspace_id == workspace_id)
    if cursor:
        query = query.where(id_column < decode_cursor(cursor))
    query = query.order_by(id_column.desc()).offset(window).limit(1)
    return (await conn.execute(query)).scalar_one_or_none()

"""The console's bounded reads on both databases: distinct filter values by a loose index
scan, a substring search a window at a time (every match once, over the pages), and open
tasks by due date then id in two range reads (every open task once, in order)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from ulid import ULID

from rex.console import paging
from rex.console.pages import tasks as tasks_page
from rex.db.engine import Database
from rex.db.schema import contacts, tasks
from rex.workspaces import service as workspaces
from tests.support import run

NOW = datetime(2026, 3, 16, 12, 30, tzinfo=UTC)


def _id(prefix: str, n: int) -> str:
    return f"{prefix}_{ULID.from_datetime(NOW + timedelta(seconds=n))}"


async def _seed(database_url: str) -> tuple[Database, str, str]:
    db = Database(database_url)
    async with db.transaction() as conn:
        mine = (await workspaces.create_workspace(conn, "mine")).id
        other = (await workspaces.create_workspace(conn, "other")).id
        stages = ["lead", "customer", "mql"]
        sources = ["google", None, "ads"]
        rows: list[dict[str, Any]] = [
            {
                "id": _id("cont", n),
                "workspace_id": mine,
                "email": f"{'match' if n % 3 == 0 else 'other'}{n}@example.com",
                "stage": stages[n % 3],
                "source": sources[n % 3],
                "metadata": {},
                "created_at": NOW,
                "updated_at": NOW,
            }
            for n in range(40)
        ]
        rows.append(
            {
                "id": _id("cont", 99),
                "workspace_id": other,
                "email": "match-elsewhere@example.com",
                "stage": "secret-stage",
                "source": "secret-source",
                "metadata": {},
                "created_at": NOW,
                "updated_at": NOW,
            }
        )
        await conn.execute(sa.insert(contacts), rows)
    return db, mine, other


def test_distinct_values_and_a_windowed_search(database_url: str) -> None:
    async def scenario() -> None:
        db, mine, _ = await _seed(database_url)
        try:
            async with db.read() as conn:
                assert await paging.distinct_values(conn, contacts.c.stage, mine) == [
                    "customer",
                    "lead",
                    "mql",
                ]
                assert await paging.distinct_values(conn, contacts.c.source, mine) == [
                    "ads",
                    "google",
                ]
                assert await paging.distinct_values(conn, contacts.c.stage, mine, limit=2) == [
                    "customer",
                    "lead",
                ]

                # A search reading 7 rows a page, 3 results a page: every match once, newest
                # first, the last page without a next one.
                query = sa.select(contacts).where(
                    contacts.c.workspace_id == mine, contacts.c.email.contains("match")
                )
                found: list[str] = []
                cursor = None
                windows = 0
                for _ in range(100):  # bounded: 40 rows, at least one a page
                    floor = await paging.search_floor(conn, contacts.c.id, mine, cursor, window=7)
                    page = await paging.fetch(
                        conn, query, contacts.c.id, cursor=cursor, limit=3, floor=floor
                    )
                    assert len(page.items) <= 3
                    windows += bool(page.extra.get("searched_to"))
                    found += [row.email for row in page.items]
                    if page.next_cursor is None:
                        break
                    cursor = page.next_cursor
                expected = [f"match{n}@example.com" for n in range(39, -1, -1) if n % 3 == 0]
                assert found == expected
                assert windows > 0  # some pages stopped at their window
        finally:
            await db.close()

    run(scenario())


def test_open_tasks_by_due_date_then_id_page_by_page(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks_page, "PAGE_SIZE", 4)

    async def scenario() -> None:
        db, mine, other = await _seed(database_url)
        try:
            rows = []
            for n in range(15):
                due = None if n % 4 == 0 else NOW + timedelta(days=n % 3)  # ties, and undated
                rows.append(
                    {
                        "id": _id("task", n),
                        "workspace_id": mine,
                        "title": f"task {n}",
                        "due_at": due,
                        "status": "done" if n == 5 else "todo",
                        "created_at": NOW,
                        "updated_at": NOW,
                    }
                )
            rows.append({**rows[1], "id": _id("task", 50), "workspace_id": other})
            async with db.transaction() as conn:
                await conn.execute(sa.insert(tasks), rows)
            open_rows = [r for r in rows if r["workspace_id"] == mine and r["status"] != "done"]
            expected = [
                r["id"]
                for r in sorted(
                    open_rows,
                    key=lambda r: (r["due_at"] is None, r["due_at"] or NOW, r["id"]),
                )
            ]
            query = sa.select(tasks).where(tasks.c.workspace_id == mine, tasks.c.status != "done")
            seen: list[str] = []
            cursor = None
            async with db.read() as conn:
                for _ in range(20):
                    page = await tasks_page._open_page(conn, query, cursor)
                    assert len(page.items) <= 4
                    seen += [row.id for row in page.items]
                    if page.next_cursor is None:
                        break
                    cursor = page.next_cursor
            assert seen == expected
        finally:
            await db.close()

    run(scenario())

"""Subscription filters decide alike on every path that records an event: SQLite's general
path and PostgreSQL's one statement (which evaluates them in SQL) agree with the Python rule
(``rex.outbox.filters.passes``) on the same events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from rex.db.engine import Database
from rex.db.schema import deliveries, events
from rex.ids import utcnow
from rex.outbox import events as outbox_events
from rex.outbox.filters import passes
from rex.webhooks import service as webhooks
from rex.webhooks.schemas import EndpointCreate
from rex.worker.ssrf import DestinationPolicy
from rex.workspaces import service as workspaces

FILTERS: list[dict[str, Any]] = [
    {"data.source": "organic"},
    {"data.stage": ["won", "lost"], "data.source": "organic"},
    {"data.amount": 1},  # 1 equals 1.0, and true is not 1
    {"data.flag": True},
    {"data.company": None},  # null or missing
    {"data.tags.0": "vip"},  # a list index
    {"data.meta.plan": ["pro", None]},  # nested; null in a list
    {"event": "contact.updated", "previous_attributes.stage": "lead"},
]
DATA: list[dict[str, Any]] = [
    {"source": "organic", "stage": "won", "amount": 1.0, "tags": ["vip", "b"]},
    {"source": "ads", "stage": "lost", "amount": True, "flag": 1, "company": "Acme"},
    {"source": "organic", "stage": "open", "flag": True, "company": None, "meta": {"plan": 1}},
    {"source": {"nested": "organic"}, "amount": "1", "tags": [], "meta": {"plan": "pro"}},
    {"source": "organic", "stage": "lost", "tags": "vip", "meta": None, "company": "x"},
]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=4)
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


async def test_sql_and_python_filters_agree(db: Database) -> None:
    async with db.transaction() as conn:
        workspace, _ = await workspaces.ensure_default_workspace(conn)
        filter_of = {}
        for condition in FILTERS:  # 8: PostgreSQL's one statement serves them all
            body = EndpointCreate(
                url="https://hooks.example.com/rex", events=["*"], filter=condition
            )
            created = await webhooks.create(conn, workspace.id, body, DestinationPolicy())
            filter_of[created["id"]] = condition
    checked = 0
    for event_type, previous in (("contact.created", None), ("contact.updated", {"stage": "lead"})):
        for data in DATA:
            async with db.transaction() as conn:
                event_id = await outbox_events.record_event(
                    conn,
                    workspace_id=workspace.id,
                    event_type=event_type,
                    data=data,
                    object_id=None,
                    now=utcnow(),
                    previous_attributes=previous,
                )
                queued = set(
                    (
                        await conn.execute(
                            sa.select(deliveries.c.endpoint_id).where(
                                deliveries.c.event_id == event_id
                            )
                        )
                    ).scalars()
                )
                payload = (
                    await conn.execute(sa.select(events.c.payload).where(events.c.id == event_id))
                ).scalar_one()
            envelope = json.loads(payload)
            expected = {e for e, condition in filter_of.items() if passes(condition, envelope)}
            assert queued == expected, (data, event_type)
            checked += len(expected)
    assert checked >= 10  # the cases above match often enough to mean something

"""``record_event`` on both databases: exactly the enabled endpoints whose filter matches get
a delivery, whether PostgreSQL takes its one-statement path (few endpoints) or the general
one (more endpoints than it presets ids for)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from rex.db.engine import QUEUED_FLAG, Database
from rex.db.schema import deliveries, endpoints
from rex.ids import utcnow
from rex.outbox import events as outbox_events
from rex.webhooks import service as webhooks
from rex.webhooks.schemas import EndpointCreate
from rex.worker.ssrf import DestinationPolicy
from rex.workspaces import service as workspaces


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=4)
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


async def subscribe(db: Database, events: list[str], *, enabled: bool = True) -> str:
    async with db.transaction() as conn:
        workspace, _ = await workspaces.ensure_default_workspace(conn)
        body = EndpointCreate(url="https://hooks.example.com/rex", events=events)
        created = await webhooks.create(conn, workspace.id, body, DestinationPolicy())
        if not enabled:
            await conn.execute(
                sa.update(endpoints).where(endpoints.c.id == created["id"]).values(enabled=False)
            )
    return str(created["id"])


async def record(db: Database, event_type: str) -> tuple[str, set[str], bool]:
    """The event id, the endpoints it was queued for, and whether workers were woken."""
    async with db.transaction() as conn:
        workspace, _ = await workspaces.ensure_default_workspace(conn)
        event_id = await outbox_events.record_event(
            conn,
            workspace_id=workspace.id,
            event_type=event_type,
            data={"id": "cont_x"},
            object_id="cont_x",
            now=utcnow(),
        )
        woken = bool(conn.info.get(QUEUED_FLAG, False))
        rows = await conn.execute(
            sa.select(deliveries.c.endpoint_id, deliveries.c.id, deliveries.c.status).where(
                deliveries.c.event_id == event_id
            )
        )
        found = rows.all()
    assert all(row.id.startswith("dlv_") and row.status == "pending" for row in found)
    assert len({row.id for row in found}) == len(found)
    return event_id, {row.endpoint_id for row in found}, woken


async def test_only_matching_enabled_endpoints_get_a_delivery(db: Database) -> None:
    everything = await subscribe(db, ["*"])
    created = await subscribe(db, ["contact.created"])
    await subscribe(db, ["deal.created"])
    await subscribe(db, ["contact.created"], enabled=False)

    _, queued, woken = await record(db, "contact.created")
    assert queued == {everything, created}
    assert woken

    _, queued, _ = await record(db, "task.completed")
    assert queued == {everything}


async def test_no_endpoint_no_delivery_and_no_wake_up(db: Database) -> None:
    await subscribe(db, ["deal.created"])
    _, queued, woken = await record(db, "contact.created")
    assert queued == set()
    assert not woken


async def test_more_endpoints_than_preset_ids(db: Database) -> None:
    wanted = {
        await subscribe(db, ["contact.created"]) for _ in range(outbox_events._PRESET_IDS + 3)
    }
    await subscribe(db, ["deal.created"])
    _, queued, woken = await record(db, "contact.created")
    assert queued == wanted
    assert woken


async def test_webhook_test_events_are_never_matched_by_a_filter(db: Database) -> None:
    await subscribe(db, ["*"])
    _, queued, woken = await record(db, "webhook.test")
    assert queued == set()
    assert not woken

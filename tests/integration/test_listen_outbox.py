"""The outbox queries under `rex listen`, on a real SQLite file and real PostgreSQL: workers
never take a listen session's deliveries; a session's stream takes only its own, a bounded
number at a time; expiry; and the migrations produce exactly ``schema.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from rex.db.engine import Database
from rex.db.schema import metadata
from rex.ids import utcnow
from rex.listen import service
from rex.listen.schemas import SessionOpen
from rex.outbox import queue
from rex.outbox.events import record_event
from rex.outbox.records import ClaimedDelivery, EndpointKind
from rex.settings import Settings
from rex.workspaces import service as workspaces
from tests.support import make_settings


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=2)
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, listen_grace_period=60.0)


async def _workspace_and_key(db: Database) -> tuple[str, str]:
    async with db.transaction() as conn:
        workspace, _ = await workspaces.ensure_default_workspace(conn)
        key_id, _ = await workspaces.create_api_key(conn, workspace.id, "t")
    return workspace.id, key_id


async def _session(
    db: Database, settings: Settings, workspace_id: str, key_id: str, url: str
) -> str:
    async with db.transaction() as conn:
        opened = await service.open_session(
            conn,
            workspace_id=workspace_id,
            api_key_id=key_id,
            body=SessionOpen(forward_to=url),
            config=settings.listen,
            now=utcnow(),
        )
    return opened.id


async def _events(db: Database, workspace_id: str, n: int) -> None:
    async with db.transaction() as conn:
        for i in range(n):
            await record_event(
                conn,
                workspace_id=workspace_id,
                event_type="contact.created",
                data={"i": i},
                object_id=None,
                now=utcnow(),
            )


async def test_workers_never_claim_listen_deliveries(db: Database, settings: Settings) -> None:
    workspace_id, key_id = await _workspace_and_key(db)
    await _session(db, settings, workspace_id, key_id, "http://127.0.0.1:3000/a")
    await _events(db, workspace_id, 3)
    later = utcnow() + timedelta(seconds=1)
    async with db.transaction() as conn:
        claimed = await queue.claim_due_deliveries(
            conn, worker_id="w", now=later, lease=30, limit=100
        )
        due = await queue.next_due_at(conn, later)
        due_for_listen = await queue.next_due_at(conn, later, kind=EndpointKind.LISTEN)
    assert claimed == []
    assert due is None  # an idle worker is not woken by them either
    assert due_for_listen is not None


async def test_a_stream_claims_only_its_session_and_at_most_max_in_flight(
    db: Database, settings: Settings
) -> None:
    workspace_id, key_id = await _workspace_and_key(db)
    mine = await _session(db, settings, workspace_id, key_id, "http://127.0.0.1:3000/a")
    other = await _session(db, settings, workspace_id, key_id, "http://127.0.0.1:3000/b")
    await _events(db, workspace_id, 5)
    now = utcnow() + timedelta(seconds=1)

    async def claim(worker_id: str, session_id: str = mine) -> list[ClaimedDelivery]:
        async with db.transaction() as conn:
            return await queue.claim_listen_deliveries(
                conn,
                endpoint_id=session_id,
                worker_id=worker_id,
                now=now,
                lease=30,
                max_in_flight=3,
            )

    first = await claim("listen:a")
    assert len(first) == 3 and {d.endpoint_id for d in first} == {mine}
    assert await claim("listen:a") == []  # three in flight already
    second = await claim("listen:b")  # another stream of the session: the other two
    assert len(second) == 2 and not {d.id for d in first} & {d.id for d in second}
    assert {d.endpoint_id for d in await claim("listen:c", other)} == {other}

    async with db.transaction() as conn:
        freed = await queue.release_endpoint_leases(conn, endpoint_id=mine, worker_id="listen:a")
    assert freed == 3
    again = await claim("listen:a")
    assert {d.id for d in again} == {d.id for d in first}


async def test_expiry_removes_only_sessions_past_the_grace_period(
    db: Database, settings: Settings
) -> None:
    workspace_id, key_id = await _workspace_and_key(db)
    await _session(db, settings, workspace_id, key_id, "http://127.0.0.1:3000/a")
    await _events(db, workspace_id, 2)
    async with db.transaction() as conn:
        assert await service.delete_expired(conn, settings.listen, utcnow()) == 0
    async with db.transaction() as conn:
        later = utcnow() + timedelta(seconds=settings.listen_grace_period + 1)
        assert await service.delete_expired(conn, settings.listen, later) == 1
    async with db.read() as conn:
        page, _ = await service.list_page(
            conn, workspace_id, settings.listen, utcnow(), limit=10, cursor=None
        )
        due = await queue.next_due_at(conn, utcnow(), kind=EndpointKind.LISTEN)
    assert page == [] and due is None


async def test_migrations_match_the_schema(db: Database) -> None:
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert diff == []

"""PostgreSQL connections the server dropped (a restart, an idle timeout, an operator's
pg_terminate_backend) are replaced, without a ping on every checkout."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from rex.db import engine as engine_module
from rex.db.engine import Database
from rex.errors import Unavailable


async def _backend_pid(db: Database) -> int:
    async with db.transaction() as conn:
        return int((await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one())


async def _drop_every_other_session(postgres_url: str) -> None:
    admin = Database(postgres_url, pool_size=1)
    try:
        async with admin.transaction() as conn:
            await conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        await admin.close()


async def test_an_idle_dropped_connection_is_replaced_before_use(postgres_url: str) -> None:
    db = Database(postgres_url, pool_size=2)
    try:
        first = await _backend_pid(db)
        await _drop_every_other_session(postgres_url)
        await asyncio.sleep(engine_module._PING_AFTER_IDLE + 0.2)
        second = await _backend_pid(db)  # pinged, found dead, replaced: no error
        async with db.read() as conn:
            assert (await conn.execute(sa.text("SELECT 1"))).scalar_one() == 1
    finally:
        await db.close()
    assert second != first


async def test_a_connection_dropped_in_steady_use_fails_once_then_the_pool_recovers(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "Steady use": the connection is used again within the idle time after which it would be
    # pinged. Dropping it takes a new engine and a round trip, which a loaded machine can
    # stretch past the real 1 s; a long idle time keeps this test about steady use.
    monkeypatch.setattr(engine_module, "_PING_AFTER_IDLE", 3600.0)
    db = Database(postgres_url, pool_size=2)
    try:
        first = await _backend_pid(db)
        await _drop_every_other_session(postgres_url)
        with pytest.raises(Unavailable) as caught:
            await _backend_pid(db)  # used at once: not pinged, so this transaction fails
        # The domain's Unavailable (answered 503 by the API), raised from the driver's error.
        cause = caught.value.__cause__
        assert isinstance(cause, sa.exc.DBAPIError) and cause.connection_invalidated
        second = await _backend_pid(db)
    finally:
        await db.close()
    assert second != first

"""Group commit on a real SQLite file: shared commits keep each unit's all-or-nothing
outcome, a failed commit fails its whole batch, urgent work goes first."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.engine import Database


async def _database(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path}/rex.db")
    async with db.transaction() as conn:
        await conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
    return db


def _rows(tmp_path: Path) -> list[str]:
    """What a separate connection (another process, say) sees committed."""
    with sqlite3.connect(tmp_path / "rex.db") as connection:
        return sorted(v for (v,) in connection.execute("SELECT v FROM t"))


def _insert(value: str) -> Any:
    async def work(conn: AsyncConnection) -> str:
        await conn.execute(sa.text("INSERT INTO t (v) VALUES (:v)"), {"v": value})
        return value

    return work


async def test_concurrent_units_share_commits_and_each_sees_its_own_outcome(
    tmp_path: Path,
) -> None:
    db = await _database(tmp_path)
    assert db._committer is not None
    batches_before = db._committer.batches

    async def failing(conn: AsyncConnection) -> None:
        await conn.execute(sa.text("INSERT INTO t (v) VALUES ('doomed')"))
        raise ValueError("bad input")

    async def duplicate(conn: AsyncConnection) -> None:
        await conn.execute(sa.text("INSERT INTO t (v) VALUES ('a0')"))  # unique violation

    results = await asyncio.gather(
        *(db.run_in_transaction(_insert(f"a{i}")) for i in range(100)),
        db.run_in_transaction(failing),
        db.run_in_transaction(duplicate),
        return_exceptions=True,
    )
    await db.close()

    assert results[:100] == [f"a{i}" for i in range(100)]
    assert isinstance(results[100], ValueError)
    assert isinstance(results[101], sa.exc.IntegrityError)
    # Only the failing units' own work is gone; every acknowledged unit is on disk.
    assert _rows(tmp_path) == sorted(f"a{i}" for i in range(100))
    batches = db._committer.batches - batches_before
    print(f"\n102 units in {batches} commits")
    assert batches < 102


async def test_lent_blocks_and_functions_mix_in_one_batch(tmp_path: Path) -> None:
    db = await _database(tmp_path)

    async def block(value: str, fail: bool) -> None:
        async with db.transaction() as conn:
            await conn.execute(sa.text("INSERT INTO t (v) VALUES (:v)"), {"v": value})
            if fail:
                raise RuntimeError("rolled back")

    outcomes = await asyncio.gather(
        block("b1", False),
        db.run_in_transaction(_insert("f1")),
        block("b2", True),
        db.run_in_transaction(_insert("f2")),
        return_exceptions=True,
    )
    await db.close()
    assert [type(o).__name__ for o in outcomes] == ["NoneType", "str", "RuntimeError", "str"]
    assert _rows(tmp_path) == ["b1", "f1", "f2"]


async def test_a_failed_commit_fails_every_unit_of_its_batch(tmp_path: Path) -> None:
    """A unit that breaks the transaction itself (here: it commits behind the committer's
    back, so the savepoint is gone) fails the batch, and no unit of it reports success."""
    db = await _database(tmp_path)
    gate = asyncio.Event()

    async def slow_first(conn: AsyncConnection) -> str:
        await gate.wait()  # the others queue up behind it, in the same batch
        await conn.execute(sa.text("INSERT INTO t (v) VALUES ('first')"))
        return "first"

    async def breaks_the_transaction(conn: AsyncConnection) -> None:
        raw = await conn.get_raw_connection()
        raw.driver_connection._conn.rollback()  # type: ignore[union-attr]

    first = asyncio.ensure_future(db.run_in_transaction(slow_first))
    await asyncio.sleep(0.05)
    others = [
        asyncio.ensure_future(db.run_in_transaction(_insert("second"))),
        asyncio.ensure_future(db.run_in_transaction(breaks_the_transaction)),
    ]
    gate.set()
    outcomes = await asyncio.gather(first, *others, return_exceptions=True)
    await db.close()
    assert all(isinstance(o, Exception) for o in outcomes), outcomes
    assert _rows(tmp_path) == []


async def test_urgent_work_goes_before_waiting_work(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    order: list[str] = []
    gate = asyncio.Event()

    def recording(name: str, wait: bool = False) -> Any:
        async def work(conn: AsyncConnection) -> None:
            if wait:
                await gate.wait()
            order.append(name)

        return work

    running = asyncio.ensure_future(db.run_in_transaction(recording("running", wait=True)))
    await asyncio.sleep(0.05)
    waiting = [asyncio.ensure_future(db.run_in_transaction(recording(f"w{i}"))) for i in (1, 2)]
    await asyncio.sleep(0)
    urgent = asyncio.ensure_future(db.run_in_transaction(recording("urgent"), urgent=True))
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(running, urgent, *waiting)
    await db.close()
    assert order == ["running", "urgent", "w1", "w2"]


async def test_waits_for_another_process_holding_the_write_lock(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE is tried at once, and waits on a thread (busy_timeout) while another
    connection holds the write lock: the event loop keeps running meanwhile."""
    db = await _database(tmp_path)
    other = sqlite3.connect(tmp_path / "rex.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    write = asyncio.ensure_future(db.run_in_transaction(_insert("after the lock")))
    ticks = 0
    for _ in range(20):  # the loop keeps turning while the write waits for the lock
        await asyncio.sleep(0.01)
        ticks += 0 if write.done() else 1
    assert not write.done()
    other.execute("COMMIT")
    other.close()
    assert await asyncio.wait_for(write, 10) == "after the lock"
    await db.close()
    assert ticks == 20
    assert _rows(tmp_path) == ["after the lock"]


@pytest.mark.postgres
async def test_postgres_runs_each_unit_in_its_own_transaction(postgres_url: str) -> None:
    db = Database(postgres_url)
    assert db._committer is None
    try:
        value = await db.run_in_transaction(lambda conn: _scalar(conn, "SELECT 'one transaction'"))
    finally:
        await db.close()
    assert value == "one transaction"


async def _scalar(conn: AsyncConnection, statement: str) -> Any:
    return (await conn.execute(sa.text(statement))).scalar()


async def test_connections_open_in_wal_with_their_settings_even_behind_another_lock(
    tmp_path: Path,
) -> None:
    """WAL is switched on where the connection is opened (off the event loop), after the
    busy timeout is set: a connection opened while another process holds the write lock
    comes up in WAL with Rex's settings, and the loop keeps turning meanwhile."""
    path = tmp_path / "rex.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA journal_mode=WAL")  # as Rex leaves every database it opened
    other.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t (id) VALUES (1)")
    db = Database(f"sqlite:///{path}")
    turns = 0

    ten_turns = asyncio.Event()

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            if turns >= 10:
                ten_turns.set()
            await asyncio.sleep(0.01)

    conn = db.engine.connect()
    opening = asyncio.create_task(conn.start())
    counter = asyncio.create_task(count_turns())
    try:
        # The loop keeps turning while the connection opens: counted, not timed, so a slow
        # machine cannot fail it. (The opening does not wait for the other process here: in
        # WAL mode, switching to WAL takes no lock, which is the point of the settings below.)
        async with asyncio.timeout(30):
            await ten_turns.wait()
        other.execute("COMMIT")
        await opening
        try:
            settings = [
                (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "busy_timeout", "synchronous", "foreign_keys")
            ]
        finally:
            await conn.close()
        assert settings == ["wal", 10000, 2, 1]
    finally:
        counter.cancel()
        other.close()
        await db.close()

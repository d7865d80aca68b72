"""The async engine for SQLite or PostgreSQL, and the two ways to use it.

``db.transaction()`` is a write transaction; ``db.read()`` a read-only snapshot. Route
handlers open exactly one of them per request (the transaction boundary lives there, not in
service functions).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from rex import secretbox, tracing
from rex.db import sqlite_driver
from rex.db.group_commit import Committer

MIGRATIONS = Path(__file__).parent / "migrations"
# Serialises `rex migrate` / `rex serve` start-ups racing on one PostgreSQL database.
_MIGRATION_LOCK_ID = 0x5245584D  # "REXM"
# Set on a connection by the outbox when a transaction queued deliveries (see
# rex.outbox.events.notify_queued).
QUEUED_FLAG = "rex_deliveries_queued"

T = TypeVar("T")


def async_url(url: str) -> sa.URL:
    """Pick the async driver for a user-facing SQLAlchemy-style URL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///... or postgresql://...")


def asyncpg_dsn(url: str) -> str:
    """A plain ``postgresql://`` DSN for opening raw asyncpg connections (LISTEN)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Database:
    """One engine per process, created at start-up and passed to whoever needs it."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        target = async_url(url)
        self.is_sqlite = target.get_backend_name() == "sqlite"
        if self.is_sqlite:
            database = target.database
            if database and database != ":memory:":
                _create_private_file(Path(database))
            path = database or ":memory:"
            self.engine: AsyncEngine = create_async_engine(
                target,
                pool_size=pool_size,
                max_overflow=0,
                pool_timeout=60,
                # The standard sqlite3 module, inline on the event loop (see sqlite_driver).
                async_creator=lambda: sqlite_driver.connect(path, init=_SQLITE_OPEN),
            )
            _configure_sqlite(self.engine)
        else:
            self.engine = create_async_engine(
                target,
                pool_size=pool_size,
                max_overflow=pool_size,
                # Not a ping on every checkout (a round trip a transaction): see below.
                pool_pre_ping=False,
                pool_timeout=30,
            )
            _ping_when_idle(self.engine)
        # Endpoint secrets are encrypted with this database's key (see rex.secretbox).
        secretbox.attach(self.engine.sync_engine.dialect, secretbox.for_database(url))
        self._queued_callbacks: list[Callable[[], None]] = []
        # SQLite allows one writer at a time: this process's writers share transactions
        # (group commit) instead of queueing for the lock one commit at a time.
        self._committer = (
            Committer(self.engine, after_commit=self._after_group_commit)
            if self.is_sqlite
            else None
        )

    @property
    def dialect(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    def on_deliveries_queued(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after any transaction that queued deliveries has committed."""
        self._queued_callbacks.append(callback)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block exits normally, rolled back otherwise.

        Returns only once the work is durable. On SQLite the work may share its commit with
        other requests of this process (see ``group_commit``), each one isolated by a
        savepoint, so its outcome is exactly as if it had committed alone.
        """
        with tracing.transaction_span(self.dialect):
            async with self._transaction() as conn:
                yield conn

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        if self._committer is not None:
            async with self._committer.unit() as conn:
                yield conn
            return
        async with self.engine.connect() as conn:
            conn.info.pop(QUEUED_FLAG, None)  # left by a transaction that failed
            async with conn.begin():
                yield conn
            # Not in a `finally`: reading `info` of a connection that broke reconnects.
            queued = conn.info.pop(QUEUED_FLAG, False)
        if queued:
            self._deliveries_queued()

    async def run_in_transaction(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, urgent: bool = False
    ) -> T:
        """``work(conn)`` in a write transaction; its result once committed.

        The same guarantees as ``transaction()``; on SQLite the committer calls ``work``
        itself, which is the cheapest way into a shared commit (the hot paths use it), and
        ``urgent`` work goes before the requests waiting there (the delivery worker's).
        """
        if self._committer is not None:
            if not tracing.ENABLED:
                return await self._committer.run(work, urgent=urgent)
            with tracing.transaction_span(self.dialect):
                # The committer calls `work` on its own task: in this trace's context.
                return await self._committer.run(tracing.carry_context(work), urgent=urgent)
        async with self.transaction() as conn:
            return await work(conn)

    def _after_group_commit(self, conn: AsyncConnection, committed: bool) -> None:
        if conn.invalidated:  # its `info` would reconnect; nothing it queued was committed
            return
        if conn.info.pop(QUEUED_FLAG, False) and committed:
            self._deliveries_queued()

    def _deliveries_queued(self) -> None:
        for callback in self._queued_callbacks:
            callback()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only unit of work (a consistent snapshot on both backends)."""
        async with self.engine.connect() as conn, conn.begin():
            yield conn

    async def migrate(self) -> None:
        """Bring the schema up to date (idempotent; safe when several processes start at once)."""
        async with self.engine.connect() as conn:
            if not self.is_sqlite:
                await conn.execute(sa.text(f"SELECT pg_advisory_lock({_MIGRATION_LOCK_ID})"))
            try:
                await conn.run_sync(_upgrade_head)
                # Plain-text secrets (before 0006) are encrypted; a wrong key fails here.
                await secretbox.encrypt_stored_secrets(conn)
                await conn.commit()
            finally:
                if not self.is_sqlite:
                    await conn.execute(sa.text(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK_ID})"))
                    await conn.commit()

    async def close(self) -> None:
        if self._committer is not None:
            await self._committer.close()
        await self.engine.dispose()


def _create_private_file(path: Path) -> None:
    """A new SQLite database is readable by its owner only: folder 0700, file 0600 (SQLite
    gives its -wal and -shm files the database file's permissions)."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _upgrade_head(connection: sa.Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


# A pooled connection unused for longer than this is pinged before it is lent again.
_PING_AFTER_IDLE = 1.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Pessimistic disconnect handling without a round trip per transaction.

    SQLAlchemy's ``pool_pre_ping`` pings every connection it lends: under load that was one
    extra round trip in five for a capture. Connections in steady use are alive; only one that
    sat in the pool (through a server restart, say) is pinged, and a dead one is replaced
    before anyone uses it (``DisconnectionError`` makes the pool try a fresh connection). A
    connection that dies while in use fails that transaction (503), and SQLAlchemy then
    discards every pooled connection opened before the failure.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["rex_last_used"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last_used = record.info.get("rex_last_used")
        if last_used is None or time.monotonic() - last_used < _PING_AFTER_IDLE:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:
            raise DisconnectionError(f"connection lost while idle: {exc}") from exc


# Run on the thread that opens each SQLite connection: the busy timeout first, so that
# switching to WAL (a database-wide change, which takes a lock) waits for another process's
# lock instead of failing at once.
_SQLITE_OPEN = ("PRAGMA busy_timeout=10000", "PRAGMA journal_mode=WAL")


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # journal_mode=WAL is set when the connection opens (_SQLITE_OPEN, off the loop).
        # FULL: an acknowledged capture survives power loss, not only a process crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Writers take the write lock up front (BEGIN IMMEDIATE) so a transaction never has
        # to upgrade a read snapshot, which SQLite refuses with SQLITE_BUSY_SNAPSHOT.
        immediate = conn.get_execution_options().get("rex_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

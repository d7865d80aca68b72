"""The async engine for SQLite or PostgreSQL, and the two ways to use it.

``db.transaction()`` is a write transaction; ``db.read()`` a read-only snapshot. Route
handlers open exactly one of them per request (the transaction boundary lives there, not in
service functions).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# Serialises `rex migrate` / `rex serve` start-ups racing on one PostgreSQL database.
_MIGRATION_LOCK_ID = 0x5245584D  # "REXM"
# Set on a connection by the outbox when a transaction queued deliveries (see outbox._notify).
QUEUED_FLAG = "rex_deliveries_queued"


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
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(
                target, pool_size=pool_size, max_overflow=0, pool_timeout=60
            )
            _configure_sqlite(self.engine)
        else:
            self.engine = create_async_engine(
                target,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                pool_timeout=30,
            )
        # SQLite allows one writer at a time. Queueing writers here, in the event loop, is
        # cheaper and fairer than letting them spin on SQLITE_BUSY in driver threads; other
        # processes (the CLI) are still handled by busy_timeout.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._queued_callbacks: list[Callable[[], None]] = []

    @property
    def dialect(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    def on_deliveries_queued(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after any transaction that queued deliveries has committed."""
        self._queued_callbacks.append(callback)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block exits normally, rolled back otherwise."""
        async with self._write_lock or contextlib.nullcontext(), self.engine.connect() as conn:
            if self.is_sqlite:
                conn = await conn.execution_options(rex_immediate=True)
            try:
                async with conn.begin():
                    yield conn
            finally:
                # An invalidated connection (the database went away mid-transaction) must not
                # be touched: reading its .info would try to reconnect outside the greenlet
                # and replace the original error (a 503) with MissingGreenlet (a 500).
                queued = not conn.invalidated and conn.info.pop(QUEUED_FLAG, False)
        if queued:
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
                await conn.commit()
            finally:
                if not self.is_sqlite:
                    await conn.execute(sa.text(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK_ID})"))
                    await conn.commit()

    async def close(self) -> None:
        await self.engine.dispose()


def _upgrade_head(connection: sa.Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
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

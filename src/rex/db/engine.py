"""The async engine for SQLite or PostgreSQL, and the two ways to use it.

``db.transaction()`` is a write transaction; ``db.read()`` a read-only snapshot. Route
handlers open exactly one of them per request (the transaction boundary lives there, not in
service functions).
"""

from __future__ import annotations

import asyncio
import os
import socket
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
from sqlalchemy.util.concurrency import await_

from rex import secretbox, tracing
from rex.db import sqlite_driver
from rex.db.group_commit import Committer
from rex.db.outage import STORAGE, unavailable_from

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

    def __init__(self, url: str, *, pool_size: int = 10, timeout: float = 5.0) -> None:
        self.url = url
        # REX_DATABASE_TIMEOUT: the longest wait for a connection, a pooled connection or
        # a statement (see _postgres_engine); SQLite's busy timeout is never shorter than
        # 10 s (a CLI or backup tool holding the lock briefly is waited for).
        self.timeout = timeout
        target = async_url(url)
        self.is_sqlite = target.get_backend_name() == "sqlite"
        if self.is_sqlite:
            database = target.database
            if database and database != ":memory:":
                _create_private_file(Path(database))
            path = database or ":memory:"
            busy_ms = int(max(timeout, 10.0) * 1000)
            self.engine: AsyncEngine = create_async_engine(
                target,
                pool_size=pool_size,
                max_overflow=0,
                pool_timeout=60,
                # The standard sqlite3 module, inline on the event loop (see sqlite_driver).
                async_creator=lambda: sqlite_driver.connect(path, init=_sqlite_open(busy_ms)),
            )
            _configure_sqlite(self.engine, busy_ms)
        else:
            self.engine = _postgres_engine(target, pool_size=pool_size, timeout=timeout)
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
        try:
            if self._committer is not None:
                async with self._committer.unit() as conn:
                    yield conn
                STORAGE.wrote()
                return
            async with self._connect() as conn:
                conn.info.pop(QUEUED_FLAG, None)  # left by a transaction that failed
                async with conn.begin():
                    yield conn
                # Not in a `finally`: reading `info` of a connection that broke reconnects.
                queued = conn.info.pop(QUEUED_FLAG, False)
        except Exception as exc:
            _raise_unavailable(exc)
            raise
        STORAGE.wrote()
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
            try:
                if not tracing.ENABLED:
                    result = await self._committer.run(work, urgent=urgent)
                else:
                    with tracing.transaction_span(self.dialect):
                        # The committer calls `work` on its own task: in this trace's context.
                        traced = tracing.carry_context(work)
                        result = await self._committer.run(traced, urgent=urgent)
            except Exception as exc:
                _raise_unavailable(exc)
                raise
            STORAGE.wrote()
            return result
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
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection within REX_DATABASE_TIMEOUT in all: waiting for the pool, the
        idle ping, and a fresh connection when the ping found the pooled one dead (each is
        bounded on its own, but one after the other they could add up)."""
        if self.is_sqlite:
            async with self.engine.connect() as conn:
                yield conn
            return
        conn = self.engine.connect()
        async with asyncio.timeout(self.timeout):
            await conn.start()
        try:
            yield conn
        finally:
            await asyncio.shield(conn.close())

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only unit of work (a consistent snapshot on both backends)."""
        try:
            async with self._connect() as conn, conn.begin():
                yield conn
        except Exception as exc:
            _raise_unavailable(exc)
            raise

    async def migrate(self) -> None:
        """Bring the schema up to date (idempotent; safe when several processes start at once).

        On PostgreSQL through a connection of its own without the statement timeout: a
        migration of a large table may take longer than REX_DATABASE_TIMEOUT."""
        engine = self.engine
        if not self.is_sqlite:
            engine = _postgres_engine(
                self.engine.url, pool_size=1, timeout=self.timeout, statements=False
            )
            secretbox.attach(engine.sync_engine.dialect, secretbox.for_database(self.url))
        try:
            await self._migrate(engine)
        finally:
            if engine is not self.engine:
                await engine.dispose()

    async def _migrate(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
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


def _raise_unavailable(exc: Exception) -> None:
    """Raise the domain's ``Unavailable`` (``StorageFull``) for an error that means the
    database cannot serve now; return for anything else (a bug, a constraint, a 4xx)."""
    unavailable = unavailable_from(exc)
    if unavailable is not None and unavailable is not exc:
        raise unavailable from exc


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


def _postgres_engine(
    target: sa.URL, *, pool_size: int, timeout: float, statements: bool = True
) -> AsyncEngine:
    """The asyncpg engine, every wait bounded by ``timeout`` (REX_DATABASE_TIMEOUT):

    - connecting: asyncpg's ``timeout`` (TCP connect, TLS and start-up);
    - a pooled connection: the pool's ``pool_timeout``;
    - each statement (``statements``): asyncpg's ``command_timeout``; a statement past it
      raises ``TimeoutError`` and its connection is discarded (``_discard_on_timeout``),
      never rolled back or reused, since it may be stuck in a dead TCP connection;
    - a connection that went silent while idle (a partition: no RST, no FIN): TCP
      keepalives and ``TCP_USER_TIMEOUT`` on its socket (``tune_socket``) make the kernel
      give up on it, and the idle ping (``_ping_when_idle``) replaces it before use.
    """
    connect_args: dict[str, object] = {"timeout": timeout}
    if statements:
        connect_args["command_timeout"] = timeout
    engine = create_async_engine(
        target,
        pool_size=pool_size,
        max_overflow=pool_size,
        # Not a ping on every checkout (a round trip a transaction): see below.
        pool_pre_ping=False,
        pool_timeout=timeout,
        connect_args=connect_args,
    )
    # A ping answers in milliseconds when the path works.
    _ping_when_idle(engine, ping_timeout=min(1.0, timeout / 2))
    _discard_on_timeout(engine)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        tune_socket(dbapi_connection.driver_connection, timeout)

    return engine


def tune_socket(connection: Any, timeout: float) -> None:
    """TCP keepalives and ``TCP_USER_TIMEOUT`` on an asyncpg connection's socket, so that a
    silent peer is noticed within about ``timeout`` seconds instead of the kernel's two
    hours (keepalives) or fifteen minutes (retransmissions). asyncpg has no libpq-style
    ``keepalives_*`` options: the socket is set directly (Linux; elsewhere what exists)."""
    transport = getattr(connection, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # a Unix socket: no network path to lose
    seconds = max(1, int(timeout))
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", seconds),
            ("TCP_KEEPINTVL", 1),
            ("TCP_KEEPCNT", seconds),
            ("TCP_USER_TIMEOUT", seconds * 1000),
        ):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def _discard_on_timeout(engine: AsyncEngine) -> None:
    """A statement that timed out (``command_timeout``) leaves its connection in an unknown
    state, possibly in a dead TCP connection: SQLAlchemy is told it is a disconnect, so the
    connection is closed at once instead of rolled back (a second wait) and reused."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: Any) -> None:
        error = context.original_exception
        if isinstance(error, TimeoutError) or isinstance(error.__cause__, TimeoutError):
            context.is_disconnect = True


def _ping_when_idle(engine: AsyncEngine, ping_timeout: float) -> None:
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
            # Bounded apart from the statement timeout: a ping that waits that long, then a
            # fresh connection that does too, would be twice REX_DATABASE_TIMEOUT.
            await_(dbapi_connection.driver_connection.fetchrow(";", timeout=ping_timeout))
        except Exception as exc:
            raise DisconnectionError(f"connection lost while idle: {exc!r}") from exc


def _sqlite_open(busy_ms: int) -> tuple[str, ...]:
    """Run on the thread that opens each SQLite connection: the busy timeout first, so that
    switching to WAL (a database-wide change, which takes a lock) waits for another
    process's lock instead of failing at once."""
    return (f"PRAGMA busy_timeout={busy_ms}", "PRAGMA journal_mode=WAL")


def _configure_sqlite(engine: AsyncEngine, busy_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # journal_mode=WAL is set when the connection opens (_sqlite_open, off the loop).
        # FULL: an acknowledged capture survives power loss, not only a process crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Writers take the write lock up front (BEGIN IMMEDIATE) so a transaction never has
        # to upgrade a read snapshot, which SQLite refuses with SQLITE_BUSY_SNAPSHOT.
        immediate = conn.get_execution_options().get("rex_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

"""An asyncio face on the standard ``sqlite3`` module for SQLAlchemy's aiosqlite dialect.

Why not aiosqlite itself: it runs every call (execute, fetch, close a cursor) on a thread of
its own and hands the result back through the event loop. SQLite answers most statements in a
few microseconds, so those hand-overs are nearly all of the cost: measured here, one
SQLAlchemy statement took ~415 µs through aiosqlite against ~1 µs for the statement itself,
which capped ``POST /capture`` at a few hundred a second.

This module keeps aiosqlite's interface (what ``sqlalchemy.dialects.sqlite.aiosqlite``
calls) but runs statements inline, on the event loop, except the two that can wait:

- ``BEGIN IMMEDIATE`` may wait up to ``busy_timeout`` for another process's write lock
  (the CLI, a second tool);
- ``COMMIT`` waits for the disk (``synchronous=FULL`` fsyncs the WAL).

Those two run on a worker thread, so the event loop never blocks on a lock or on the disk
(``BEGIN IMMEDIATE`` is first tried at once, without waiting: it only goes to the thread
when another process holds the lock).
Everything else is safe to run inline under Rex's rules: in WAL mode readers never wait for
the writer, and a writer that holds the write lock (``BEGIN IMMEDIATE``) never waits for
anyone. Rex serialises its own writers (see ``Database``), so at most one statement of a
process is ever waiting for SQLite's write lock.
"""

from __future__ import annotations

import asyncio
import enum
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

_BEGIN_WRITE = ("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE")


class _Wait(enum.Enum):
    LOCK = "lock"
    DISK = "disk"


_COMMIT = ("COMMIT", "END")


class Cursor:
    """The subset of ``aiosqlite.Cursor`` SQLAlchemy uses, over a ``sqlite3.Cursor``."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._cursor = connection._require().cursor()

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Cursor:
        wait = self._connection._may_wait(sql)
        if wait is _Wait.LOCK:
            # Usually nobody else holds the write lock: try without waiting first, and
            # only wait for it (busy_timeout) on a worker thread when someone does.
            if not self._connection._try_at_once(self._cursor, sql):
                await self._connection._in_thread(self._cursor.execute, sql, parameters or ())
        elif wait is _Wait.DISK:
            await self._connection._in_thread(self._cursor.execute, sql, parameters or ())
        else:
            self._cursor.execute(sql, parameters or ())
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> Cursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _Immediate:
    """Stands in for aiosqlite's request queue (``_tx``), which SQLAlchemy's dialect uses
    directly to set ``isolation_level``: runs the function now and settles the future."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except Exception as exc:
            if future is not None:
                future.set_exception(exc)
        else:
            if future is not None:
                future.set_result(result)


class Connection:
    """The subset of ``aiosqlite.Connection`` SQLAlchemy uses, over a ``sqlite3.Connection``
    (opened with ``check_same_thread=False`` because ``BEGIN IMMEDIATE`` and ``COMMIT`` run
    on a worker thread; calls never overlap, SQLAlchemy awaits each one)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection: sqlite3.Connection | None = connection
        self._tx = _Immediate()
        self._writer = False
        self._changes_at_begin = 0

    def _require(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    @property
    def _conn(self) -> sqlite3.Connection:
        return self._require()

    def _may_wait(self, sql: str) -> _Wait | None:
        """What ``sql`` can wait for: the write lock (``BEGIN IMMEDIATE``), the disk (the
        ``COMMIT`` of a transaction that wrote; committing a read snapshot does neither),
        or nothing."""
        head = sql.lstrip()[:16].upper()
        connection = self._require()
        if head.startswith("BEGIN"):
            self._writer = head.startswith(_BEGIN_WRITE)
            self._changes_at_begin = connection.total_changes
            return _Wait.LOCK if self._writer else None
        wrote = self._writer or connection.total_changes != self._changes_at_begin
        if head.startswith(_COMMIT) and wrote:
            return _Wait.DISK
        return None

    def _try_at_once(self, cursor: sqlite3.Cursor, sql: str) -> bool:
        """Run ``sql`` (a BEGIN) if it needs no waiting; False if the lock is taken."""
        connection = self._require()
        timeout = connection.execute("PRAGMA busy_timeout").fetchone()[0]
        connection.execute("PRAGMA busy_timeout=0")
        try:
            cursor.execute(sql)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            return False
        finally:
            connection.execute(f"PRAGMA busy_timeout={int(timeout)}")
        return True

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(function, *args)

    def cursor(self) -> Cursor:
        return Cursor(self)

    def execute_inline(self, sql: str, parameters: Sequence[Any] = ()) -> None:
        """Run a statement that never waits (``SAVEPOINT``, ``RELEASE``, ``ROLLBACK TO``, an
        ``INSERT`` inside a transaction that already holds the write lock) directly, without
        SQLAlchemy around it (see ``group_commit``, ``rex.submissions.service.record``)."""
        self._require().execute(sql, parameters)

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Cursor:
        cursor = Cursor(self)
        return await cursor.execute(sql, parameters)

    @property
    def isolation_level(self) -> str | None:
        return self._require().isolation_level

    @property
    def in_transaction(self) -> bool:
        return self._require().in_transaction

    async def commit(self) -> None:
        connection = self._require()
        if not connection.in_transaction:
            return
        if self._writer or connection.total_changes != self._changes_at_begin:
            await self._in_thread(connection.commit)
        else:
            connection.commit()
        self._writer = False

    async def rollback(self) -> None:
        self._require().rollback()
        self._writer = False

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._require().create_function(*args, **kwargs)

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()

    def stop(self) -> None:
        """Close at once (SQLAlchemy's terminate)."""
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()


async def connect(database: str, *, init: Sequence[str] = (), **kwargs: Any) -> Connection:
    """Open ``database`` (a path, or a ``file:`` URI with ``uri=True``) like aiosqlite, then
    run the ``init`` statements (``PRAGMA journal_mode=WAL``: it may wait for a lock)."""
    kwargs.pop("check_same_thread", None)

    def open_connection() -> sqlite3.Connection:
        connection: sqlite3.Connection = sqlite3.connect(
            database, check_same_thread=False, **kwargs
        )
        try:
            for statement in init:
                connection.execute(statement)
        except BaseException:
            connection.close()
            raise
        return connection

    # Opening may run WAL recovery, and switching to WAL takes a lock: off the event loop,
    # like COMMIT (inline, a wait there would stall every request and delivery).
    connection = await asyncio.to_thread(open_connection)
    connection.isolation_level = None  # transactions are begun explicitly (see engine.py)
    return Connection(connection)

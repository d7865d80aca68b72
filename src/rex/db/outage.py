"""Which database errors mean "cannot serve now" rather than a bug, and the full-disk watch.

``unavailable_from(exc)`` turns a driver or pool error into the domain's ``Unavailable``
(503 with ``Retry-After``), or ``StorageFull`` for a full disk; ``Database`` raises those
instead of the driver's errors, so routes, middlewares and the worker see one kind.

A full disk is one condition, not one error per request: ``STORAGE`` logs one warning when
the first write is refused for it and one when a write succeeds again (with how many were
refused meanwhile), and ``/readyz`` and ``/metrics`` read it. Per process: each process
sees its own writes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import datetime

import asyncpg
import structlog
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from rex.errors import StorageFull, Unavailable
from rex.ids import utcnow

log = structlog.get_logger("rex.db")

# PostgreSQL error classes that mean "the server cannot serve us now", not "bad request":
# 08 connection exception (08003: the connection was closed mid-operation), 53 insufficient
# resources (too many connections; 53100 disk full is told apart), 57P operator
# intervention (shutting down, starting up), 57014 a statement cancelled by its timeout.
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P", "57014")
_DISK_FULL_SQLSTATE = "53100"

UNAVAILABLE_MESSAGE = (
    "The database is unavailable; the request may not have been applied. Retry after "
    "Retry-After (with the same Idempotency-Key, if you sent one)."
)


def causes(exc: BaseException) -> list[BaseException]:
    """``exc``, the driver error it wraps, and their causes (asyncpg's error hides behind
    SQLAlchemy's ``DBAPIError.orig`` and that one's ``__cause__``)."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending and len(seen) < 10:
        current = pending.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        pending += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return seen


def storage_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL ("database or disk is full") or PostgreSQL's disk_full (53100);
    also the OS's ENOSPC on the way (a journal or WAL file that cannot grow)."""
    for cause in causes(exc):
        if isinstance(cause, sqlite3.Error) and (
            getattr(cause, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or "database or disk is full" in str(cause)
        ):
            return True
        if getattr(cause, "sqlstate", None) == _DISK_FULL_SQLSTATE:
            return True
        if isinstance(cause, OSError) and cause.errno == 28:  # ENOSPC
            return True
    return False


def database_unavailable(exc: BaseException) -> bool:
    """The database cannot serve now (down, unreachable, locked, too slow): not a bug."""
    if isinstance(exc, Unavailable):
        return True
    if isinstance(exc, PoolTimeoutError | InterfaceError | TimeoutError):
        return True
    if isinstance(exc, OperationalError | DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        text = str(exc).lower()
        if "locked" in text or "busy" in text or "connect" in text:
            return True
    for cause in causes(exc):
        if isinstance(cause, OSError | ConnectionError | TimeoutError):
            return True
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
            return True
    return False


def unavailable_from(exc: BaseException) -> Unavailable | None:
    """The domain error for ``exc`` if it means the database cannot serve now, else None.
    A full disk is counted (``STORAGE``)."""
    if isinstance(exc, Unavailable):
        return exc
    # Only what the database, its driver or the pool raise (or the OS under them): an
    # error of the application raised inside a transaction is never taken for an outage.
    if not isinstance(
        exc,
        SQLAlchemyError | sqlite3.Error | asyncpg.PostgresError | asyncpg.InterfaceError
        | OSError | TimeoutError,
    ):  # fmt: skip
        return None
    if storage_full(exc):
        STORAGE.refused(exc)
        return StorageFull()
    if database_unavailable(exc):
        return Unavailable(UNAVAILABLE_MESSAGE, retry_after=2)
    return None


# A full disk ends at the first successful write this long after the last refused one: a
# few writes may still fit (a WAL that can reuse its pages) while others are refused, and
# one warning each way is wanted, not one per flap.
QUIET = 5.0
# /readyz and rex_storage_full report "full" while a write was refused this recently (a
# process that writes nothing, an API with no traffic, becomes ready again and finds out).
STALE = 30.0


class StorageWatch:
    """Whether this process's writes are refused for a full disk, since when, and how many
    were: one warning when it starts and one when it ends (``QUIET``), never one a request.
    Thread-safe (SQLite commits run on worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.full_since: datetime | None = None  # the current episode, if any
        self.refused_now = 0  # in the current episode
        self.refused_total = 0  # since the process started (the metric)
        self._started = 0.0
        self._last_refused = 0.0  # time.monotonic()
        self._last_wrote = 0.0

    @property
    def full(self) -> bool:
        """Writes are being refused: one was within ``STALE`` seconds and none succeeded
        since, ``QUIET`` seconds after it (asked by /readyz and /metrics, which also end an
        episode whose last write succeeded, when no write comes after it)."""
        return self._settle()

    def refused(self, exc: BaseException) -> None:
        with self._lock:
            self.refused_total += 1
            self.refused_now += 1
            self._last_refused = time.monotonic()
            if self.full_since is not None:
                return
            self.full_since = utcnow()
            self._started = self._last_refused
        log.warning(
            "storage_full",
            error=str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
            note="writes answer 503 storage_full until space is freed; no traceback per request",
        )

    def wrote(self) -> None:
        """A write transaction committed: the disk takes writes (again)."""
        if self.full_since is None:  # the common case: one attribute read
            return
        self._last_wrote = time.monotonic()
        self._settle()

    def _settle(self) -> bool:
        """End the episode if a write succeeded ``QUIET`` seconds after the last refused
        one; whether it goes on."""
        if self.full_since is None:
            return False
        with self._lock:
            now = time.monotonic()
            if self.full_since is None:
                return False
            if self._last_wrote <= self._last_refused or now - self._last_refused < QUIET:
                return now - self._last_refused < STALE
            refused, self.refused_now, self.full_since = self.refused_now, 0, None
            lasted = self._last_refused - self._started
        log.warning("storage_available", refused=refused, full_for_s=round(lasted, 1))
        return False


STORAGE = StorageWatch()

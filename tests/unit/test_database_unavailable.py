"""Which errors mean "the database is unavailable" (503 + Retry-After) rather than a bug (500).

Found by tests/faults/test_postgres_restart.py: when PostgreSQL goes away mid-request,
asyncpg's error reaches the handler wrapped in SQLAlchemy's DBAPIError without
``connection_invalidated`` (a COMMIT cut off, a server still shutting down)."""

from __future__ import annotations

import sqlite3

import asyncpg.exceptions
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from rex.db.outage import database_unavailable, storage_full, unavailable_from
from rex.errors import StorageFull, Unavailable


def wrapped(driver_error: Exception) -> DBAPIError:
    """What SQLAlchemy's asyncpg dialect raises: a DBAPIError whose ``orig`` is the
    dialect's adapted error, caused by asyncpg's own."""

    class AdaptedError(Exception):
        pass

    adapted = AdaptedError(str(driver_error))
    adapted.__cause__ = driver_error
    return DBAPIError("COMMIT", {}, adapted)


@pytest.mark.parametrize(
    "driver_error",
    [
        asyncpg.exceptions.ConnectionDoesNotExistError(
            "connection was closed in the middle of operation"
        ),
        asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        ConnectionResetError(104, "Connection reset by peer"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
def test_lost_or_refused_database_is_unavailable(driver_error: Exception) -> None:
    assert database_unavailable(wrapped(driver_error))


@pytest.mark.parametrize(
    "error",
    [
        wrapped(asyncpg.exceptions.UniqueViolationError("duplicate key")),
        wrapped(asyncpg.exceptions.UndefinedColumnError("no such column")),
        IntegrityError("INSERT", {}, Exception("duplicate")),
        ValueError("a bug"),
    ],
)
def test_bugs_and_bad_statements_are_not_unavailability(error: Exception) -> None:
    assert not database_unavailable(error)


def sqlite_full() -> OperationalError:
    """What SQLAlchemy raises when SQLite cannot grow its file (SQLITE_FULL)."""
    driver_error = sqlite3.OperationalError("database or disk is full")
    driver_error.sqlite_errorcode = sqlite3.SQLITE_FULL
    driver_error.sqlite_errorname = "SQLITE_FULL"
    return OperationalError("INSERT INTO contacts ...", {}, driver_error)


@pytest.mark.parametrize(
    "error",
    [
        sqlite_full(),
        wrapped(asyncpg.exceptions.DiskFullError("could not extend file: No space left")),
        OSError(28, "No space left on device"),
    ],
)
def test_a_full_disk_is_storage_full(error: Exception) -> None:
    assert storage_full(error)
    domain = unavailable_from(error)
    assert isinstance(domain, StorageFull) and domain.type == "storage_full"
    assert domain.retry_after is not None


def test_an_outage_is_unavailable_not_storage_full() -> None:
    domain = unavailable_from(wrapped(ConnectionResetError(104, "Connection reset by peer")))
    assert isinstance(domain, Unavailable) and not isinstance(domain, StorageFull)
    assert domain.retry_after == 2


def test_an_application_error_is_never_taken_for_an_outage() -> None:
    """A 4xx raised inside a transaction while handling a network error stays a 4xx."""
    try:
        try:
            raise ConnectionResetError(104, "a receiver reset")
        except ConnectionResetError:
            raise ValueError("bad input") from None
    except ValueError as error:
        assert unavailable_from(error) is None

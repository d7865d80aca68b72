"""Which errors mean "the database is unavailable" (503 + Retry-After) rather than a bug (500).

Found by tests/faults/test_postgres_restart.py: when PostgreSQL goes away mid-request,
asyncpg's error reaches the handler wrapped in SQLAlchemy's DBAPIError without
``connection_invalidated`` (a COMMIT cut off, a server still shutting down)."""

from __future__ import annotations

import asyncpg.exceptions
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError

from rex.api.errors import _database_unavailable


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
    assert _database_unavailable(wrapped(driver_error))


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
    assert not _database_unavailable(error)

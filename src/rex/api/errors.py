"""What answers with the error envelope: ``ApiError``, the domain errors of ``rex.errors``,
validation failures, HTTP errors and database outages, each mapped in one handler."""

from __future__ import annotations

import json

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rex.api.envelope import (
    ERROR_RESPONSES,
    ApiError,
    ErrorBody,
    ErrorEnvelope,
    error_response,
)
from rex.api.routes import api_operations
from rex.errors import (
    ChallengeFailed,
    Conflict,
    DomainError,
    Invalid,
    Malformed,
    NotFound,
    RateLimited,
    TooLarge,
    Unavailable,
    Unsupported,
    invalid_input,
)

log = structlog.get_logger("rex.api")

__all__ = [
    "ERROR_RESPONSES",
    "ApiError",
    "ErrorBody",
    "ErrorEnvelope",
    "api_error_for",
    "database_error_response",
    "describe_validation",
    "domain_error_response",
    "error_response",
    "install_error_handlers",
]

# Each domain error's status (the envelope's ``type`` follows from it); the most specific
# class first.
_DOMAIN_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (Malformed, 400),
    (Invalid, 422),
    (TooLarge, 413),
    (Unsupported, 415),
    (RateLimited, 429),
    (ChallengeFailed, 403),
    (Unavailable, 503),
)


def api_error_for(exc: DomainError) -> ApiError:
    """The HTTP answer a domain error (``rex.errors``) stands for: status, ``type``, message,
    field and ``Retry-After``."""
    status = next((code for kind, code in _DOMAIN_STATUS if isinstance(exc, kind)), 500)
    headers = {} if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
    return ApiError(status, exc.message, type=exc.code, field=exc.field, headers=headers)


def domain_error_response(exc: DomainError) -> JSONResponse:
    """The error envelope for a domain error (``rex.errors``)."""
    error = api_error_for(exc)
    return error_response(
        error.status, error.message, type=error.type, field=error.field, headers=error.headers
    )


def describe_validation(exc: RequestValidationError) -> tuple[int, str, str | None]:
    """The status, message and field of the envelope for a request that failed validation."""
    error = api_error_for(invalid_input(exc.errors()))
    return error.status, error.message, error.field


# PostgreSQL error classes that mean "the server cannot serve us now", not "bad request":
# 08 connection exception (08003: the connection was closed mid-operation), 53 insufficient
# resources (too many connections), 57P operator intervention (shutting down, starting up).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")


def _causes(exc: BaseException) -> list[BaseException]:
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


def _database_unavailable(exc: Exception) -> bool:
    if isinstance(exc, PoolTimeoutError | InterfaceError):
        return True
    if isinstance(exc, OperationalError | DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        text = str(exc).lower()
        if "locked" in text or "busy" in text or "connect" in text:
            return True
    for cause in _causes(exc):
        if isinstance(cause, OSError | ConnectionError):
            return True
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
            return True
    return False


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method any operation on ``path`` accepts (FastAPI's own 405 may list only the
    first matching route's)."""
    methods: set[str] = set()
    for operation in api_operations(app):
        if operation.path_regex.match(path):
            methods |= operation.methods
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status, exc.message, type=exc.type, field=exc.field, headers=exc.headers
        )

    @app.exception_handler(DomainError)
    async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return domain_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, message, field = describe_validation(exc)
        return error_response(status, message, field=field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(app, request.url.path))
            detail = f"{request.method} is not allowed here; use {headers['Allow']}."
        return error_response(exc.status_code, detail, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        known = database_error_response(exc, request.url.path)
        if known is not None:
            return known
        log.exception("unhandled_error", path=request.url.path)
        return error_response(500, "Internal error; nothing was written.", type="internal_error")


def database_error_response(exc: Exception, path: str) -> JSONResponse | None:
    """The answer to a database error that is not a bug: a 409 for a constraint that caught a
    concurrent change, a 503 for an unavailable database; None for anything else."""
    if isinstance(exc, IntegrityError):
        # A constraint caught what a check-then-write lost to a concurrent request (two
        # POST /contacts with one email at once): the transaction rolled back.
        log.info("integrity_conflict", path=path, error=str(exc.orig)[:200])
        return error_response(
            409,
            "This conflicts with a concurrent change (e.g. a duplicate); nothing was "
            "written. Read the current state and retry.",
        )
    if _database_unavailable(exc):
        log.warning("database_unavailable", path=path, error=type(exc).__name__)
        # Not "nothing was written": a connection lost during COMMIT leaves the outcome
        # unknown (the PostgreSQL restart fault test saw such a write committed).
        return error_response(
            503,
            "The database is unavailable; the request may not have been applied. Retry "
            "after Retry-After (with the same Idempotency-Key, if you sent one).",
            headers={"Retry-After": "2"},
        )
    return None


class DatabaseErrorsMiddleware:
    """Answers database outages and conflicts raised anywhere below it (routes and the
    idempotency middleware alike) with ``database_error_response``.

    Without it they reach the app-wide ``Exception`` handler, which Starlette runs in its
    outermost ``ServerErrorMiddleware``: that one re-raises after answering, and uvicorn
    then closes the connection, so a keep-alive client's next request on it is reset
    (found by tests/faults/test_postgres_restart.py). It also keeps a traceback per 503
    out of the logs during an outage."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            response = None if started else database_error_response(exc, scope["path"])
            if response is None:
                raise
            await response(scope, receive, send)

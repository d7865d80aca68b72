"""What answers with the error envelope: ``ApiError``, the domain errors of ``rex.errors``,
validation failures, HTTP errors and database outages, each mapped in one handler."""

from __future__ import annotations

import json

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
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
from rex.db.outage import unavailable_from
from rex.errors import (
    ChallengeFailed,
    Conflict,
    DomainError,
    Invalid,
    Malformed,
    NotFound,
    RateLimited,
    StorageFull,
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
    "unavailable_response",
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
    return ApiError(status, exc.message, type=exc.type, field=exc.field, headers=headers)


def domain_error_response(exc: DomainError) -> JSONResponse:
    """The error envelope for a domain error (``rex.errors``)."""
    error = api_error_for(exc)
    return error_response(
        error.status, error.message, type=error.type, field=error.field, headers=error.headers
    )


def unavailable_response(exc: Unavailable, path: str) -> JSONResponse:
    """503 with ``Retry-After``. An outage is logged once per request without a traceback;
    a full disk not at all (``rex.db.outage.STORAGE`` logs when it starts and ends)."""
    if not isinstance(exc, StorageFull):
        cause = exc.__cause__ or exc
        log.warning("database_unavailable", path=path, error=type(cause).__name__)
    return domain_error_response(exc)


def describe_validation(exc: RequestValidationError) -> tuple[int, str, str | None]:
    """The status, message and field of the envelope for a request that failed validation."""
    error = api_error_for(invalid_input(exc.errors()))
    return error.status, error.message, error.field


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
    async def _domain_error(request: Request, exc: DomainError) -> JSONResponse:
        if isinstance(exc, Unavailable):
            return unavailable_response(exc, request.url.path)
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
    concurrent change, a 503 (``Unavailable``, ``StorageFull``) for a database that cannot
    serve now, raised as the domain's error or still as the driver's; None for anything
    else."""
    if isinstance(exc, IntegrityError):
        # A constraint caught what a check-then-write lost to a concurrent request (two
        # POST /contacts with one email at once): the transaction rolled back.
        log.info("integrity_conflict", path=path, error=str(exc.orig)[:200])
        return error_response(
            409,
            "This conflicts with a concurrent change (e.g. a duplicate); nothing was "
            "written. Read the current state and retry.",
        )
    unavailable = unavailable_from(exc)
    if unavailable is not None:
        # Not "nothing was written": a connection lost during COMMIT leaves the outcome
        # unknown (the PostgreSQL restart fault test saw such a write committed).
        return unavailable_response(unavailable, path)
    return None


class DatabaseErrorsMiddleware:
    """Answers database outages (``Unavailable``) and conflicts raised anywhere below it
    (routes and the idempotency middleware alike) with ``database_error_response``.

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

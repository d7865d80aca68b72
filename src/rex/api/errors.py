"""The error envelope: ``{"error": {"type", "message", "field"}}`` for every non-2xx answer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rex.ops.requests import current_request_id

log = structlog.get_logger("rex.api")

_STATUS_TYPES = {
    400: "invalid_request",
    401: "authentication_failed",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "service_unavailable",
}


class ApiError(Exception):
    """Raised anywhere in a request to answer with the error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type or _STATUS_TYPES.get(status, "error")
        self.message = message
        self.field = field
        self.headers = dict(headers or {})


def not_found(kind: str, object_id: str) -> ApiError:
    return ApiError(404, f"No {kind} with id {object_id!r}.", type="not_found")


class ErrorBody(BaseModel):
    type: str
    message: str
    field: str | None = None
    request_id: str | None = None  # the request's X-Request-Id (in the logs too)


class ErrorEnvelope(BaseModel):
    """What every non-2xx response carries."""

    error: ErrorBody


_ERROR_EXAMPLES: dict[int, tuple[str, str, str | None]] = {
    400: ("invalid_request", "cursor is not a cursor this API returned.", "cursor"),
    401: ("authentication_failed", "Invalid or revoked API key.", None),
    404: ("not_found", "No deal with id 'deal_01HQ3Z8W6X9Y2V4T5R7P8N0M1K'.", None),
    409: ("conflict", "This Idempotency-Key was used with a different request.", None),
    413: ("payload_too_large", "Request body is larger than 1048576 bytes.", None),
    422: ("invalid_request", "amount: Input should be greater than or equal to 0", "amount"),
    503: (
        "service_unavailable",
        "The database is unavailable; the request may not have been applied.",
        None,
    ),
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "model": ErrorEnvelope,
        "description": description,
        "content": {
            "application/json": {
                "example": {
                    "error": dict(
                        zip(("type", "message", "field"), _ERROR_EXAMPLES[status], strict=True)
                    )
                }
            }
        },
    }
    for status, description in {
        400: "Malformed request (bad JSON, bad cursor, bad Idempotency-Key)",
        401: "Missing or invalid API key",
        404: "No such object in this workspace",
        409: "Conflict: a duplicate, an object still in use, or an Idempotency-Key reused "
        "with a different request (or still in flight)",
        413: "Request body too large",
        422: "Invalid input",
        503: "Database unavailable; retry after the Retry-After delay",
    }.items()
}


def error_response(
    status: int,
    message: str,
    *,
    type: str | None = None,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {
            "type": type or _STATUS_TYPES.get(status, "error"),
            "message": message,
            "field": field,
            "request_id": current_request_id(),
        }
    }
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _describe_validation(exc: RequestValidationError) -> tuple[int, str, str | None]:
    errors = exc.errors()
    if not errors:
        return 422, "Invalid request.", None
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return 400, "Request body is not valid JSON.", None
    if first.get("type") == "missing":
        return 422, f"{field or 'A field'} is required.", field
    if first.get("type") == "extra_forbidden":
        return 422, f"Unknown field {field!r}.", field
    message = str(first.get("msg", "Invalid value."))
    message = message.removeprefix("Value error, ")
    return 422, f"{field}: {message}" if field else message, field


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
    from rex.api.routes import api_operations  # here: routes -> deps -> errors

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

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, message, field = _describe_validation(exc)
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

"""The error envelope: ``{"error": {"type", "message", "field"}}`` for every non-2xx answer.

What an answer carries (``ApiError``, ``error_response``, the documented ``ERROR_RESPONSES``);
which exceptions map to it is ``rex.api.errors``.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from rex.json_types import JsonObject
from rex.request_id import current_request_id

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

ERROR_RESPONSES: dict[int | str, JsonObject] = {
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
        503: "Database unavailable (`service_unavailable`), or its disk is full "
        "(`storage_full`: nothing was written); retry after the Retry-After delay",
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

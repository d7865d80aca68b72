"""The id of the request being served (``X-Request-Id``): set by the request middleware
(``rex.api.requests``), read by the error envelope and every log line of that request."""

from __future__ import annotations

import contextvars
import re
import uuid

_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "rex_request_id", default=None
)


def current_request_id() -> str | None:
    """The id of the request being served (None outside a request)."""
    return request_id_var.get()


def request_id_from(value: str | None) -> str:
    """The client's id when it is 1-128 characters of ``A-Za-z0-9._:-``, else a new one."""
    if value and _VALID_ID.match(value):
        return value
    return uuid.uuid4().hex

"""Domain errors: what went wrong, in the domain's words, with no HTTP in them.

Services, storage helpers and the CLI raise these; ``rex.api.errors`` maps each kind to its
status and ``type`` in the error envelope (``NotFound`` 404, ``Conflict`` 409, ``Invalid`` 422,
``Malformed`` and ``BadCursor`` 400, ``TooLarge`` 413, ``Unsupported`` 415, ``RateLimited``
429 and ``Unavailable`` 503 with ``Retry-After``, ``ChallengeFailed`` 403), in one handler.
A class (or an instance) may name its envelope ``type`` (``StorageFull``: ``storage_full``);
otherwise the status does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class DomainError(Exception):
    """Base of the domain errors: a message for people and the field it is about, if any.

    ``retry_after`` is how many seconds to wait before the same request may succeed (the
    answer's ``Retry-After``), where that is known.
    """

    # The envelope's ``type``; None: the one that follows from the status.
    type: str | None = None
    retry_after: int | None = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    """No such object (in this workspace: another workspace's objects are missing too)."""

    def __init__(
        self, kind: str, object_id: str, *, message: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message or f"No {kind} with id {object_id!r}.", field=field)
        self.kind = kind
        self.object_id = object_id


class Conflict(DomainError):
    """The request is valid, but the current state does not allow it (a duplicate, an object
    still in use, an operation already in flight)."""


class Invalid(DomainError):
    """A value is not acceptable: ``field`` says which one (``None`` for the whole input)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message, field=field)


class Malformed(Invalid):
    """The input cannot be read at all (not JSON, not UTF-8, a broken multipart body), as
    opposed to read and found unacceptable."""


class BadCursor(Malformed):
    """A pagination cursor this API did not hand out (malformed rather than invalid)."""

    def __init__(self) -> None:
        super().__init__("cursor", "cursor is not a cursor this API returned.")


class TooLarge(DomainError):
    """The input is over a size limit (the message says which)."""


class Unsupported(DomainError):
    """The input comes in a format Rex does not read (the message says which it does)."""


class RateLimited(DomainError):
    """Too many requests from one source; ``retry_after`` seconds until the next may pass."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ChallengeFailed(DomainError):
    """A challenge the sender had to pass (a form's CAPTCHA) was not passed; ``field`` names
    the token's field."""

    type = "captcha_failed"


class Unavailable(DomainError):
    """Something Rex depends on cannot serve now; the same request may succeed later."""

    def __init__(
        self, message: str, *, retry_after: int | None = None, type: str | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        if type is not None:
            self.type = type


class StorageFull(Unavailable):
    """The database cannot write: its disk is full (SQLite's SQLITE_FULL, PostgreSQL's
    ``disk_full``, SQLSTATE 53100). Nothing of the refused request was written; the same
    request succeeds once an operator frees space."""

    type = "storage_full"

    def __init__(self, message: str | None = None, *, retry_after: int | None = 5) -> None:
        super().__init__(
            message
            or "Storage is full: the database cannot write, and nothing of this request was "
            "written. Retry after Retry-After (with the same Idempotency-Key, if you sent one).",
            retry_after=retry_after,
        )


def invalid_input(errors: Sequence[Mapping[str, Any]]) -> Invalid:
    """The domain error for pydantic's validation ``errors`` (``exc.errors()``): the first
    one, named by its field (``Malformed`` for input that is not JSON at all)."""
    if not errors:
        return Invalid(None, "Invalid request.")
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return Malformed(None, "Request body is not valid JSON.")
    if first.get("type") == "missing":
        return Invalid(field, f"{field or 'A field'} is required.")
    if first.get("type") == "extra_forbidden":
        return Invalid(field, f"Unknown field {field!r}.")
    message = str(first.get("msg", "Invalid value."))
    message = message.removeprefix("Value error, ")
    return Invalid(field, f"{field}: {message}" if field else message)

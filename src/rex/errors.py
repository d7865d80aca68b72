"""Domain errors: what went wrong, in the domain's words, with no HTTP in them.

Services, storage helpers and the CLI raise these; ``rex.api.errors`` maps each kind to its
status and ``type`` in the error envelope (``NotFound`` 404, ``Conflict`` 409, ``Invalid`` 422,
``BadCursor`` 400, ``Unavailable`` 503 with ``Retry-After``), in one handler. A class may
name its envelope ``type`` (``StorageFull``: ``storage_full``); otherwise the status does.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of the domain errors: a message for people and the field it is about, if any."""

    # The envelope's ``type``; None: the one that follows from the status.
    type: str | None = None

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


class BadCursor(Invalid):
    """A pagination cursor this API did not hand out (malformed rather than invalid)."""

    def __init__(self) -> None:
        super().__init__("cursor", "cursor is not a cursor this API returned.")


class Unavailable(DomainError):
    """Something Rex depends on cannot serve now; the same request may succeed later."""

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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

"""Domain errors: what went wrong, in the domain's words, with no HTTP in them.

Services, storage helpers and the CLI raise these; ``rex.api.errors`` maps each kind to its
status and ``type`` in the error envelope (``NotFound`` 404, ``Conflict`` 409, ``Invalid`` 422,
``BadCursor`` 400, ``Unavailable`` 503), in one handler.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of the domain errors: a message for people and the field it is about, if any."""

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

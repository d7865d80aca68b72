"""The HTTP half of cursor pagination: the ``limit`` and ``cursor`` query parameters.

Cursors and pages themselves are storage matters (``rex.db.pagination``); a list answers
``{"data": [...], "next_cursor"}``, newest first.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

LimitQuery = Annotated[int, Query(ge=1, le=100, description="Page size (1-100).")]
CursorQuery = Annotated[
    str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
]

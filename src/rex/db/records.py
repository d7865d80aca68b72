"""Rows to records: the one conversion of stored values to the API's forms."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from rex.ids import rfc3339


def row_values(row: sa.Row[Any], names: Iterable[str]) -> dict[str, object]:
    """The columns ``names`` of ``row``: times as RFC 3339, dates as ``YYYY-MM-DD``."""
    values: dict[str, object] = {}
    for name in names:
        value = getattr(row, name)
        if isinstance(value, datetime):
            value = rfc3339(value)
        elif isinstance(value, date):
            value = value.isoformat()
        values[name] = value
    return values

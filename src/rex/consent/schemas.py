"""Request and response shapes for consent: a change, and one record of the history."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, StrictBool, StringConstraints

from rex.ids import rfc3339


class ConsentChange(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"granted": False, "text": "Unsubscribed"}]}
    )

    granted: StrictBool
    text: Annotated[str, StringConstraints(max_length=2000)] | None = None


class ConsentRecord(BaseModel):
    granted: bool
    text: str | None
    ip: str | None
    via: str
    at: str

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> ConsentRecord:
        """The record a ``consent_records`` row holds."""
        return cls(
            granted=row.granted,
            text=row.text,
            ip=row.ip,
            via=row.via,
            at=rfc3339(row.created_at) or "",
        )


class ConsentHistory(BaseModel):
    data: list[ConsentRecord]

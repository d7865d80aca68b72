"""Input types shared by the CRM resources, made so that whatever passes validation can be
stored on both SQLite and PostgreSQL (no NUL characters, no non-finite numbers, times that
convert to UTC)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, Field


def _check_json_value(value: Any, path: str = "") -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{path or 'value'} contains a NUL character")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path or 'value'} is not a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json_value(key, path)
            _check_json_value(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json_value(item, f"{path}[{index}]")


def _storable(value: dict[str, Any]) -> dict[str, Any]:
    _check_json_value(value)
    return value


Metadata = Annotated[
    dict[str, Any],
    AfterValidator(_storable),
    Field(description="Free-form JSON object for your own keys.", examples=[{"plan": "team"}]),
]


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time is out of range") from None


UtcTime = Annotated[
    AwareDatetime,
    AfterValidator(_to_utc),
    Field(description="RFC 3339 with a time zone, e.g. 2026-03-16T12:00:00Z."),
]

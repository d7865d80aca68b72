"""Input types shared by the CRM resources, made so that whatever passes validation can be
stored on both SQLite and PostgreSQL (no NUL characters, no non-finite numbers, times that
convert to UTC)."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

from rex.json_types import JsonObject


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


def _storable(value: JsonObject) -> JsonObject:
    _check_json_value(value)
    return value


Metadata = Annotated[
    JsonObject,
    AfterValidator(_storable),
    Field(description="Free-form JSON object for your own keys.", examples=[{"plan": "team"}]),
]


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _rfc3339_text(value: Any) -> Any:
    # Pydantic would also take numbers (and numeric strings) as Unix timestamps; the API
    # documents RFC 3339 only, so anything else is refused rather than guessed at.
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 time such as 2026-03-16T12:00:00Z")
    if not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 time string such as 2026-03-16T12:00:00Z")
    return value


def _iso_date_text(value: Any) -> Any:
    if isinstance(value, str) and _ISO_DATE.match(value):
        return value
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    raise ValueError("must be a date such as 2026-06-30")


IsoDate = Annotated[date, BeforeValidator(_iso_date_text)]


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time is out of range") from None


UtcTime = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339_text),
    AfterValidator(_to_utc),
    Field(description="RFC 3339 with a time zone, e.g. 2026-03-16T12:00:00Z."),
]

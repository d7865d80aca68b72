"""Prefixed, time-sortable identifiers (``cont_01HQ...``) and RFC 3339 times."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import overload

from ulid import ULID

from rex.clock import database_offset

PREFIXES = ("cont", "deal", "task", "wh", "evt", "dlv", "ws", "key", "pipe", "att")
_ID = re.compile(r"^(?P<prefix>[a-z]+)_(?P<ulid>[0-9A-HJKMNP-TV-Z]{26})$")


def new_id(prefix: str) -> str:
    return f"{prefix}_{ULID()}"


def is_id(value: str, prefix: str) -> bool:
    match = _ID.match(value)
    return bool(match) and match.group("prefix") == prefix  # type: ignore[union-attr]


def utcnow() -> datetime:
    """Now, in UTC, on the database's clock (``rex.clock``: the machine's, corrected by the
    offset measured to the database's)."""
    return datetime.now(UTC) + database_offset()


@overload
def rfc3339(moment: datetime) -> str: ...
@overload
def rfc3339(moment: None) -> None: ...
@overload
def rfc3339(moment: datetime | None) -> str | None: ...
def rfc3339(moment: datetime | None) -> str | None:
    """``2026-03-16T12:00:00.123Z`` (milliseconds only when non-zero)."""
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

"""Helpers for the CRM resource tests: read back the events Rex stored."""

from __future__ import annotations

import json
from typing import Any

from tests.support import RexServer, sql


def events(rex: RexServer, prefix: str = "") -> list[dict[str, Any]]:
    """Stored event envelopes (oldest first), optionally only types starting with ``prefix``."""
    rows = sql(
        rex.database_url,
        "SELECT payload FROM events WHERE type LIKE :p ORDER BY id",
        p=f"{prefix}%",
    )
    return [json.loads(row.payload) for row in rows]


def event_types(rex: RexServer, prefix: str = "") -> list[str]:
    return [event["event"] for event in events(rex, prefix)]

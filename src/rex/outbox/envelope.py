"""The event envelope: the JSON object every delivery of an event carries as its body (the
public contract documented in ``rex.events.schemas``), built here and only here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from rex.ids import rfc3339
from rex.json_types import JsonObject


def envelope(
    *,
    event_id: str,
    event_type: str,
    now: datetime,
    data: Mapping[str, Any],
    previous_attributes: Mapping[str, Any] | None = None,
    extra: JsonObject | None = None,
) -> JsonObject:
    """``{"id", "event", "timestamp", "data"}``, plus ``previous_attributes`` for updates
    and the event's ``extra`` keys (``from``/``to`` of ``deal.stage_changed``)."""
    body: JsonObject = {
        "id": event_id,
        "event": event_type,
        "timestamp": rfc3339(now),
        "data": data,
    }
    if previous_attributes is not None:
        body["previous_attributes"] = previous_attributes
    if extra:
        body.update(extra)
    return body


def dumps(value: Any) -> str:
    """Compact JSON text, as stored (and sent: the stored payload is the body, byte for byte)."""
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:  # integers beyond 64 bits: the standard library has no such limit
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

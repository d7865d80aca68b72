"""Partial updates of CRM records: what changed, and metadata merges. Shared by the contact,
deal and task services; values are in the API's (JSON) form."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rex.json_types import JsonObject

# A partial record: field -> value, in the API's form (JSON values).
Changes = JsonObject


def changed_fields(
    before: Mapping[str, Any], after: Mapping[str, Any], tracked: Iterable[str]
) -> Changes:
    """The old values of exactly the ``tracked`` fields that differ (``previous_attributes``)."""
    return {key: before.get(key) for key in tracked if before.get(key) != after.get(key)}


def merge_metadata(current: Mapping[str, Any], patch: Mapping[str, Any] | None) -> JsonObject:
    """``current`` with ``patch`` applied: a key set to null is removed."""
    merged = dict(current)
    for key, value in (patch or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged

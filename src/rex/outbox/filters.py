"""Subscription filters: equality conditions on dotted paths of the event envelope.

``{"data.source": "organic", "data.stage": ["won", "lost"]}`` holds for an event whose
``data.source`` is ``"organic"`` and whose ``data.stage`` is ``"won"`` or ``"lost"``. A list
means any of its values; every condition must hold. A path names keys of nested objects
(and numeric indexes of lists); a path that is missing from the event reads as ``null``.
Values compare as JSON values: ``1`` equals ``1.0``, ``true`` equals only ``true``.

The rule is evaluated when the event is recorded (``rex.outbox.events``), so an event that
fails it queues no delivery. This module is the Python side; the one-statement PostgreSQL
path evaluates the same rule in SQL (``_FILTER_HOLDS_POSTGRES`` there), and the tests run
both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rex.json_types import JsonObject

MAX_CONDITIONS = 20
MAX_VALUES = 100
MAX_PATH_LENGTH = 200
MAX_STRING_LENGTH = 1000
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*")
_MISSING = object()

Scalar = str | int | float | bool | None


def _check_scalar(path: str, value: Any) -> Scalar:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise ValueError(
                f"filter {path!r}: a value may have at most {MAX_STRING_LENGTH} characters"
            )
        return value
    raise ValueError(
        f"filter {path!r}: a value is a string, number, boolean or null, or a list of "
        f"those; got {type(value).__name__ if not isinstance(value, dict) else 'an object'}"
    )


def check_filter(value: Any) -> JsonObject | None:
    """The filter as stored, or ``ValueError`` saying what is wrong with it."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(
            'a filter is an object of dotted paths to values, like {"data.source": "organic"}'
        )
    if not value:
        return None  # no condition: every subscribed event
    if len(value) > MAX_CONDITIONS:
        raise ValueError(f"a filter has at most {MAX_CONDITIONS} conditions, got {len(value)}")
    checked: JsonObject = {}
    for path, wanted in value.items():
        if (
            not isinstance(path, str)
            or len(path) > MAX_PATH_LENGTH
            or not all(_SEGMENT.fullmatch(part) for part in path.split("."))
        ):
            raise ValueError(
                f"filter path {path!r} is not a dotted path of the event (like data.source "
                "or data.metadata.plan: letters, digits, _ and - between dots)"
            )
        if isinstance(wanted, list):
            if not wanted:
                raise ValueError(f"filter {path!r}: a list needs at least one value")
            if len(wanted) > MAX_VALUES:
                raise ValueError(f"filter {path!r}: at most {MAX_VALUES} values")
            checked[path] = [_check_scalar(path, v) for v in wanted]
        else:
            checked[path] = _check_scalar(path, wanted)
    return checked


def _lookup(event: Any, path: str) -> Any:
    current = event
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part, _MISSING)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
        if current is _MISSING:
            return None
    return current


def _same(actual: Any, wanted: Scalar) -> bool:
    # JSON equality: booleans are not numbers (Python's True == 1 is not JSON's).
    if isinstance(actual, bool) or isinstance(wanted, bool):
        return isinstance(actual, bool) and isinstance(wanted, bool) and actual is wanted
    if isinstance(actual, int | float) and isinstance(wanted, int | float):
        return actual == wanted
    return type(actual) is type(wanted) and actual == wanted


def passes(condition: Mapping[str, Any] | None, event: Mapping[str, Any]) -> bool:
    """Does ``event`` (the envelope: ``{"id", "event", "timestamp", "data", ...}``) meet
    every condition of ``condition``? No filter passes everything."""
    if not condition:
        return True
    for path, wanted in condition.items():
        actual = _lookup(event, path)
        options = wanted if isinstance(wanted, list) else [wanted]
        if not any(_same(actual, option) for option in options):
            return False
    return True

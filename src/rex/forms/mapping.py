"""A form's ``field_map``: contact field -> where its value is in the body.

A value is one of:

- a top-level field name, matched case-insensitively (``EMAIL``, ``input_2``, ``1.3``);
- a bracketed form name (``q3_name[first]``), as HTML forms nest fields;
- a dotted path with numeric list indexes (``payload.invitee.email``, ``answers.0.email``).

Targets are the contact fields (``email``, ``first_name``, ``last_name``, ``phone``,
``company``, ``source``), ``name`` (a full name, split in two) and ``metadata.<key>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rex.json_types import JsonObject

TARGETS = ("email", "first_name", "last_name", "phone", "company", "source", "name")
_BRACKETS = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])+)$")


def valid_target(target: str) -> bool:
    if target.startswith("metadata."):
        key = target.removeprefix("metadata.")
        return 0 < len(key) <= 100
    return target in TARGETS


def _child(node: Any, key: str) -> Any:
    if isinstance(node, Mapping):
        if key in node:
            return node[key]
        folded = key.casefold()
        for name, value in node.items():
            if isinstance(name, str) and name.casefold() == folded:
                return value
        return None
    if isinstance(node, list) and key.isdigit():
        index = int(key)
        return node[index] if index < len(node) else None
    return None


def _walk(node: Any, path: list[str]) -> Any:
    for key in path:
        node = _child(node, key)
        if node is None:
            return None
    return node


def resolve(body: Mapping[str, Any], spec: str) -> Any:
    """The value at ``spec`` in ``body``, or ``None``."""
    spec = spec.strip()
    value = _child(body, spec)
    if value is not None:
        return value
    match = _BRACKETS.match(spec)
    if match:
        path = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        value = _walk(body, [p for p in path if p != ""])
        if value is not None:
            return value
    if "." in spec:
        return _walk(body, spec.split("."))
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        return str(value).strip() or None
    return None


def apply(field_map: Mapping[str, str], body: Mapping[str, Any]) -> JsonObject:
    """The mapped values found in ``body`` (targets whose field is missing are left out)."""
    found: JsonObject = {}
    for target, spec in field_map.items():
        value = _text(resolve(body, spec))
        if value is None:
            continue
        if target == "name":
            words = value.split()
            found.setdefault("first_name", " ".join(words[:-1]) if len(words) > 1 else value)
            if len(words) > 1:
                found.setdefault("last_name", words[-1])
        else:
            found[target] = value
    return found

"""How much free-form data one capture may carry (it comes from anyone on the internet).

Metadata is what a form sends beyond the known fields (``metadata[...]`` and unknown fields).
It is stored on the contact and copied into every event, so it is bounded in number of keys,
nesting and string length; a capture over a limit gets a 422 that names the field.
"""

from __future__ import annotations

from typing import Any

import orjson

from rex.capture.schemas import ATTRIBUTION_KEYS
from rex.errors import Invalid
from rex.json_types import JsonObject

MAX_METADATA_KEYS = 50  # keys and list items, at every level, in one capture
MAX_METADATA_DEPTH = 3  # {"a": {"b": {"c": "x"}}} is 3 levels
MAX_KEY_LENGTH = 100
MAX_STRING_LENGTH = 2000
MAX_ATTRIBUTION_LENGTH = 2048
# A contact's metadata grows by fill-only merges across captures; past this many top-level
# keys, new keys from captures are no longer added (one address cannot be inflated forever).
MAX_STORED_METADATA_KEYS = 100


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (how it is stored and sent)."""
    try:
        return len(orjson.dumps(value))
    except TypeError:  # integers beyond 64 bits
        import json

        return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _fail(path: str, message: str) -> Invalid:
    return Invalid(path, f"{path}: {message}")


def check_metadata(metadata: JsonObject, extras: JsonObject) -> None:
    """Raise ``Invalid`` (naming the field) when ``metadata`` plus unknown fields is too big."""
    count = 0

    def walk(value: Any, path: str, depth: int) -> None:
        nonlocal count
        if isinstance(value, dict | list):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, child in items:
                count += 1
                child_path = f"{path}.{key}" if path else str(key)
                if count > MAX_METADATA_KEYS:
                    raise _fail(
                        child_path,
                        f"too much metadata: at most {MAX_METADATA_KEYS} keys and list items "
                        "per capture",
                    )
                if isinstance(key, str) and len(key) > MAX_KEY_LENGTH:
                    raise _fail(
                        child_path[:120] + "...",
                        f"metadata keys are at most {MAX_KEY_LENGTH} characters",
                    )
                if depth + 1 > MAX_METADATA_DEPTH:
                    raise _fail(
                        child_path,
                        f"metadata may nest at most {MAX_METADATA_DEPTH} levels deep",
                    )
                walk(child, child_path, depth + 1)
        elif isinstance(value, str) and len(value) > MAX_STRING_LENGTH:
            raise _fail(
                path,
                f"{len(value)} characters is too long; metadata strings are at most "
                f"{MAX_STRING_LENGTH}",
            )

    for prefix, mapping in (("metadata", metadata), ("", extras)):
        for key in ATTRIBUTION_KEYS:
            value = mapping.get(key)
            if value is None:
                continue
            path = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict | list | bool):
                raise _fail(path, "attribution values are plain strings")
            if len(str(value)) > MAX_ATTRIBUTION_LENGTH:
                raise _fail(path, f"attribution values are at most {MAX_ATTRIBUTION_LENGTH} chars")
        walk(mapping, prefix, 0)

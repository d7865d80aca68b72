"""Reading a capture's body: JSON or an HTML form, bounded in size, into one lead dict.

Browsers post forms as ``application/x-www-form-urlencoded`` (or ``multipart/form-data``
with ``enctype``); tools post JSON. All three end up as the same dict, validated by
``CaptureIn``. Form field conventions (the ones PHP, Rails and Formspree users know):

- ``metadata[utm_source]=x`` nests (``a[b][c]``); ``tags[]=a&tags[]=b`` makes a list, and so
  does a plain repeated unknown field; a repeated known field (``email``) keeps the last value.
- Empty inputs are skipped: a blank optional field is not data.
- ``consent`` is a checkbox: ``on``/``true``/``yes``/``1`` grant, ``off``/``false``/``no``/``0``
  refuse, any other value grants and is kept as the consent text. ``consent[text]`` (a hidden
  input) without a ticked ``consent[granted]`` records a refusal.
- Fields whose name starts with ``_`` are control fields (``_next``, ``_gotcha``): read, never
  stored. The same holds for top-level ``_`` keys of a JSON body.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from fastapi import Request
from starlette.datastructures import FormData, Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from rex.capture.schemas import ATTRIBUTION_KEYS
from rex.errors import Invalid, Malformed, TooLarge, Unsupported

MAX_FORM_FIELDS = 200
MAX_FIELD_NAME_DEPTH = 5
CAMPAIGN_KEYS = tuple(k for k in ATTRIBUTION_KEYS if k not in ("landing_page", "referrer"))
_KNOWN_SCALARS = frozenset(
    {"email", "first_name", "last_name", "phone", "company", "source", *ATTRIBUTION_KEYS}
)
_FIELD_NAME = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])+)$")
_TRUE = frozenset({"on", "true", "yes", "1", "y"})
_FALSE = frozenset({"off", "false", "no", "0", "n"})


class BodyKind(Enum):
    JSON = "json"
    FORM = "form"


@dataclass
class ParsedCapture:
    """A capture's fields (not yet validated) and its control fields."""

    kind: BodyKind
    fields: dict[str, Any]
    controls: dict[str, str] = field(default_factory=dict)
    names: frozenset[str] = frozenset()  # every field name sent, empty ones included

    @property
    def honeypot_filled(self) -> bool:
        return bool(self.controls.get("_gotcha", "").strip())


def body_kind(content_type: str | None) -> BodyKind:
    """Which parser a ``Content-Type`` calls for; 415 for anything else."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return BodyKind.FORM
    if media in ("", "application/json"):
        return BodyKind.JSON
    raise Unsupported(
        f"Unsupported Content-Type {media!r}: send the lead as application/json, "
        "application/x-www-form-urlencoded or multipart/form-data.",
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes without buffering it.

    ``Content-Length`` is checked first; a chunked body is counted as it streams in.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise Malformed(None, "Content-Length is not a number.") from None
        if size > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"The body is larger than {limit} bytes, the most /capture accepts.")


async def parse_capture(body: bytes, headers: Headers, kind: BodyKind) -> ParsedCapture:
    if kind is BodyKind.JSON:
        return _parse_json(body)
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        pairs = await _multipart_pairs(body, headers)
    else:
        pairs = _urlencoded_pairs(body)
    return fields_from_form(pairs)


# An integer literal of 19 digits or more may not fit in 64 bits.
_LONG_INTEGER = re.compile(rb"\d{19}")


def _parse_json(body: bytes) -> ParsedCapture:
    # orjson turns integers beyond 64 bits into floats, silently changing the value
    # (2**64 + 1 comes back as 1.8446744073709552e19); the standard library keeps them
    # exact, as the rest of the API does.
    parse = json.loads if _LONG_INTEGER.search(body) else orjson.loads
    try:
        data = parse(body)
    except (ValueError, RecursionError):  # orjson.JSONDecodeError is a ValueError
        raise Malformed(None, "Request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise Invalid(None, "The body must be a JSON object with at least an email.")
    controls = {
        key: "" if value is None or value is False else str(value)
        for key, value in data.items()
        if key.startswith("_")
    }
    fields = {key: value for key, value in data.items() if not key.startswith("_")}
    return ParsedCapture(BodyKind.JSON, fields, controls, frozenset(data))


def _urlencoded_pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
        return parse_qsl(
            text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict"
        )
    except UnicodeDecodeError:
        raise Malformed(None, "The form body is not valid UTF-8.") from None
    except ValueError:
        raise Invalid(
            None, f"Too many form fields: /capture takes at most {MAX_FORM_FIELDS}."
        ) from None


class _StrictMultiPartParser(MultiPartParser):
    """Starlette's parser, stricter in two ways:

    - a text part that is not valid in its charset (UTF-8 unless the Content-Type names
      another) is refused: Starlette would decode it as Latin-1 and store mojibake
      (``\\xff\\xfe`` as ``"ÿþ"``);
    - a body that ends before its closing boundary (truncated) is refused: Starlette would
      return the fields read so far as a whole form, and leave the temporary file of a part cut
      short unclosed.
    """

    _complete = False

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                bytes(part.data).decode(self._charset or "utf-8")
            except (UnicodeDecodeError, LookupError):
                name = part.field_name
                raise MultiPartException(
                    f"field {name!r} is not valid {self._charset or 'utf-8'} text."
                ) from None
        super().on_part_end()

    def on_end(self) -> None:
        self._complete = True  # python-multipart calls it at the closing boundary only
        super().on_end()

    async def parse(self) -> FormData:
        form = await super().parse()
        if not self._complete:
            for file in self._files_to_close_on_error:
                file.close()
            raise MultiPartException("the body ends before its closing boundary (truncated?).")
        return form


async def _multipart_pairs(body: bytes, headers: Headers) -> list[tuple[str, str]]:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = _StrictMultiPartParser(
        headers, stream(), max_files=MAX_FORM_FIELDS, max_fields=MAX_FORM_FIELDS
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise Malformed(None, f"The multipart form is malformed: {exc.message}") from None
    pairs: list[tuple[str, str]] = []
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                # An <input type="file"> left empty still sends a nameless, empty part.
                if value.filename or (value.size or 0) > 0:
                    raise Invalid(name, f"/capture does not accept file uploads (field {name!r}).")
                continue
            if "\x00" in name or "\x00" in value:
                # PostgreSQL cannot store NUL characters (the request guard refuses them in
                # JSON and urlencoded bodies, before any parsing).
                raise Invalid(name, "Text fields cannot contain NUL characters.")
            pairs.append((name, value))
    finally:
        await form.close()
    return pairs


def _field_path(name: str) -> list[str]:
    """``"metadata[utm][src]"`` -> ``["metadata", "utm", "src"]``; ``"a[]"`` ends in ``""``."""
    match = _FIELD_NAME.match(name)
    if not match:
        return [name]
    path = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
    if len(path) > MAX_FIELD_NAME_DEPTH:
        raise Invalid(
            name, f"Field {name!r} is nested too deeply (at most {MAX_FIELD_NAME_DEPTH} levels)."
        )
    if "" in path[:-1]:
        raise Invalid(name, f"Field {name!r}: '[]' may only end a field name.")
    return path


def _node(fields: dict[str, Any], keys: list[str], name: str) -> dict[str, Any]:
    """The dict at ``keys`` under ``fields``, created as needed."""
    node = fields
    for key in keys:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise Invalid(name, f"Field {name!r} conflicts with another field named {key!r}.")
        node = child
    return node


def _add(node: dict[str, Any], key: str, value: str, name: str, *, as_list: bool) -> None:
    existing = node.get(key)
    if existing is None:
        node[key] = [value] if as_list else value
    elif isinstance(existing, list):
        existing.append(value)
    elif isinstance(existing, str):
        node[key] = [existing, value]
    else:
        raise Invalid(name, f"Field {name!r} conflicts with fields nested under {key!r}.")


def _parse_bool(value: str) -> bool | None:
    """True/False for checkbox-like words, None for anything else."""
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE or word == "":
        return False
    return None


def _consent_field(consent: dict[str, Any], path: list[str], value: str, name: str) -> None:
    if len(path) == 1:
        granted = _parse_bool(value)
        if granted is None:
            consent["granted"] = True
            consent.setdefault("text", value.strip())
        else:
            consent["granted"] = granted
        return
    if len(path) != 2 or path[1] not in ("granted", "text"):
        raise Invalid(
            name, f"Unknown consent field {name!r}: use consent, consent[granted] or consent[text]."
        )  # fmt: skip
    if path[1] == "text":
        if value.strip():
            consent["text"] = value.strip()
        return
    granted = _parse_bool(value)
    if granted is None:
        raise Invalid(name, f"{name} must be true or false (a checkbox), got {value!r}.")
    consent["granted"] = granted


def fields_from_form(pairs: list[tuple[str, str]]) -> ParsedCapture:
    """Turn decoded form fields into the dict a JSON capture would have sent."""
    controls: dict[str, str] = {}
    fields: dict[str, Any] = {}
    consent: dict[str, Any] = {}
    for raw_name, value in pairs:
        name = raw_name.strip()
        if not name:
            continue
        if name.startswith("_"):
            controls[name] = value
            continue
        path = _field_path(name)
        if path[0] == "consent":
            _consent_field(consent, path, value, name)
            continue
        value = value.strip()
        if not value:
            continue
        if len(path) == 1 and path[0] in _KNOWN_SCALARS:
            fields[path[0]] = value  # a repeated known field: the last one wins
        elif path[-1] == "":  # "tags[]"
            _add(_node(fields, path[:-2], name), path[-2], value, name, as_list=True)
        else:
            _add(_node(fields, path[:-1], name), path[-1], value, name, as_list=False)
    if consent:
        consent.setdefault("granted", False)  # the text was shown, the box left unticked
        fields["consent"] = consent
    names = frozenset(name.strip() for name, _ in pairs if name.strip())
    return ParsedCapture(BodyKind.FORM, fields, controls, names)


def attribution_from_referer(fields: dict[str, Any], referer: str | None) -> None:
    """Fill campaign attribution the body did not give from the posting page's URL.

    A plain HTML form cannot copy ``?utm_source=...`` from the landing page's address into
    its fields, but the browser names that page in ``Referer`` (with its query string when the
    page's referrer policy allows: ``<meta name="referrer" content="no-referrer-when-downgrade">``).
    Only used when the URL carries campaign parameters; body fields always win.
    """
    if not referer:
        return
    try:
        parts = urlsplit(referer)
        query = dict(parse_qsl(parts.query, max_num_fields=MAX_FORM_FIELDS))
    except ValueError:
        return
    # A NUL (``%00``) cannot be stored by PostgreSQL: such a value is not attribution.
    campaign = {
        key: value
        for key in CAMPAIGN_KEYS
        if (value := query.get(key, "").strip()) and "\x00" not in value
    }
    if not campaign or parts.scheme not in ("http", "https"):
        return
    nested = fields.get("metadata") if isinstance(fields.get("metadata"), dict) else {}
    assert isinstance(nested, dict)
    given = {key for key in ATTRIBUTION_KEYS if fields.get(key) or nested.get(key)}
    if given & set(CAMPAIGN_KEYS):
        return  # the form already carries its own campaign: do not mix two visits
    for key, value in campaign.items():
        fields[key] = value
    if "landing_page" not in given:
        fields["landing_page"] = f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"

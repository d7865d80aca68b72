"""Shared pieces of the bad-input tests: body builders, Hypothesis strategies, the checks.

A request with bad input must get a 4xx carrying the error envelope and must change nothing
in the database. ``Snapshot`` reads every row of every table (but ``api_keys``) from the real
database, so "nothing" means nothing: no row added, none changed, none removed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from rex.db.engine import Database
from rex.db.schema import metadata

# Examples per operation: small in the default run, any number on request
# (REX_FUZZ_EXAMPLES=2000). Derandomized, so CI sees the same examples every time, unless
# REX_FUZZ_SEED asks for another sequence.
EXAMPLES = int(os.environ.get("REX_FUZZ_EXAMPLES", "25"))
_SEED = os.environ.get("REX_FUZZ_SEED")
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=_SEED is None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


def fuzz(test: Any) -> Any:
    """``@FUZZ``, plus ``@seed(REX_FUZZ_SEED)`` when a seed is given."""
    test = FUZZ(test)
    return hypothesis_seed(int(_SEED))(test) if _SEED is not None else test


# -- JSON text with what json.dumps cannot write ----------------------------------------------


@dataclass(frozen=True)
class Raw:
    """Bytes put into the body verbatim: ``1e400``, ``NaN``, a 10,000-deep array..."""

    data: bytes


@dataclass(frozen=True)
class Pairs:
    """A JSON object written from a list of pairs, so a key may appear twice."""

    items: tuple[tuple[str, Any], ...]


def encode(value: Any, *, ascii: bool = True) -> bytes:
    """JSON text for ``value``. Strings may hold lone surrogates: escaped (``\\ud800``) with
    ``ascii``, else written as the (invalid) UTF-8 bytes of the surrogate."""
    if isinstance(value, Raw):
        return value.data
    if isinstance(value, Pairs | dict):
        items = value.items if isinstance(value, Pairs) else tuple(value.items())
        inner = b",".join(
            encode(str(k), ascii=ascii) + b":" + encode(v, ascii=ascii) for k, v in items
        )
        return b"{" + inner + b"}"
    if isinstance(value, list | tuple):
        return b"[" + b",".join(encode(v, ascii=ascii) for v in value) + b"]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=ascii).encode("utf-8", "surrogatepass")
    return json.dumps(value).encode()  # numbers (NaN, Infinity included), bools, None


def nested(depth: int, kind: str = "[") -> Raw:
    if kind == "[":
        return Raw(b"[" * depth + b"]" * depth)
    return Raw(b'{"a":' * depth + b"1" + b"}" * depth)


# -- strategies -------------------------------------------------------------------------------

ODD_TEXT = [
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "x\ud83d",  # the first half of an emoji's pair
    "\u202e\u0301\ufeff",  # right-to-left override, a lone combining mark, a BOM
    "e\u0301" * 40,
    "\U0001d518\U0001d52b\U0001f600",
    "\U0010ffff\ufffe\uffff",
    "\r\n\t\x0b\x1b[31m",
    "'; DROP TABLE contacts; --",
    "<script>alert(1)</script>",
    "%00%ff",
    "\\u0000",
    "../../../etc/passwd",
    "",
    " ",
]
ODD_NUMBERS: list[Any] = [
    2**63,
    2**63 - 1,
    -(2**63) - 1,
    2**64,
    -(2**64) - 1,
    10**30,
    0.1,
    -0.0,
    1.7976931348623157e308,
    5e-324,
    float("nan"),
    float("inf"),
    Raw(b"1e400"),
    Raw(b"-1e400"),
    Raw(b"1e-400"),
    Raw(b"1E+999"),
    Raw(b"NaN"),
    Raw(b"-Infinity"),
    Raw(b"9" * 5000),  # past Python's 4300-digit limit for int()
    Raw(b"0x10"),
    Raw(b"01"),
    Raw(b"1."),
    Raw(b".5"),
]

# Text with every kind of character, lone surrogates included.
any_text = st.text(st.characters(exclude_categories=()), max_size=60)
odd_text = st.one_of(st.sampled_from(ODD_TEXT), any_text)
huge_text = st.sampled_from([10_000, 70_000, 1_100_000]).map(lambda n: "x" * n)
numbers = st.one_of(
    st.sampled_from(ODD_NUMBERS), st.integers(), st.floats(allow_nan=True, allow_infinity=True)
)
deep = st.builds(nested, st.integers(1, 10_000), st.sampled_from(["[", "{"]))
scalars = st.one_of(odd_text, numbers, st.none(), st.booleans())
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(odd_text, children, max_size=4),
    ),
    max_leaves=8,
)
nasty_values = st.one_of(json_values, huge_text, deep)

JSON = "application/json"
ODD_CONTENT_TYPES: list[str | None] = [
    None,
    "",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/json; charset=utf-16",
    "APPLICATION/JSON",
    "application/json;;;",
    "application/merge-patch+json",
    "application/vnd.api+json; charset=utf-8",
    "text/plain",
    "text/json",
    "application/xml",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=zz",
    "*/*",
    "application/octet-stream",
]
content_types = st.one_of(st.just(JSON), st.just(JSON), st.sampled_from(ODD_CONTENT_TYPES))


@st.composite
def mutated_object(draw: st.DrawFn, example: dict[str, Any]) -> Pairs:
    """The example with some values replaced, keys added, repeated or dropped."""
    items = list(example.items())
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["replace", "replace", "add", "repeat", "drop"]))
        if action == "replace" and items:
            i = draw(st.integers(0, len(items) - 1))
            items[i] = (items[i][0], draw(nasty_values))
        elif action == "add":
            key = draw(st.one_of(odd_text, st.sampled_from([k for k, _ in items] or ["x"])))
            items.append((key, draw(nasty_values)))
        elif action == "repeat" and items:
            key, _ = items[draw(st.integers(0, len(items) - 1))]
            items.append((key, draw(nasty_values)))
        elif action == "drop" and items:
            items.pop(draw(st.integers(0, len(items) - 1)))
    return Pairs(tuple(items))


@st.composite
def bad_json_bodies(draw: st.DrawFn, example: Any) -> tuple[bytes, str | None]:
    """A body and a Content-Type (None: no header) built to upset a JSON route."""
    valid = encode(example)
    how = draw(
        st.sampled_from(
            ["mutated", "mutated", "mutated", "whole", "truncated", "bytes", "reencoded"]
        )
    )
    if how == "mutated" and isinstance(example, dict):
        body = encode(draw(mutated_object(example)), ascii=draw(st.booleans()))
    elif how in ("mutated", "whole"):
        body = encode(draw(nasty_values), ascii=draw(st.booleans()))
    elif how == "truncated":
        body = valid[: draw(st.integers(0, max(0, len(valid) - 1)))]
    elif how == "bytes":
        # Insert, overwrite or delete a few bytes anywhere in a valid body.
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data)))
            junk = draw(st.binary(min_size=1, max_size=4))
            if draw(st.booleans()):
                data[at:at] = junk
            else:
                data[at : at + len(junk)] = junk
        body = bytes(data)
    else:
        codec = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "utf-8-sig", "latin-1"]))
        text = json.dumps(example, ensure_ascii=False) + draw(st.sampled_from(["", " é"]))
        body = text.encode(codec, "replace")
    return body, draw(content_types)


FORM_NAMES = [
    "email",
    "first_name",
    "company",
    "utm_source",
    "notes",
    "consent",
    "consent[granted]",
    "consent[text]",
    "consent[other]",
    "metadata[a]",
    "metadata[a][b][c][d][e][f]",
    "tags[]",
    "a[][b]",
    "[]",
    "email[]",
    "email[x]",
    "_next",
    "_gotcha",
    "",
]
form_names = st.one_of(st.sampled_from(FORM_NAMES), any_text)
form_values = st.one_of(odd_text, huge_text.map(lambda s: s[:70_000]))


def _wire(text: str) -> bytes:
    """Text as UTF-8 bytes, lone surrogates included (as invalid UTF-8)."""
    return text.encode("utf-8", "surrogatepass")


@st.composite
def bad_urlencoded_bodies(draw: st.DrawFn) -> bytes:
    pairs = [(b"email", b"form%40example.com")]
    for _ in range(draw(st.integers(0, 6))):
        name, value = _wire(draw(form_names)), _wire(draw(form_values))
        if draw(st.booleans()):
            name, value = quote_from_bytes(name).encode(), quote_from_bytes(value).encode()
        pairs.append((name, value))
    body = b"&".join(n + b"=" + v for n, v in draw(st.permutations(pairs)))
    if draw(st.integers(0, 4)) == 0:
        body = body[: draw(st.integers(0, len(body)))]
    if draw(st.integers(0, 4)) == 0:
        body += draw(st.sampled_from([b"&%", b"&%f", b"&a=%zz", b"&" * 300, b"&x" * 250]))
    return body


BOUNDARY = "rexfuzzboundary"


@st.composite
def bad_multipart_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    parts = [(b"email", b"multi@example.com", None)]
    for _ in range(draw(st.integers(0, 5))):
        filename = draw(st.sampled_from([None, None, None, b"", b"cv.pdf", b"\xff.txt"]))
        parts.append((_wire(draw(form_names)), _wire(draw(form_values)), filename))
    chunks = []
    for name, value, filename in draw(st.permutations(parts)):
        disposition = b'Content-Disposition: form-data; name="' + name.replace(b'"', b"") + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        chunks.append(b"--" + BOUNDARY.encode() + b"\r\n" + disposition + b"\r\n\r\n" + value)
    body = b"\r\n".join(chunks) + b"\r\n--" + BOUNDARY.encode() + b"--\r\n"
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    damage = draw(st.sampled_from(["none", "none", "truncate", "boundary", "charset", "header"]))
    if damage == "truncate":
        body = body[: draw(st.integers(0, len(body)))]
    elif damage == "boundary":
        content_type = draw(
            st.sampled_from(
                ["multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; b"]
            )
        )
    elif damage == "charset":
        content_type += draw(st.sampled_from(["; charset=utf-16", "; charset=nope", "; charset="]))
    elif damage == "header":
        body = body.replace(b"Content-Disposition", b"Content-Dispositio", 1)
    return body, content_type


# -- the checks -------------------------------------------------------------------------------

ENVELOPE_KEYS = {"type", "message", "field", "request_id"}


def assert_error_envelope(response: httpx.Response, context: str) -> None:
    assert 400 <= response.status_code < 500, context
    assert response.headers.get("content-type", "").startswith("application/json"), context
    body = response.json()
    assert set(body) == {"error"}, context
    error = body["error"]
    assert set(error) == ENVELOPE_KEYS, context
    assert isinstance(error["type"], str) and error["type"], context
    assert isinstance(error["message"], str) and error["message"].strip(), context
    assert error["field"] is None or isinstance(error["field"], str), context
    assert error["request_id"] == response.headers["x-request-id"], context


def describe(method: str, url: str, content_type: str | None, body: bytes) -> str:
    shown = body[:300] + (b"..." if len(body) > 300 else b"")
    return f"{method} {url} Content-Type={content_type!r} ({len(body)} bytes) body={shown!r}"


class Snapshot:
    """Every row of every table but ``api_keys``, as one digest, read from the real database
    over one connection kept open for the test."""

    TABLES = tuple(t for t in metadata.sorted_tables if t.name != "api_keys")

    def __init__(self, database_url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._db = Database(database_url, pool_size=1)

    def close(self) -> None:
        self._loop.run_until_complete(self._db.close())
        self._loop.close()

    async def _read(self) -> dict[str, str]:
        digests = {}
        async with self._db.read() as conn:
            for table in self.TABLES:
                order = [c for c in table.primary_key.columns]
                rows = (await conn.execute(sa.select(table).order_by(*order))).all()
                digest = hashlib.sha256(repr([tuple(r) for r in rows]).encode())
                digests[table.name] = f"{len(rows)} rows, {digest.hexdigest()[:16]}"
        return digests

    def take(self) -> dict[str, str]:
        return self._loop.run_until_complete(self._read())


@contextmanager
def snapshots(database_url: str) -> Iterator[Snapshot]:
    snapshot = Snapshot(database_url)
    try:
        yield snapshot
    finally:
        snapshot.close()


def _rows(digest: str) -> int:
    return int(digest.split(" ", 1)[0])


class Checker:
    """Sends one request and checks the promise: never a 5xx; a 4xx is the error envelope
    and leaves the database exactly as it was (a capture URL's only trace is the one
    rejected submission that keeps what arrived). Counts what it saw."""

    def __init__(self, client: httpx.Client, snapshot: Snapshot) -> None:
        self.client = client
        self.snapshot = snapshot
        self.state = snapshot.take()
        self.statuses: dict[int, int] = {}

    def send(
        self,
        method: str,
        url: str,
        body: bytes,
        content_type: str | None,
        headers: dict[str, str] | None = None,
        expect_4xx: bool = False,
    ) -> httpx.Response:
        request = self.client.build_request(method, url, content=body, headers=headers or {})
        if content_type is None:
            request.headers.pop("content-type", None)  # httpx adds none for bytes; make sure
        else:
            request.headers["content-type"] = content_type
        context = describe(method, url, content_type, body)
        response = self.client.send(request)
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, f"{response.status_code} for {context}: {response.text}"
        after = self.snapshot.take()
        if response.status_code >= 400 or expect_4xx:
            assert_error_envelope(response, f"{response.status_code} {response.text} {context}")
            changed = {t for t in after if after[t] != self.state[t]}
            if method == "POST" and url.startswith("/capture"):
                added = _rows(after["submissions"]) - _rows(self.state["submissions"])
                assert added in (0, 1), f"{added} submissions for {context}"
                changed.discard("submissions")
            assert not changed, f"a refused request changed {changed}: {context}"
        else:
            response.json()  # a success is valid JSON too (a 303 has no body)
        self.state = after
        return response


def fragment_bodies(example: dict[str, Any], fragment: bytes) -> list[bytes]:
    """The example's JSON with ``fragment`` (raw JSON text) as the value of its first text
    field, and again nested inside its first object or array field (free-form ``metadata``
    is where typed validation does not look) unless the fragment is a valid JSON number:
    free-form JSON may hold any."""
    bodies = []
    text = next((k for k, v in example.items() if isinstance(v, str)), None)
    container = next((k for k, v in example.items() if isinstance(v, dict | list)), None)
    if fragment in FREE_FORM_OK:
        container = None
    for key in dict.fromkeys([text or next(iter(example)), container]):
        if key is None:
            continue
        value = example[key]
        if key == container:
            value = {"x": Raw(fragment)} if isinstance(value, dict) else [Raw(fragment)]
        else:
            value = Raw(fragment)
        bodies.append(
            encode(Pairs(tuple((k, value if k == key else v) for k, v in example.items())))
        )
    return bodies


BIG_INT, NEGATIVE_BIG_INT = b"9223372036854775808", b"-18446744073709551617"
FREE_FORM_OK = (BIG_INT, NEGATIVE_BIG_INT)

# Named bad values, each put into a valid example body: (name, raw JSON fragment).
NAMED_FRAGMENTS: list[tuple[str, bytes]] = [
    ("invalid UTF-8 bytes", b'"\xff\xfe"'),
    ("a UTF-8-encoded surrogate (CESU)", b'"\xed\xa0\x80"'),
    ("an overlong UTF-8 encoding of '/'", b'"\xc0\xaf"'),
    ("a lone high surrogate escape", b'"\\ud800"'),
    ("a lone low surrogate escape", b'"x\\udfff"'),
    ("an escaped NUL", b'"a\\u0000b"'),
    ("a raw NUL byte", b'"a\x00b"'),
    ("a raw control character", b'"a\x01b"'),
    ("an array 10,000 deep", b"[" * 10_000 + b"]" * 10_000),
    ("an object 10,000 deep", b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
    ("an array 40 deep", b"[" * 40 + b"]" * 40),
    ("2**63", BIG_INT),
    ("-2**64 - 1", NEGATIVE_BIG_INT),
    ("a 5000-digit integer", b"9" * 5000),
    ("1e400", b"1e400"),
    ("-1e400", b"-1e400"),
    ("NaN", b"NaN"),
    ("Infinity", b"Infinity"),
    ("a string over the request size limit", b'"' + b"x" * 1_100_000 + b'"'),
    ("an unterminated string", b'"abc'),
    ("a single-quoted string", b"'abc'"),
    ("a trailing comma", b'"a",'),
]


def named_whole_bodies(example: dict[str, Any]) -> list[tuple[str, bytes, str | None]]:
    """Whole bodies that are wrong as a whole: (name, body, Content-Type)."""
    valid = encode(example)
    text = json.dumps(example)
    return [
        ("truncated JSON (half)", valid[: len(valid) // 2], JSON),
        ("truncated JSON (last byte missing)", valid[:-1], JSON),
        ("UTF-16 with a BOM", text.encode("utf-16"), JSON),
        ("UTF-16-LE without a BOM", text.encode("utf-16-le"), JSON),
        ("UTF-32", text.encode("utf-32"), JSON),
        ("a JSON array, not an object", b"[" + valid + b"]", JSON),
        ("a JSON string, not an object", b'"' + text.replace('"', "'").encode() + b'"', JSON),
        ("null", b"null", JSON),
        ("valid JSON sent as text/plain", valid, "text/plain"),
        ("valid JSON sent as application/xml", valid, "application/xml"),
        ("valid JSON with a bogus media type", valid, "nonsense"),
        ("JSON garbage sent as text/json", b"{]", "text/json"),
    ]


SURROGATE = re.compile("[\ud800-\udfff]")

"""Pure input handling: cursors, request fingerprints, storable values, times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Query
from pydantic import TypeAdapter, ValidationError

from rex.api.errors import domain_error_response
from rex.api.idempotency import request_fingerprint
from rex.api.limits import body_problem, json_not_utf8
from rex.api.query import scalar_query_names
from rex.db.pagination import decode_cursor, encode_cursor
from rex.errors import BadCursor
from rex.validation import IsoDate, Metadata, UtcTime


def test_cursor_round_trip_and_refusals() -> None:
    row_id = "deal_01HQ3Z8W6X9Y2V4T5R7P8N0M1K"
    assert decode_cursor(encode_cursor(row_id)) == row_id
    for bad in ("", "!!", encode_cursor("evt_"), encode_cursor("x" * 30), "ZGVhbF8=" * 10):
        with pytest.raises(BadCursor) as caught:
            decode_cursor(bad)
        assert domain_error_response(caught.value).status_code == 400


def _scope(path: str = "/deals", query: bytes = b"") -> dict[str, object]:
    return {"method": "POST", "path": path, "query_string": query}


def test_fingerprint_compares_json_parsed_and_everything_else_exactly() -> None:
    json_type = "application/json"
    base = request_fingerprint(_scope(), b'{"a": 1, "b": [1, 2]}', json_type)
    assert request_fingerprint(_scope(), b'{"b":[1,2],"a":1}', json_type) == base
    assert request_fingerprint(_scope(), b'{"a": 2, "b": [1, 2]}', json_type) != base
    assert request_fingerprint(_scope("/tasks"), b'{"a": 1, "b": [1, 2]}', json_type) != base
    assert request_fingerprint(_scope(query=b"x=1"), b'{"a": 1, "b": [1, 2]}', json_type) != base
    # Not JSON: byte for byte.
    assert request_fingerprint(_scope(), b"a=1", "text/plain") != request_fingerprint(
        _scope(), b"a=1 ", "text/plain"
    )


def test_unstorable_bodies() -> None:
    json_type = "application/json"
    assert body_problem(b'{"a": "x\\u0000"}', json_type)
    assert body_problem(b'{"x\\u0000": 1}', json_type)
    assert body_problem(b'{"a": [1e400]}', json_type) == "Numbers must be finite."
    assert body_problem(b'{"a": -1E+999}', json_type)
    assert body_problem(b'{"a": NaN}', json_type)
    assert body_problem(b'{"a": {"b": Infinity}}', json_type)
    assert body_problem(b'{"a": "\\\\u0000 is text"}', json_type) is None
    assert body_problem(b'{"a": "banana", "b": 1e100, "c": "Infinity"}', json_type) is None
    assert body_problem(b'{"a": ', json_type) is None  # the route answers 400
    assert body_problem(b"a=%00", "application/x-www-form-urlencoded")
    deep = b'{"a": ' + b"[" * 33 + b"]" * 33 + b"}"
    assert body_problem(deep, json_type) == "JSON is nested more than 32 levels deep."
    very_deep = b"[" * 100_000 + b"]" * 100_000
    assert body_problem(very_deep, json_type) == "JSON is nested more than 32 levels deep."
    wide = b"[" + b",".join([b"[1]"] * 1000) + b"]"
    assert body_problem(wide, json_type) is None


def test_lone_surrogates_other_json_types_and_other_encodings_are_refused() -> None:
    json_type = "application/json"
    # A lone surrogate anywhere made the event or the response unencodable (a 500).
    lone = "Text fields cannot contain lone surrogates (\\ud800-\\udfff): send valid Unicode."
    assert body_problem(b'{"metadata": {"x": "\\ud800"}}', json_type) == lone
    assert body_problem(b'{"\\uDFFF": 1}', json_type) == lone
    assert body_problem(b'{"a": "\\ud83d\\ude00"}', json_type) is None  # a pair is fine
    # FastAPI parses every application/*+json body, whatever its parameters.
    for media in ("application/x+json; charset=utf-8", "Application/JSON ; x=1", ""):
        assert body_problem(b'{"a": "x\\u0000"}', media), media
    assert body_problem(b'{"a": "x\\u0000"}', "text/plain") is None  # not parsed as JSON
    # Python would decode UTF-16 and UTF-32 JSON, where the byte-level checks see nothing.
    text = '{"a": "x\\u0000"}'
    for codec in ("utf-16", "utf-16-le", "utf-32"):
        assert json_not_utf8(text.encode(codec), json_type), codec
    assert json_not_utf8(b'{"a": "\xff"}', "application/json; charset=latin-1")
    assert json_not_utf8(b'{"a": "\xed\xa0\x80"}', json_type)  # an encoded surrogate
    assert not json_not_utf8(text.encode(), json_type)
    assert not json_not_utf8(b"\xef\xbb\xbf{}", json_type)  # a UTF-8 BOM is still UTF-8
    assert not json_not_utf8(text.encode("utf-16"), "text/plain")  # the route says 422


def test_metadata_must_be_storable() -> None:
    adapter = TypeAdapter(Metadata)
    assert adapter.validate_python({"a": [1, {"b": "c"}]}) == {"a": [1, {"b": "c"}]}
    for bad in ({"a": float("inf")}, {"a": ["x\x00"]}, {"k\x00": 1}):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)


def test_times_and_dates() -> None:
    times = TypeAdapter(UtcTime)
    assert times.validate_python("2026-03-16T13:00:00+01:00") == datetime(
        2026, 3, 16, 12, tzinfo=UTC
    )
    for bad in ("2026-03-16T12:00:00", "1773662400", 1773662400, "0001-01-01T00:00:00+01:00"):
        with pytest.raises(ValidationError):
            times.validate_python(bad)
    dates = TypeAdapter(IsoDate)
    assert dates.validate_python("2026-06-30").isoformat() == "2026-06-30"
    for bad in ("30/06/2026", 0, "2026-06-31"):
        with pytest.raises(ValidationError):
            dates.validate_python(bad)


def test_documented_webhook_examples_are_valid_payloads() -> None:
    from rex.events.webhooks import payload_model
    from rex.outbox.catalogue import EventType

    for event_type in EventType:
        model = payload_model(event_type)
        examples = model.model_json_schema()["examples"]
        assert examples, event_type
        for example in examples:
            model.model_validate(example)


async def _page(limit: int = 20, cursor: str | None = None) -> None:
    return None


def test_scalar_query_names_come_from_the_route_and_its_dependencies() -> None:
    app = FastAPI()

    @app.get("/things")
    async def things(
        _: Annotated[None, Depends(_page)],
        tag: Annotated[list[str] | None, Query()] = None,
        kinds: Annotated[tuple[str, ...], Query()] = (),
        email: Annotated[str | None, Query(alias="e-mail")] = None,
        due: datetime | None = None,
    ) -> None:
        return None

    route = next(r for r in app.routes if getattr(r, "path", "") == "/things")
    names = scalar_query_names(route)  # type: ignore[arg-type]
    assert sorted(names) == ["cursor", "due", "e-mail", "limit"]

"""Form fields into a lead, metadata limits, and attribution from the posting page."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.datastructures import Headers

from rex.api.errors import api_error_for
from rex.capture.body import (
    BodyKind,
    attribution_from_referer,
    body_kind,
    fields_from_form,
    parse_capture,
)
from rex.capture.limits import MAX_METADATA_KEYS, check_metadata
from rex.errors import DomainError


def form(*pairs: tuple[str, str]) -> dict[str, Any]:
    return fields_from_form(list(pairs)).fields


def test_flat_and_bracketed_fields() -> None:
    fields = form(
        ("email", "jane@example.com"),
        ("utm_source", "google"),
        ("metadata[utm_campaign]", "spring"),
        ("metadata[page][section]", "hero"),
        ("plan", "pro"),
    )
    assert fields == {
        "email": "jane@example.com",
        "utm_source": "google",
        "metadata": {"utm_campaign": "spring", "page": {"section": "hero"}},
        "plan": "pro",
    }


def test_lists_repeats_blanks_and_last_known_value() -> None:
    fields = form(
        ("email", "old@example.com"),
        ("email", "jane@example.com"),
        ("interest", "a"),
        ("interest", "b"),
        ("tags[]", "x"),
        ("metadata[sizes][]", "s"),
        ("metadata[sizes][]", "m"),
        ("company", "   "),
        ("note", ""),
    )
    assert fields == {
        "email": "jane@example.com",
        "interest": ["a", "b"],
        "tags": ["x"],
        "metadata": {"sizes": ["s", "m"]},
    }


def test_control_fields_are_kept_apart() -> None:
    parsed = fields_from_form(
        [("email", "j@example.com"), ("_next", "https://x.test/"), ("_gotcha", ""), ("_x", "1")]
    )
    assert parsed.fields == {"email": "j@example.com"}
    assert parsed.controls == {"_next": "https://x.test/", "_gotcha": "", "_x": "1"}
    assert not parsed.honeypot_filled
    assert fields_from_form([("_gotcha", "spam")]).honeypot_filled


@pytest.mark.parametrize(
    ("pairs", "consent"),
    [
        ([("consent", "on")], {"granted": True}),
        ([("consent", "no")], {"granted": False}),
        (
            [("consent", "I want the newsletter")],
            {"granted": True, "text": "I want the newsletter"},
        ),
        ([("consent[text]", "News by email")], {"granted": False, "text": "News by email"}),
        (
            [("consent[text]", "News by email"), ("consent[granted]", "true")],
            {"granted": True, "text": "News by email"},
        ),
        (
            [("consent", "false"), ("consent", "true")],  # hidden fallback + ticked box
            {"granted": True},
        ),
    ],
)
def test_consent_checkboxes(pairs: list[tuple[str, str]], consent: dict[str, Any]) -> None:
    assert form(("email", "j@example.com"), *pairs)["consent"] == consent


@pytest.mark.parametrize(
    "pairs",
    [
        [("metadata", "x"), ("metadata[a]", "y")],
        [("metadata[a]", "y"), ("metadata[a][b]", "z")],
        [("a[][b]", "x")],
        [("a[b][c][d][e][f]", "x")],
        [("consent[granted]", "maybe")],
        [("consent[when]", "now")],
    ],
)
def test_contradictory_or_odd_field_names_are_a_clear_422(pairs: list[tuple[str, str]]) -> None:
    with pytest.raises(DomainError) as caught:
        form(*pairs)
    assert api_error_for(caught.value).status == 422
    assert caught.value.field


def test_content_types() -> None:
    assert body_kind("application/json; charset=utf-8") is BodyKind.JSON
    assert body_kind(None) is BodyKind.JSON
    assert body_kind("application/x-www-form-urlencoded;charset=UTF-8") is BodyKind.FORM
    assert body_kind("multipart/form-data; boundary=x") is BodyKind.FORM
    with pytest.raises(DomainError) as caught:
        body_kind("text/plain")
    assert api_error_for(caught.value).status == 415


def test_attribution_from_the_posting_pages_address() -> None:
    fields: dict[str, Any] = {"email": "j@example.com"}
    referer = "https://www.acme.test/pricing?utm_source=ads&utm_medium=cpc&gclid=G1&x=1"
    attribution_from_referer(fields, referer)
    assert fields == {
        "email": "j@example.com",
        "utm_source": "ads",
        "utm_medium": "cpc",
        "gclid": "G1",
        "landing_page": "https://www.acme.test/pricing",
    }


@pytest.mark.parametrize(
    ("fields", "referer"),
    [
        ({"utm_source": "newsletter"}, "https://a.test/?utm_source=ads"),  # the body wins
        ({"metadata": {"utm_campaign": "x"}}, "https://a.test/?utm_source=ads"),
        ({}, "https://a.test/pricing"),  # no campaign: nothing to say
        ({}, None),
        ({}, "javascript:alert(1)?utm_source=x"),
    ],
)
def test_referer_attribution_only_fills_a_silent_form(
    fields: dict[str, Any], referer: str | None
) -> None:
    before = {**fields}
    attribution_from_referer(fields, referer)
    assert fields == before


def test_metadata_limits() -> None:
    check_metadata({f"k{i}": "v" for i in range(MAX_METADATA_KEYS)}, {})
    with pytest.raises(DomainError, match="at most 50 keys") as caught:
        check_metadata({f"k{i}": "v" for i in range(40)}, {f"x{i}": "v" for i in range(11)})
    assert api_error_for(caught.value).status == 422
    with pytest.raises(DomainError, match="3 levels") as caught:
        check_metadata({"a": {"b": {"c": {"d": "deep"}}}}, {})
    assert caught.value.field == "metadata.a.b.c.d"
    check_metadata({"a": {"b": {"c": "fine"}}}, {})
    with pytest.raises(DomainError, match="2001 characters") as caught:
        check_metadata({}, {"notes": "x" * 2001})
    assert caught.value.field == "notes"
    with pytest.raises(DomainError, match="100 characters"):
        check_metadata({"k" * 101: "v"}, {})
    with pytest.raises(DomainError, match="plain strings") as caught:
        check_metadata({"utm_source": {"nested": "x"}}, {})
    assert caught.value.field == "metadata.utm_source"


def _multipart(*parts: tuple[bytes, bytes], charset: str = "") -> tuple[bytes, Headers]:
    body = b"".join(
        b'--b\r\nContent-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value + b"\r\n"
        for name, value in parts
    )
    content_type = "multipart/form-data; boundary=b" + (f"; charset={charset}" if charset else "")
    return body + b"--b--\r\n", Headers({"content-type": content_type})


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (b"\xff\xfe", 400),  # Starlette would have stored it as Latin-1: "\xff\xfe"
        (b"\xed\xa0\x80", 400),  # an encoded surrogate
        (b"a\x00b", 422),  # PostgreSQL cannot store it (it answered 500)
    ],
)
async def test_multipart_text_must_be_valid_text_without_nul(value: bytes, status: int) -> None:
    body, headers = _multipart((b"email", b"m@example.com"), (b"company", value))
    with pytest.raises(DomainError) as refused:
        await parse_capture(body, headers, BodyKind.FORM)
    assert api_error_for(refused.value).status == status


async def test_multipart_nul_in_a_field_name_and_a_declared_charset() -> None:
    body, headers = _multipart((b"email", b"m@example.com"), (b"meta\x00data[x]", b"1"))
    with pytest.raises(DomainError) as refused:
        await parse_capture(body, headers, BodyKind.FORM)
    assert api_error_for(refused.value).status == 422
    latin = "Zoë".encode("latin-1")
    body, headers = _multipart((b"email", b"m@example.com"), (b"company", latin), charset="latin-1")
    parsed = await parse_capture(body, headers, BodyKind.FORM)
    assert parsed.fields["company"] == "Zoë"


@pytest.mark.parametrize(
    "body",
    [
        b'--b\r\nContent-Disposition: form-data; name="email"\r\n\r\nm@example.com\r\n',
        b'--b\r\nContent-Disposition: form-data; name="email"\r\n\r\nm@example.com\r\n--b\r\n'
        b'Content-Disposition: form-data; name="cv"; filename="a.txt"\r\n\r\nabc',
    ],
)
async def test_a_multipart_body_cut_before_its_closing_boundary_is_refused(body: bytes) -> None:
    # It was taken as a complete form (a lead from half a submission), and the temporary file
    # of a part cut short was never closed (a ResourceWarning from the server).
    headers = Headers({"content-type": "multipart/form-data; boundary=b"})
    with pytest.raises(DomainError) as refused:
        await parse_capture(body, headers, BodyKind.FORM)
    assert api_error_for(refused.value).status == 400
    assert "closing boundary" in refused.value.message


def test_referer_attribution_skips_values_with_nul() -> None:
    # PostgreSQL refused the NUL in first_touch: a 500 for any page whose URL had %00.
    fields: dict[str, Any] = {}
    attribution_from_referer(fields, "https://a.test/p?utm_source=x%00y&utm_medium=%ff")
    assert fields == {"utm_medium": "\ufffd", "landing_page": "https://a.test/p"}

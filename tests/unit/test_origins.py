"""Allowed origins, and redirects that never leave them."""

from __future__ import annotations

import pytest

from rex.workspaces.origins import InvalidOrigin, normalize_origin, origin_allowed, safe_redirect

ALLOWED = ["https://www.acme.test", "http://127.0.0.1:8123"]


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("HTTPS://WWW.Acme.TEST/", "https://www.acme.test"),
        ("https://www.acme.test:443", "https://www.acme.test"),
        ("http://127.0.0.1:8123", "http://127.0.0.1:8123"),
        ("https://bücher.test", "https://xn--bcher-kva.test"),
        ("http://[::1]:3000", "http://[::1]:3000"),
        ("*", "*"),
    ],
)
def test_normalize_origin(given: str, origin: str) -> None:
    assert normalize_origin(given) == origin


@pytest.mark.parametrize(
    "given",
    ["www.acme.test", "ftp://acme.test", "https://acme.test/path", "null", "https://u:p@a.test",
     "https://a.test:99999", "https://a.test?q=1"],
)  # fmt: skip
def test_not_an_origin(given: str) -> None:
    with pytest.raises(InvalidOrigin):
        normalize_origin(given)


def test_origin_allowed() -> None:
    assert origin_allowed("https://WWW.acme.test", ALLOWED)
    assert not origin_allowed("https://evil.test", ALLOWED)
    assert not origin_allowed(None, ["*"])
    assert origin_allowed("https://anyone.test", ["*"])


def test_redirects_to_allowed_origins() -> None:
    assert safe_redirect("https://www.acme.test/thanks?x=1#top", ALLOWED) == (
        "https://www.acme.test/thanks?x=1#top"
    )
    assert safe_redirect("/thanks", ALLOWED, base="https://www.acme.test/landing?u=1") == (
        "https://www.acme.test/thanks"
    )
    assert safe_redirect("https://www.acme.test/merci à vous", ALLOWED) == (
        "https://www.acme.test/merci%20%C3%A0%20vous"
    )


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.test/",
        "//evil.test/",
        "https:/\\evil.test",
        "https://www.acme.test\\@evil.test",
        "https://www.acme.test@evil.test/",
        "https://evil.test/?https://www.acme.test",
        "javascript:alert(1)",
        "https://www.acme.test.evil.test/",
        "http://www.acme.test/",  # another scheme is another origin
        "https://www.acme.test/\r\nSet-Cookie: x=1",
        "/relative-without-base",
    ],
)
def test_never_an_open_redirect(target: str) -> None:
    assert safe_redirect(target, ALLOWED) is None
    assert safe_redirect(target, [*ALLOWED, "*"]) is None


def test_star_opens_cors_but_not_redirects() -> None:
    assert safe_redirect("https://anyone.test/", ["*"]) is None

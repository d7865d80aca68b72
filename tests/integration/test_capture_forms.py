"""POST /capture from plain HTML forms: bodies, conventions, redirects, consent, concurrency.

Every test runs on a real SQLite file and on PostgreSQL, against Rex served on 127.0.0.1.
"""

from __future__ import annotations

import concurrent.futures
import json
from typing import Any

import httpx

from tests.support import RexServer, sql, stored_contact

JSON = {"Accept": "application/json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
SITE = "https://www.acme.test"


def post_form(rex: RexServer, data: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{rex.url}/capture", data=data, timeout=30, **kwargs)


def contacts(rex: RexServer) -> list[dict[str, Any]]:
    with rex.client() as client:
        return client.get("/contacts").json()["data"]  # type: ignore[no-any-return]


def events(rex: RexServer, event_type: str) -> list[Any]:
    return sql(rex.database_url, "SELECT payload FROM events WHERE type = :t", t=event_type)


def allow(rex: RexServer, **settings: Any) -> None:
    with rex.client() as client:
        client.patch("/workspace", json=settings).raise_for_status()


def test_urlencoded_form_with_nested_and_flat_attribution(rex: RexServer) -> None:
    response = post_form(
        rex,
        {
            "email": " Jane@Example.com ",
            "first_name": "Jane",
            "company": "",
            "utm_source": "google",
            "metadata[utm_campaign]": "spring-launch",
            "metadata[plan]": "pro",
            "interest": ["crm", "webhooks"],
            "_next": "https://elsewhere.test/",
            "_subject": "New lead",
        },
        headers=JSON,
    )

    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["email"] == "jane@example.com"
    assert data["first_name"] == "Jane"
    assert data["company"] is None
    data = stored_contact(rex, response)
    assert data["first_touch"]["utm_source"] == "google"
    assert data["first_touch"]["utm_campaign"] == "spring-launch"
    # Control fields (_next, _subject) are never stored; attribution left metadata.
    assert data["metadata"] == {"plan": "pro", "interest": ["crm", "webhooks"]}
    [row] = events(rex, "contact.created")
    sent = json.loads(row.payload)["data"]  # the API spells absent touch fields as null
    assert {k: v for k, v in sent.items() if "touch" not in k} == {
        k: v for k, v in data.items() if "touch" not in k
    }


def test_multipart_form_and_an_empty_file_input(rex: RexServer) -> None:
    response = post_form(
        rex,
        {"email": "multi@example.com", "last_name": "Part", "metadata[utm_source]": "x"},
        files={"attachment": ("", b"", "application/octet-stream")},
        headers=JSON,
    )

    assert response.status_code == 201, response.text
    data = stored_contact(rex, response)
    assert data["last_name"] == "Part"
    assert data["first_touch"]["utm_source"] == "x"


def test_a_file_upload_is_refused_and_stores_nothing(rex: RexServer) -> None:
    response = post_form(
        rex,
        {"email": "cv@example.com"},
        files={"resume": ("cv.pdf", b"%PDF-1.4", "application/pdf")},
        headers=JSON,
    )

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "resume"
    assert contacts(rex) == []


def test_consent_checkbox_is_stored_with_time_and_ip(rex: RexServer) -> None:
    response = post_form(
        rex,
        {"email": "ok@example.com", "consent": "on", "consent[text]": "Email me product news"},
        headers=JSON,
    )

    consent = stored_contact(rex, response)["consent"]
    assert consent["granted"] is True
    assert consent["text"] == "Email me product news"
    assert consent["ip"] == "127.0.0.1"
    assert consent["at"].endswith("Z")


def test_browser_post_is_redirected_to_the_builtin_thank_you_page(rex: RexServer) -> None:
    response = post_form(rex, {"email": "web@example.com"}, headers=BROWSER)

    assert response.status_code == 303
    assert response.headers["location"] == "/capture/thanks"
    page = httpx.get(rex.url + response.headers["location"])
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Thank you" in page.text
    assert [c["email"] for c in contacts(rex)] == ["web@example.com"]


def test_next_is_followed_only_on_an_allowed_origin(rex: RexServer) -> None:
    allow(rex, allowed_origins=[SITE])

    allowed = post_form(rex, {"email": "a@example.com", "_next": f"{SITE}/thanks?from=form"})
    relative = post_form(
        rex, {"email": "b@example.com", "_next": "/merci"}, headers={"Referer": f"{SITE}/landing"}
    )
    foreign = post_form(rex, {"email": "c@example.com", "_next": "https://evil.test/phish"})
    sneaky = post_form(rex, {"email": "d@example.com", "_next": "//evil.test/phish"})

    assert (allowed.status_code, allowed.headers["location"]) == (303, f"{SITE}/thanks?from=form")
    assert relative.headers["location"] == f"{SITE}/merci"
    assert foreign.status_code == 303
    assert foreign.headers["location"] == "/capture/thanks"
    assert sneaky.headers["location"] == "/capture/thanks"
    assert len(contacts(rex)) == 4  # a refused _next does not lose the lead


def test_workspace_redirect_url_is_the_default_target(rex: RexServer) -> None:
    allow(rex, allowed_origins=[SITE], redirect_url=f"{SITE}/thank-you")

    response = post_form(rex, {"email": "r@example.com"})

    assert response.headers["location"] == f"{SITE}/thank-you"


def test_star_origin_never_allows_a_redirect(rex: RexServer) -> None:
    allow(rex, allowed_origins=["*"])

    response = post_form(rex, {"email": "s@example.com", "_next": "https://anywhere.test/"})

    assert response.headers["location"] == "/capture/thanks"


def test_form_post_asking_for_json_gets_the_seed_shape(rex: RexServer) -> None:
    first = post_form(rex, {"email": "j@example.com", "first_name": "J"}, headers=JSON)
    second = post_form(rex, {"email": "j@example.com", "last_name": "K"}, headers=JSON)

    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json()["data"]["id"] == first.json()["data"]["id"]
    assert second.json()["data"]["last_name"] == "K"


def test_form_errors_are_a_page_for_browsers_and_the_envelope_for_code(rex: RexServer) -> None:
    page = post_form(rex, {"email": "not-an-email"}, headers=BROWSER)
    envelope = post_form(rex, {"email": "not-an-email"})  # curl's Accept: */*

    assert page.status_code == 422
    assert page.headers["content-type"].startswith("text/html")
    assert "not a valid email" in page.text
    assert envelope.status_code == 422
    assert envelope.json()["error"]["field"] == "email"
    assert contacts(rex) == []


def test_plain_form_takes_attribution_from_the_posting_page(rex: RexServer) -> None:
    response = post_form(
        rex,
        {"email": "ref@example.com"},
        headers={**JSON, "Referer": f"{SITE}/pricing?utm_source=ads&utm_campaign=fall&q=1"},
    )

    touch = stored_contact(rex, response)["first_touch"]
    assert touch["utm_source"] == "ads"
    assert touch["utm_campaign"] == "fall"
    assert touch["landing_page"] == f"{SITE}/pricing"


def test_first_touch_kept_last_touch_replaced_by_form_posts(rex: RexServer) -> None:
    post_form(rex, {"email": "t@example.com", "utm_source": "google"}, headers=JSON)
    data = stored_contact(
        rex,
        post_form(
            rex, {"email": "t@example.com", "utm_source": "newsletter", "fbclid": "F"}, headers=JSON
        ),
    )

    assert data["first_touch"]["utm_source"] == "google"
    assert data["last_touch"]["utm_source"] == "newsletter"
    assert data["last_touch"]["fbclid"] == "F"


def test_idn_email_addresses_are_one_contact(rex: RexServer) -> None:
    first = post_form(rex, {"email": "Jane@Bücher.de"}, headers=JSON)
    second = httpx.post(f"{rex.url}/capture", json={"email": "jane@xn--bcher-kva.de"})

    assert first.status_code == 201
    assert second.status_code == 201
    assert second.json()["data"]["id"] == first.json()["data"]["id"]
    assert second.json()["data"]["email"] == first.json()["data"]["email"] == "jane@bücher.de"


def test_fifty_concurrent_form_posts_of_one_new_address_make_one_contact(
    rex: RexServer,
) -> None:
    form = {"email": "race-form@example.com", "first_name": "Race", "utm_source": "ads"}
    with (
        httpx.Client(timeout=60) as client,
        concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool,
    ):
        statuses = list(
            pool.map(
                lambda _: client.post(f"{rex.url}/capture", data=form, headers=JSON).status_code,
                range(50),
            )
        )

    assert statuses.count(201) == 50
    assert sql(rex.database_url, "SELECT count(*) AS n FROM contacts")[0].n == 1
    assert len(events(rex, "contact.created")) == 1
    assert events(rex, "contact.updated") == []


def test_bad_form_bodies_are_4xx_never_500(rex: RexServer) -> None:
    url = f"{rex.url}/capture"
    form = "application/x-www-form-urlencoded"
    cases = [
        httpx.post(url, content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"}),
        httpx.post(
            url,
            content=b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        ),
        httpx.post(url, content=b"email=\xff\xfe@example.com", headers={"Content-Type": form}),
        httpx.post(url, content=b"email=%FF%FE%40example.com", headers={"Content-Type": form}),
        httpx.post(url, content=b"&&&===&", headers={"Content-Type": form}),
        httpx.post(url, content=b"a=" + b"&a=".join([b"x"] * 300), headers={"Content-Type": form}),
        httpx.post(url, data={"email": "x@example.com", "metadata": "flat", "metadata[a]": "b"}),
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, response.text
        assert set(response.json()["error"]) == {"type", "message", "field", "request_id"}
    assert contacts(rex) == []

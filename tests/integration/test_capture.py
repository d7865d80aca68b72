"""POST /capture: the seed's request, upsert rules, validation, and concurrency."""

from __future__ import annotations

import concurrent.futures
import json

import httpx

from tests.support import RexServer, sql, stored_contact

SEED_LEAD = {
    "email": "jane@example.com",
    "first_name": "Jane",
    "last_name": "Doe",
    "source": "organic",
    "metadata": {
        "utm_source": "google",
        "utm_campaign": "spring-launch",
        "landing_page": "/pricing",
    },
}


def capture(rex: RexServer, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{rex.url}/capture", json=body, timeout=30, **kwargs)  # type: ignore[arg-type]


def events_of(rex: RexServer, event_type: str) -> list[dict[str, object]]:
    rows = sql(
        rex.database_url,
        "SELECT payload FROM events WHERE type = :t ORDER BY id",
        t=event_type,
    )
    return [json.loads(row.payload) for row in rows]


def test_seed_capture_creates_contact_with_seed_shape(rex: RexServer) -> None:
    response = capture(rex, SEED_LEAD)

    assert response.status_code == 201
    data = response.json()["data"]
    assert data["id"].startswith("cont_")
    assert {k: data[k] for k in ("email", "first_name", "last_name", "stage", "source")} == {
        "email": "jane@example.com",
        "first_name": "Jane",
        "last_name": "Doe",
        "stage": "lead",
        "source": "organic",
    }
    assert data["created_at"].endswith("Z")
    data = stored_contact(rex, response)
    assert data["first_touch"]["utm_source"] == "google"
    assert data["first_touch"]["landing_page"] == "/pricing"
    assert data["last_touch"] == data["first_touch"]
    [event] = events_of(rex, "contact.created")
    assert event["data"] == data
    assert str(event["id"]).startswith("evt_")


def test_second_capture_updates_by_normalised_email(rex: RexServer) -> None:
    first = stored_contact(rex, capture(rex, SEED_LEAD))
    second = capture(
        rex,
        {
            "email": "  JANE@Example.COM ",
            "first_name": "Janet",  # does not overwrite a filled name
            "company": "Acme",  # fills a blank
            "source": "paid",  # first-touch source is kept
            "utm_source": "newsletter",  # last touch replaced
            "metadata": {"plan": "pro"},
        },
    )

    assert second.status_code == 201  # the same status as a new address
    assert second.json()["data"]["id"] == first["id"]
    data = stored_contact(rex, second)
    assert data["first_name"] == "Jane"
    assert data["company"] == "Acme"
    assert data["source"] == "organic"
    assert data["stage"] == "lead"
    assert data["first_touch"] == first["first_touch"]
    assert data["last_touch"]["utm_source"] == "newsletter"
    assert data["metadata"] == {"plan": "pro"}
    [updated] = events_of(rex, "contact.updated")
    assert set(updated["previous_attributes"]) == {"company", "last_touch", "metadata"}
    assert updated["previous_attributes"]["company"] is None
    assert sql(rex.database_url, "SELECT count(*) AS n FROM contacts")[0].n == 1


def test_capture_never_moves_stage_and_repeats_emit_nothing(rex: RexServer) -> None:
    contact = capture(rex, SEED_LEAD).json()["data"]
    with rex.client() as client:
        client.patch(f"/contacts/{contact['id']}", json={"stage": "customer"}).raise_for_status()

    again = capture(rex, SEED_LEAD)

    assert again.status_code == 201
    assert again.json()["data"]["stage"] == "lead"  # the answer reads nothing stored
    assert stored_contact(rex, again)["stage"] == "customer"
    # Only the PATCH produced an update: an identical capture changes nothing.
    assert len(events_of(rex, "contact.updated")) == 1


def test_invalid_email_is_422_with_error_envelope(rex: RexServer) -> None:
    response = capture(rex, {**SEED_LEAD, "email": "not-an-email"})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert error["field"] == "email"
    assert "not a valid email" in error["message"]
    assert sql(rex.database_url, "SELECT count(*) AS n FROM contacts")[0].n == 0


def test_bad_bodies_are_4xx_never_500(rex: RexServer) -> None:
    url = f"{rex.url}/capture"
    cases = [
        httpx.post(url, content=b"{not json", headers={"Content-Type": "application/json"}),
        httpx.post(url, content=b"[1,2]", headers={"Content-Type": "application/json"}),
        httpx.post(url, json={"first_name": "No email"}),
        httpx.post(url, json={"email": 42}),
        httpx.post(url, content=b"\xff\xfe", headers={"Content-Type": "application/json"}),
        httpx.post(url, content=b"email=a@b.co", headers={"Content-Type": "text/csv"}),
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, response.text
        assert set(response.json()["error"]) == {"type", "message", "field", "request_id"}
    assert sql(rex.database_url, "SELECT count(*) AS n FROM contacts")[0].n == 0


def test_unknown_fields_are_kept_in_metadata(rex: RexServer) -> None:
    response = capture(rex, {"email": "x@example.com", "plan": "pro", "seats": 5})

    assert stored_contact(rex, response)["metadata"] == {"plan": "pro", "seats": 5}


def test_fifty_concurrent_captures_of_one_new_address_make_one_contact(rex: RexServer) -> None:
    lead = {"email": "race@example.com", "first_name": "Race"}
    with (
        httpx.Client(timeout=60) as client,
        concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool,
    ):
        statuses = list(
            pool.map(lambda _: client.post(f"{rex.url}/capture", json=lead).status_code, range(50))
        )

    assert set(statuses) == {201}
    assert sql(rex.database_url, "SELECT count(*) AS n FROM contacts")[0].n == 1
    assert len(events_of(rex, "contact.created")) == 1
    assert events_of(rex, "contact.updated") == []

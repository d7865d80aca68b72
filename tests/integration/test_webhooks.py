"""Webhook endpoints API and signed, retried delivery to a real receiver on 127.0.0.1."""

from __future__ import annotations

import json

import httpx

import rex as rexlib
from rex.worker.transport import REFUSED
from tests.receiver import Hang, Receiver, Reset
from tests.support import RexServer, make_settings, serve_rex, serve_rex_process, sql, wait_until

SECRET = "whsec_your_signing_secret"


def subscribe(rex: RexServer, url: str, events: object = ("*",), **extra: object) -> dict:
    with rex.client() as client:
        response = client.post(
            "/webhooks", json={"url": url, "events": list(events), "secret": SECRET, **extra}
        )
    assert response.status_code == 201, response.text
    return response.json()["data"]


def capture(rex: RexServer, email: str = "jane@example.com") -> dict:
    response = httpx.post(f"{rex.url}/capture", json={"email": email, "first_name": "Jane"})
    assert response.status_code in (200, 201), response.text
    return response.json()["data"]


def deliveries(rex: RexServer) -> list:
    return sql(rex.database_url, "SELECT * FROM deliveries ORDER BY created_at")


def test_endpoint_crud_and_secret_shown_only_on_create(rex: RexServer, receiver: Receiver) -> None:
    with rex.client() as client:
        created = client.post(
            "/webhooks", json={"url": receiver.url(), "events": ["contact.created"]}
        ).json()["data"]
        assert created["secret"].startswith("whsec_")
        assert set(created) == {
            "id", "url", "events", "description", "enabled", "disabled_reason", "max_concurrency",
            "ordering", "headers", "rate_limit", "filter",
            "created_at",
            "secret",
        }  # fmt: skip
        got = client.get(f"/webhooks/{created['id']}").json()["data"]
        assert "secret" not in got
        assert [e["id"] for e in client.get("/webhooks").json()["data"]] == [created["id"]]
        patched = client.patch(
            f"/webhooks/{created['id']}", json={"events": "*", "description": "all"}
        ).json()["data"]
        assert patched["events"] == ["*"]
        assert patched["description"] == "all"
        assert client.delete(f"/webhooks/{created['id']}").status_code == 200
        assert client.get(f"/webhooks/{created['id']}").status_code == 404


def test_bad_subscriptions_are_422(rex: RexServer) -> None:
    with rex.client() as client:
        for body in (
            {"url": "ftp://example.com/x", "events": ["*"]},
            {"url": "https://user:pw@example.com/x", "events": ["*"]},
            {"url": "https://example.com/x", "events": ["contact.exploded"]},
            {"url": "https://example.com/x", "events": []},
            {"url": "https://example.com/x"},
        ):
            response = client.post("/webhooks", json=body)
            assert response.status_code == 422, body
            assert response.json()["error"]["message"]
        assert client.get("/webhooks").json()["data"] == []
    assert sql(rex.database_url, "SELECT count(*) FROM endpoints") == [(0,)]


def test_capture_is_delivered_signed_with_every_header(rex: RexServer, receiver: Receiver) -> None:
    endpoint = subscribe(rex, receiver.url(), ["contact.created"])
    contact = capture(rex)

    [request] = receiver.wait_for(1)

    event = rexlib.construct_event(request.body, request.headers["X-Rex-Signature"], SECRET)
    assert event["event"] == "contact.created"
    # The capture's answer is the seed's subset; the event carries the whole contact.
    assert {k: event["data"][k] for k in contact if k != "created_at"} == {
        k: v for k, v in contact.items() if k != "created_at"
    }
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Rex-Event"] == "contact.created"
    assert request.headers["X-Rex-Event-Id"] == event["id"]
    assert request.headers["X-Rex-Delivery-Id"].startswith("dlv_")
    assert request.headers["User-Agent"].startswith("Rex-Webhooks/")
    [delivery] = wait_until(lambda: [d for d in deliveries(rex) if d.status == "delivered"])
    assert delivery.endpoint_id == endpoint["id"]
    assert delivery.attempt_count == 1


def queued(rex: RexServer) -> list[tuple[str, str]]:
    """(endpoint path, event type) of every delivery row: written with the event, in the
    same transaction, so final as soon as the request that caused it has answered."""
    rows = sql(
        rex.database_url,
        "SELECT e.url, d.event_type FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id",
    )
    return sorted((httpx.URL(r.url).path, r.event_type) for r in rows)


def test_filters_only_deliver_subscribed_events(rex: RexServer, receiver: Receiver) -> None:
    subscribe(rex, receiver.url("/created"), ["contact.created"])
    subscribe(rex, receiver.url("/updated"), ["contact.updated"])
    with rex.client() as client:
        contact = client.post("/contacts", json={"email": "f@example.com"}).json()["data"]
        client.patch(f"/contacts/{contact['id']}", json={"first_name": "F"}).raise_for_status()

    # No delivery was even queued for the endpoint that did not subscribe.
    assert queued(rex) == [("/created", "contact.created"), ("/updated", "contact.updated")]
    requests = receiver.wait_for(2)
    assert sorted((r.path, r.json()["event"]) for r in requests) == queued(rex)


def test_failures_are_retried_on_schedule_and_every_attempt_recorded(
    database_url: str, receiver: Receiver
) -> None:
    # A real timeout: the third attempt gets no answer at all, whatever the machine's speed.
    # The server runs as its own process (nothing in this one can stall it), with a timeout
    # the other, immediate answers stay far inside even on a loaded machine.
    settings = make_settings(database_url, delivery_timeout=5.0)
    receiver.respond_with(500, Reset(), Hang())  # then 200
    with serve_rex_process(settings) as rex:
        subscribe(rex, receiver.url())
        capture(rex)

        requests = receiver.wait_for(4, timeout=30)

        [delivery] = wait_until(lambda: [d for d in deliveries(rex) if d.status == "delivered"], 30)
    assert len({r.headers["X-Rex-Event-Id"] for r in requests}) == 1
    assert delivery.attempt_count == 4
    attempts = sql(
        database_url, "SELECT * FROM attempts WHERE delivery_id = :d ORDER BY at", d=delivery.id
    )
    assert [a.status_code for a in attempts] == [500, None, None, 200]
    assert attempts[1].error and "timed out" not in attempts[1].error  # the reset
    assert attempts[2].error == "timed out after 5s"


def test_exhausted_schedule_marks_failed(rex: RexServer, receiver: Receiver) -> None:
    receiver.set_default(503)
    subscribe(rex, receiver.url())
    capture(rex)

    [delivery] = wait_until(lambda: [d for d in deliveries(rex) if d.status == "failed"], 20)
    # The fast schedule has 3 delays: 4 attempts in all.
    assert delivery.attempt_count == 4
    assert len(receiver.requests) == 4


def test_test_event_goes_to_that_endpoint_only(rex: RexServer, receiver: Receiver) -> None:
    tested = subscribe(rex, receiver.url("/tested"), ["deal.created"])
    subscribe(rex, receiver.url("/other"), ["*"])
    with rex.client() as client:
        response = client.post(f"/webhooks/{tested['id']}/test")
    assert response.status_code == 202
    assert response.json()["data"]["event"] == "webhook.test"

    # One delivery queued, to the tested endpoint only (not to "*").
    assert queued(rex) == [("/tested", "webhook.test")]
    [request] = receiver.wait_for(1)
    assert request.path == "/tested"
    assert json.loads(request.body)["event"] == "webhook.test"


def test_private_destinations_are_refused_unless_allowed(
    database_url: str, receiver: Receiver
) -> None:
    settings = make_settings(database_url, allow_private_destinations=False)
    with serve_rex(settings) as rex:
        with rex.client() as client:
            literal = client.post("/webhooks", json={"url": receiver.url(), "events": ["*"]})
            assert literal.status_code == 422
            named = receiver.url().replace("127.0.0.1", "localhost")
            client.post("/webhooks", json={"url": named, "events": ["*"]}).raise_for_status()
        capture(rex)
        attempt = wait_until(lambda: sql(rex.database_url, "SELECT * FROM attempts"))[0]
    assert attempt.status_code is None
    assert attempt.error == REFUSED  # the address ("loopback") is in the log only
    assert receiver.requests == []


def test_deliveries_survive_a_restart(database_url: str, receiver: Receiver) -> None:
    settings = make_settings(database_url)
    with serve_rex(settings, run_worker=False) as rex:
        subscribe(rex, receiver.url())
        capture(rex)
    assert receiver.requests == []
    with serve_rex(settings) as rex:
        receiver.wait_for(1)

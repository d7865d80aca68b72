"""The operators' API: deliveries and their attempts, retry, recover; workspace-scoped."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from rex.ids import rfc3339, utcnow
from tests.receiver import Hang, Receiver, Respond
from tests.support import RexServer, make_settings, serve_rex, sql, wait_until

SECRET = "whsec_your_signing_secret"


def subscribe(rex: RexServer, url: str, events: Any = ("contact.created",)) -> dict[str, Any]:
    with rex.client() as client:
        response = client.post(
            "/webhooks", json={"url": url, "events": list(events), "secret": SECRET}
        )
    assert response.status_code == 201, response.text
    return response.json()["data"]


def capture(rex: RexServer, email: str) -> None:
    response = httpx.post(f"{rex.url}/capture", json={"email": email})
    assert response.status_code in (200, 201), response.text


def statuses(rex: RexServer, endpoint_id: str) -> list[str]:
    rows = sql(
        rex.database_url,
        "SELECT status FROM deliveries WHERE endpoint_id = :e ORDER BY id",
        e=endpoint_id,
    )
    return [r.status for r in rows]


def all_are(rex: RexServer, endpoint_id: str, status: str, n: int) -> bool:
    return statuses(rex, endpoint_id) == [status] * n


def test_deliveries_and_attempts_are_listed_and_paginated(
    rex: RexServer, receiver: Receiver
) -> None:
    receiver.respond_with(Respond(500, body="x" * 3000)).set_default(Respond(200, body="thanks"))
    hook = subscribe(rex, receiver.url())
    for i in range(3):
        capture(rex, f"p{i}@example.com")
    wait_until(lambda: all_are(rex, hook["id"], "delivered", 3), timeout=20)

    with rex.client() as client:
        first = client.get(f"/webhooks/{hook['id']}/deliveries", params={"limit": 2}).json()
        second = client.get(
            f"/webhooks/{hook['id']}/deliveries",
            params={"limit": 2, "cursor": first["next_cursor"]},
        ).json()
        listed = first["data"] + second["data"]
        assert len(first["data"]) == 2 and second["next_cursor"] is None
        assert len({d["id"] for d in listed}) == 3
        assert [d["id"] for d in listed] == sorted((d["id"] for d in listed), reverse=True)
        assert set(listed[0]) == {
            "id", "endpoint_id", "event_id", "event", "status", "attempt_count",
            "next_attempt_at", "created_at",
        }  # fmt: skip
        assert {d["event"] for d in listed} == {"contact.created"}
        # The same through /deliveries, with filters.
        everything = client.get("/deliveries", params={"endpoint_id": hook["id"]}).json()
        assert [d["id"] for d in everything["data"]] == [d["id"] for d in listed]
        by_event = client.get("/deliveries", params={"event_id": listed[0]["event_id"]}).json()
        assert [d["id"] for d in by_event["data"]] == [listed[0]["id"]]
        assert client.get("/deliveries", params={"status": "failed"}).json()["data"] == []

        # The one that failed first: both attempts, with the first KiB of each body.
        retried = [d for d in listed if d["attempt_count"] == 2]
        assert len(retried) == 1
        detail = client.get(f"/deliveries/{retried[0]['id']}").json()["data"]
    failed, succeeded = detail["attempts"]
    assert set(failed) == {"at", "status_code", "error", "latency_ms", "response_excerpt"}
    assert (failed["status_code"], failed["error"]) == (500, None)
    assert failed["response_excerpt"] == "x" * 1024
    assert succeeded["status_code"] == 200 and succeeded["response_excerpt"] == "thanks"
    assert failed["at"] < succeeded["at"] and failed["at"].endswith("Z")
    assert all(isinstance(a["latency_ms"], int) for a in detail["attempts"])
    assert detail["status"] == "delivered" and detail["next_attempt_at"] is None


def test_an_attempt_without_response_records_its_error(
    database_url: str, receiver: Receiver
) -> None:
    settings = make_settings(database_url, retry_schedule=(), delivery_timeout=0.5)
    receiver.set_default(Hang())
    with serve_rex(settings) as rex:
        hook = subscribe(rex, receiver.url())
        capture(rex, "slow@example.com")
        wait_until(lambda: all_are(rex, hook["id"], "failed", 1), timeout=20)
        with rex.client() as client:
            [listed] = client.get(f"/webhooks/{hook['id']}/deliveries").json()["data"]
            [attempt] = client.get(f"/deliveries/{listed['id']}").json()["data"]["attempts"]
    assert attempt["status_code"] is None and attempt["response_excerpt"] is None
    assert "timed out" in attempt["error"]


def test_retry_sends_the_same_event_again_now(rex: RexServer, receiver: Receiver) -> None:
    receiver.set_default(500)
    hook = subscribe(rex, receiver.url())
    capture(rex, "retry@example.com")
    wait_until(lambda: all_are(rex, hook["id"], "failed", 1), timeout=20)
    with rex.client() as client:
        [delivery] = client.get(f"/webhooks/{hook['id']}/deliveries").json()["data"]
        assert delivery["attempt_count"] == 4

        receiver.set_default(200)
        response = client.post(f"/deliveries/{delivery['id']}/retry")
        assert response.status_code == 202, response.text
        assert response.json()["data"]["status"] == "pending"
        wait_until(lambda: all_are(rex, hook["id"], "delivered", 1), timeout=20)
        detail = client.get(f"/deliveries/{delivery['id']}").json()["data"]
        assert detail["attempt_count"] == 5
        assert [a["status_code"] for a in detail["attempts"]] == [500, 500, 500, 500, 200]

        # A delivered one can be sent again too (a resend).
        assert client.post(f"/deliveries/{delivery['id']}/retry").status_code == 202
        receiver.wait_for(6)
        wait_until(lambda: all_are(rex, hook["id"], "delivered", 1), timeout=20)

    requests = receiver.requests
    assert len(requests) == 6
    assert {r.headers["X-Rex-Event-Id"] for r in requests} == {delivery["event_id"]}
    assert {r.headers["X-Rex-Delivery-Id"] for r in requests} == {delivery["id"]}


def test_retry_refuses_while_in_flight_or_disabled(database_url: str, receiver: Receiver) -> None:
    # The attempt must still be in flight at the 409: a timeout no stall of this machine can
    # reach (receiver.stop() below is what ends the attempt), not one it could race.
    settings = make_settings(database_url, delivery_timeout=300, delivery_lease=360)
    receiver.respond_with(Hang())
    with serve_rex(settings) as rex:
        hook = subscribe(rex, receiver.url())
        capture(rex, "busy@example.com")
        receiver.wait_for(1)  # the attempt is in flight
        with rex.client() as client:
            [delivery] = client.get(f"/webhooks/{hook['id']}/deliveries").json()["data"]
            busy = client.post(f"/deliveries/{delivery['id']}/retry")
            assert busy.status_code == 409
            assert "in flight" in busy.json()["error"]["message"]

            client.patch(f"/webhooks/{hook['id']}", json={"enabled": False}).raise_for_status()
            receiver.stop()  # releases the hanging request: the attempt ends
            wait_until(
                lambda: client.get(f"/deliveries/{delivery['id']}").json()["data"]["attempts"],
                timeout=20,
            )
            disabled = client.post(f"/deliveries/{delivery['id']}/retry")
            assert disabled.status_code == 409
            assert "disabled" in disabled.json()["error"]["message"]


def test_recover_requeues_failed_deliveries_since_a_time(
    rex: RexServer, receiver: Receiver
) -> None:
    receiver.set_default(503)
    hook = subscribe(rex, receiver.url())
    capture(rex, "old@example.com")
    wait_until(lambda: all_are(rex, hook["id"], "failed", 1), timeout=20)
    since = rfc3339(utcnow())
    capture(rex, "new1@example.com")
    capture(rex, "new2@example.com")
    wait_until(lambda: all_are(rex, hook["id"], "failed", 3), timeout=20)

    receiver.set_default(200)
    with rex.client() as client:
        response = client.post(f"/webhooks/{hook['id']}/recover", json={"since": since})
        assert response.status_code == 202, response.text
        assert response.json()["data"] == {
            "endpoint_id": hook["id"], "since": since, "requeued": 2
        }  # fmt: skip
        wait_until(lambda: sorted(statuses(rex, hook["id"])) == ["delivered", "delivered",
                                                                 "failed"], timeout=20)  # fmt: skip
        delivered = client.get(
            f"/webhooks/{hook['id']}/deliveries", params={"status": "delivered"}
        ).json()["data"]
    emails = {r.json()["data"]["email"] for r in receiver.requests if r.headers.get("X-Rex-Event")}
    assert emails == {"old@example.com", "new1@example.com", "new2@example.com"}
    recovered = [r for r in receiver.requests if r.json()["data"]["email"].startswith("new")]
    assert len(recovered) == 2 * 4 + 2  # four failed attempts each, then one that succeeded
    assert all(d["attempt_count"] == 5 for d in delivered)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"since": "yesterday"},
        {"since": "2026-03-16T12:00:00"},  # no offset: ambiguous
        {"since": "2026-03-16T12:00:00Z", "until": "2026-03-17T00:00:00Z"},
    ],
)
def test_recover_refuses_bad_input(rex: RexServer, receiver: Receiver, body: Any) -> None:
    hook = subscribe(rex, receiver.url())
    with rex.client() as client:
        response = client.post(f"/webhooks/{hook['id']}/recover", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"]


def test_recover_needs_an_enabled_endpoint(rex: RexServer, receiver: Receiver) -> None:
    receiver.set_default(500)
    hook = subscribe(rex, receiver.url())
    capture(rex, "failed@example.com")
    wait_until(lambda: all_are(rex, hook["id"], "failed", 1), timeout=20)
    with rex.client() as client:
        client.patch(f"/webhooks/{hook['id']}", json={"enabled": False}).raise_for_status()
        response = client.post(
            f"/webhooks/{hook['id']}/recover", json={"since": "2026-01-01T00:00:00Z"}
        )
    assert response.status_code == 409
    assert "enable it" in response.json()["error"]["message"]
    # The refusal re-queued nothing: the failed delivery is as it was.
    [row] = sql(
        rex.database_url,
        "SELECT status, attempt_count FROM deliveries WHERE endpoint_id = :e",
        e=hook["id"],
    )
    assert (row.status, row.attempt_count) == ("failed", 4)


def test_everything_is_workspace_scoped(rex: RexServer, receiver: Receiver) -> None:
    hook = subscribe(rex, receiver.url())
    capture(rex, "mine@example.com")
    wait_until(lambda: all_are(rex, hook["id"], "delivered", 1), timeout=20)
    with rex.client() as client:
        [delivery] = client.get("/deliveries").json()["data"]
    with rex.client(rex.key_for("other")) as other:
        assert other.get("/deliveries").json()["data"] == []
        for method, path, body in (
            ("GET", f"/webhooks/{hook['id']}/deliveries", None),
            ("GET", f"/deliveries/{delivery['id']}", None),
            ("POST", f"/deliveries/{delivery['id']}/retry", None),
            ("POST", f"/webhooks/{hook['id']}/recover", {"since": "2026-01-01T00:00:00Z"}),
            ("POST", f"/webhooks/{hook['id']}/rotate-secret", None),
        ):
            response = other.request(method, path, json=body)
            assert response.status_code == 404, (path, response.text)
            assert response.json()["error"]["type"] == "not_found"
    # The other workspace's retry and recover queued nothing: the delivery row is as it was
    # (a retry re-queues in the transaction that answers, so no wait is needed).
    [row] = sql(rex.database_url, "SELECT status, attempt_count FROM deliveries")
    assert (row.status, row.attempt_count) == ("delivered", 1)


def test_unknown_ids_and_bad_parameters(rex: RexServer) -> None:
    with rex.client() as client:
        assert client.get("/deliveries/dlv_nope").status_code == 404
        assert client.post("/deliveries/dlv_nope/retry").status_code == 404
        assert client.get("/webhooks/wh_nope/deliveries").status_code == 404
        assert client.get("/deliveries", params={"status": "lost"}).status_code == 422
        assert client.get("/deliveries", params={"limit": 0}).status_code == 422
        assert client.get("/deliveries", params={"cursor": "garbage"}).status_code == 400


def test_max_concurrency_is_set_per_endpoint(rex: RexServer, receiver: Receiver) -> None:
    with rex.client() as client:
        created = client.post(
            "/webhooks", json={"url": receiver.url(), "events": "*", "max_concurrency": 3}
        ).json()["data"]
        assert created["max_concurrency"] == 3
        assert subscribe(rex, receiver.url())["max_concurrency"] == 10  # the default
        patched = client.patch(f"/webhooks/{created['id']}", json={"max_concurrency": 50})
        assert patched.json()["data"]["max_concurrency"] == 50
        for bad in (0, 101, None, "many"):
            response = client.patch(f"/webhooks/{created['id']}", json={"max_concurrency": bad})
            assert response.status_code == 422, bad
        assert client.get(f"/webhooks/{created['id']}").json()["data"]["max_concurrency"] == 50


def test_the_new_routes_are_in_the_openapi_document(rex: RexServer) -> None:
    spec = httpx.get(f"{rex.url}/openapi.json").json()
    routes = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert {
        ("/deliveries", "get"),
        ("/deliveries/{delivery_id}", "get"),
        ("/deliveries/{delivery_id}/retry", "post"),
        ("/webhooks/{endpoint_id}/deliveries", "get"),
        ("/webhooks/{endpoint_id}/recover", "post"),
        ("/webhooks/{endpoint_id}/rotate-secret", "post"),
    } <= routes

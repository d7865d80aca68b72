"""Idempotency-Key on every authenticated POST, generically."""

from __future__ import annotations

import concurrent.futures
import uuid

import httpx

from tests.integration.crm import event_types
from tests.support import RexServer, sql


def count(rex: RexServer, table: str) -> int:
    return int(sql(rex.database_url, f"SELECT count(*) AS n FROM {table}")[0].n)


def test_repeat_returns_first_response_without_writing(rex: RexServer) -> None:
    key = str(uuid.uuid4())
    with rex.client() as client:
        first = client.post("/deals", json={"name": "Once"}, headers={"Idempotency-Key": key})
        assert first.status_code == 201
        assert "idempotent-replayed" not in first.headers
        # Same JSON, other whitespace and key order: the same request.
        again = client.post(
            "/deals",
            content=b'{ "name" :  "Once" }',
            headers={"Idempotency-Key": key, "Content-Type": "application/json"},
        )
        assert again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"

        different = client.post("/deals", json={"name": "Twice"}, headers={"Idempotency-Key": key})
        assert different.status_code == 409
        assert different.json()["error"]["type"] == "idempotency_key_reused"
        other_path = client.post("/tasks", json={"name": "Once"}, headers={"Idempotency-Key": key})
        assert other_path.status_code == 409

        # Without a key, or with another key, each POST writes.
        client.post("/deals", json={"name": "Once"}).raise_for_status()
        client.post("/deals", json={"name": "Once"}, headers={"Idempotency-Key": "k2"})
    assert count(rex, "deals") == 3
    assert event_types(rex, "deal.") == ["deal.created"] * 3


def test_errors_are_replayed_too(rex: RexServer) -> None:
    with rex.client() as client:
        client.post("/contacts", json={"email": "a@example.com"}).raise_for_status()
        headers = {"Idempotency-Key": "dup"}
        first = client.post("/contacts", json={"email": "a@example.com"}, headers=headers)
        second = client.post("/contacts", json={"email": "a@example.com"}, headers=headers)
    assert first.status_code == second.status_code == 409
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"


def test_keys_are_per_workspace(rex: RexServer) -> None:
    headers = {"Idempotency-Key": "shared"}
    with rex.client() as mine, rex.client(rex.key_for("other")) as theirs:
        a = mine.post("/deals", json={"name": "A"}, headers=headers)
        b = theirs.post("/deals", json={"name": "A"}, headers=headers)
    assert a.status_code == b.status_code == 201
    assert a.json()["data"]["id"] != b.json()["data"]["id"]


def test_concurrent_repeats_write_once(rex: RexServer) -> None:
    key = str(uuid.uuid4())

    def post(_: int) -> httpx.Response:
        with rex.client() as client:
            return client.post("/deals", json={"name": "Race"}, headers={"Idempotency-Key": key})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(post, range(16)))
    statuses = sorted({r.status_code for r in responses})
    assert set(statuses) <= {201, 409}, statuses
    created = [r.json()["data"]["id"] for r in responses if r.status_code == 201]
    assert created and len(set(created)) == 1
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["type"] == "idempotency_key_in_use"
            assert response.headers["retry-after"]
    assert count(rex, "deals") == 1


def test_keys_expire_after_24_hours(rex: RexServer) -> None:
    with rex.client() as client:
        headers = {"Idempotency-Key": "old"}
        client.post("/deals", json={"name": "Day 1"}, headers=headers).raise_for_status()
        sql(
            rex.database_url,
            "UPDATE idempotency_keys SET created_at = :t",
            t=_days_ago(rex, 2),
        )
        response = client.post("/deals", json={"name": "Day 3"}, headers=headers)
    assert response.status_code == 201
    assert response.json()["data"]["name"] == "Day 3"
    assert count(rex, "deals") == 2


def _days_ago(rex: RexServer, days: int) -> object:
    from datetime import UTC, datetime, timedelta

    moment = datetime.now(UTC) - timedelta(days=days)
    if rex.settings.is_sqlite:
        return moment.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return moment


def test_applies_to_action_posts_but_not_to_capture(rex: RexServer) -> None:
    headers = {"Idempotency-Key": "act"}
    with rex.client() as client:
        endpoint = client.post(
            "/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["*"]}
        ).json()["data"]
        first = client.post(f"/webhooks/{endpoint['id']}/test", headers=headers)
        second = client.post(f"/webhooks/{endpoint['id']}/test", headers=headers)
        assert first.status_code == 202
        assert second.json() == first.json()
    assert event_types(rex, "webhook.") == ["webhook.test"]

    capture_headers = {"Idempotency-Key": "cap"}
    for email in ("one@example.com", "two@example.com"):
        response = httpx.post(
            f"{rex.url}/capture", json={"email": email}, headers=capture_headers, timeout=30
        )
        assert response.status_code == 201
    assert count(rex, "idempotency_keys") == 1


def test_bad_keys_and_missing_auth(rex: RexServer) -> None:
    with rex.client() as client:
        for key in (b"x" * 256, "caf\u00e9".encode()):
            response = client.post("/deals", json={"name": "K"}, headers={"Idempotency-Key": key})
            assert response.status_code == 400, key
            assert response.json()["error"]["field"] == "Idempotency-Key"
    unauthenticated = httpx.post(
        f"{rex.url}/deals", json={"name": "K"}, headers={"Idempotency-Key": "k"}, timeout=30
    )
    assert unauthenticated.status_code == 401
    assert count(rex, "deals") == 0

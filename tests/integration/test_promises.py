"""README promises that had no test (tests-audit §5): metadata PATCH semantics, a revoked key,
the real ``endpoint.disabled`` payload, a real 5xx releasing an idempotency key, the body
limits at their exact boundary, and ``rex listen`` honouring a 429's ``Retry-After``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from rex.ids import utcnow
from tests.cli import client_env, listening
from tests.receiver import Receiver, Respond
from tests.support import RexServer, make_settings, serve_rex, sql, wait_until


def count(database_url: str, table: str) -> int:
    return int(sql(database_url, f"SELECT count(*) AS n FROM {table}")[0].n)


# -- PATCH metadata: merged, a key set to null removed --------------------------------------

CREATE = {
    "contacts": {"email": "meta@example.com"},
    "deals": {"name": "Meta"},
}


@pytest.mark.parametrize("resource", sorted(CREATE))
def test_patch_merges_metadata_and_null_removes_a_key(rex: RexServer, resource: str) -> None:
    with rex.client() as client:
        body = {**CREATE[resource], "metadata": {"plan": "pro", "seats": 3}}
        created = client.post(f"/{resource}", json=body)
        assert created.status_code == 201, created.text
        url = f"/{resource}/{created.json()['data']['id']}"

        merged = client.patch(url, json={"metadata": {"source": "ads", "seats": 5}})
        assert merged.status_code == 200, merged.text
        expected = {"plan": "pro", "seats": 5, "source": "ads"}
        assert merged.json()["data"]["metadata"] == expected
        assert client.get(url).json()["data"]["metadata"] == expected

        removed = client.patch(url, json={"metadata": {"plan": None}})
        assert removed.status_code == 200, removed.text
        assert removed.json()["data"]["metadata"] == {"seats": 5, "source": "ads"}
        assert client.get(url).json()["data"]["metadata"] == {"seats": 5, "source": "ads"}

        # Another field alone leaves metadata as it is.
        other = {"contacts": {"first_name": "M"}, "deals": {"name": "M"}}
        client.patch(url, json=other[resource]).raise_for_status()
        assert client.get(url).json()["data"]["metadata"] == {"seats": 5, "source": "ads"}


# -- a revoked key ---------------------------------------------------------------------------


def test_a_revoked_key_answers_401(rex: RexServer) -> None:
    revoked = rex.key_for("default")
    with rex.client(revoked) as client:
        assert client.get("/contacts").status_code == 200
    # The revoke API is another change; revoking is setting revoked_at.
    sql(
        rex.database_url,
        "UPDATE api_keys SET revoked_at = :now WHERE id = ("
        "  SELECT id FROM api_keys WHERE lookup = :lookup)",
        now=utcnow(),
        lookup=_lookup(revoked),
    )
    with rex.client(revoked) as client:
        for method, path, body in (
            ("GET", "/contacts", None),
            ("POST", "/contacts", {"email": "revoked@example.com"}),
            ("POST", "/tasks", {"title": "with a key"}),
        ):
            headers = {"Idempotency-Key": "revoked-1"} if path == "/tasks" else {}
            response = client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (path, response.text)
            assert response.json()["error"]["type"] == "authentication_failed"
        bearer = httpx.get(f"{rex.url}/contacts", headers={"Authorization": f"Bearer {revoked}"})
        assert bearer.status_code == 401
    assert count(rex.database_url, "contacts") == 0
    assert count(rex.database_url, "tasks") == 0
    # The workspace's other key still works.
    with rex.client() as client:
        assert client.get("/contacts").status_code == 200


def _lookup(key: str) -> str:
    from rex.workspaces.service import _LOOKUP_LEN, KEY_PREFIX

    return key[len(KEY_PREFIX) : len(KEY_PREFIX) + _LOOKUP_LEN]


# -- endpoint.disabled: the real payload against its documented schema ----------------------


def test_the_endpoint_disabled_payload_matches_its_schema(
    rex: RexServer, receiver: Receiver
) -> None:
    from rex.events.webhooks import payload_model

    receiver.set_default(lambda r: 410 if r.path == "/gone" else 200)
    with rex.client() as client:
        gone = client.post("/webhooks", json={"url": receiver.url("/gone"), "events": ["*"]})
        watch = client.post(
            "/webhooks", json={"url": receiver.url("/ops"), "events": ["endpoint.disabled"]}
        )
        assert gone.status_code == watch.status_code == 201
        client.post("/tasks", json={"title": "t"}).raise_for_status()
        [request] = receiver.wait_for(1, path="/ops", timeout=20)
    envelope = request.json()
    assert envelope["event"] == "endpoint.disabled"
    model = payload_model("endpoint.disabled")
    dumped = model.model_validate(envelope).model_dump(by_alias=True, exclude_unset=True)
    assert dumped == envelope
    data = envelope["data"]
    assert data["id"] == gone.json()["data"]["id"]
    assert data["enabled"] is False and "410" in data["disabled_reason"]
    assert "secret" not in data
    # The stored event is the one delivered.
    [(payload,)] = sql(
        rex.database_url, "SELECT payload FROM events WHERE type = 'endpoint.disabled'"
    )
    assert json.loads(payload) == envelope


# -- a real 5xx releases an idempotency key --------------------------------------------------


def test_a_5xx_under_a_served_rex_releases_the_idempotency_key(rex: RexServer) -> None:
    """The table the request writes to disappears under the running server: a real 500.
    The key is released, so the client's retry with the same key runs the request again."""
    body = {"title": "Retry me"}
    sql(rex.database_url, "ALTER TABLE tasks RENAME TO tasks_away")
    try:
        with rex.client() as client:
            client.headers["Idempotency-Key"] = "five-hundred"
            try:
                failed = client.post("/tasks", json=body)
                assert failed.status_code == 500, failed.text
            except httpx.TransportError:
                pass  # uvicorn may reset the connection after a 500
    finally:
        sql(rex.database_url, "ALTER TABLE tasks_away RENAME TO tasks")
    assert count(rex.database_url, "idempotency_keys") == 0  # released, not stored
    assert count(rex.database_url, "tasks") == 0
    with rex.client() as client:
        client.headers["Idempotency-Key"] = "five-hundred"
        retried = client.post("/tasks", json=body)
        assert retried.status_code == 201, retried.text
        assert "idempotent-replayed" not in retried.headers
        replayed = client.post("/tasks", json=body)
        assert replayed.headers["idempotent-replayed"] == "true"
        assert replayed.json() == retried.json()
    assert count(rex.database_url, "tasks") == 1


# -- body limits at their exact boundary -----------------------------------------------------


def padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON, padded with trailing whitespace (still valid JSON) to ``size`` bytes."""
    raw = json.dumps(body).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def test_capture_accepts_exactly_64_kib_and_refuses_one_byte_more(rex: RexServer) -> None:
    assert rex.settings.max_body_bytes == 64 * 1024  # the documented default
    headers = {"Content-Type": "application/json"}
    over = padded({"email": "over@example.com"}, 65536 + 1)
    refused = httpx.post(f"{rex.url}/capture", content=over, headers=headers)
    assert refused.status_code == 413, refused.text
    assert refused.json()["error"]["type"] == "payload_too_large"
    assert count(rex.database_url, "contacts") == 0
    assert count(rex.database_url, "events") == 0

    at = padded({"email": "at@example.com"}, 65536)
    accepted = httpx.post(f"{rex.url}/capture", content=at, headers=headers)
    assert accepted.status_code == 201, accepted.text
    assert sql(rex.database_url, "SELECT email FROM contacts") == [("at@example.com",)]


def test_the_api_accepts_exactly_1_mib_and_refuses_one_byte_more(rex: RexServer) -> None:
    assert rex.settings.max_request_bytes == 1024 * 1024  # the documented default
    with rex.client() as client:
        client.headers["Content-Type"] = "application/json"
        over = padded({"email": "over@example.com"}, 1048576 + 1)
        refused = client.post("/contacts", content=over)
        assert refused.status_code == 413, refused.text
        assert refused.json()["error"]["type"] == "payload_too_large"
        assert count(rex.database_url, "contacts") == 0
        assert count(rex.database_url, "events") == 0

        at = padded({"email": "at@example.com"}, 1048576)
        accepted = client.post("/contacts", content=at)
        assert accepted.status_code == 201, accepted.text
    assert sql(rex.database_url, "SELECT email FROM contacts") == [("at@example.com",)]


# -- rex listen and a 429 with Retry-After ---------------------------------------------------


def test_rex_listen_honours_a_429_retry_after(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    # The schedule's first pause is 0.2 s; the local server asks for 2 s (under the longest
    # pause, 30 s, so honoured in full).
    settings = make_settings(database_url, retry_schedule=(0.2, 30.0))
    receiver.respond_with(Respond(429, headers={"Retry-After": "2"}))
    with serve_rex(settings) as rex:
        env = client_env(rex.url, rex.key)
        with listening(env, receiver.url(), cwd=tmp_path) as listen:
            with rex.client() as client:
                client.post("/contacts", json={"email": "slow@example.com"}).raise_for_status()
            first, second = receiver.wait_for(2, timeout=30)
            event_id = first.headers["X-Rex-Event-Id"]
            listen.wait_for_line(rf"{event_id}\s+--> 429\s+\(\d+ ms\)\s+retry at \S+Z")
            listen.wait_for_line(rf"{event_id}\s+--> 200\s+\(\d+ ms\)\s+attempt 2")
        assert second.headers["X-Rex-Event-Id"] == event_id
        gap = second.received_at - first.received_at
        assert 1.9 <= gap < 15, gap
        wait_until(
            lambda: (
                sql(
                    database_url,
                    "SELECT status, attempt_count FROM deliveries WHERE event_id = :e",
                    e=event_id,
                )
                == [("delivered", 2)]
            ),
            timeout=30,
        )


# -- deleting keeps what linked to it, unlinked, without *.updated events --------------------


def test_deleting_a_contact_or_a_deal_unlinks_without_updated_events(rex: RexServer) -> None:
    from tests.integration.crm import event_types

    with rex.client() as client:
        contact = client.post("/contacts", json={"email": "gone@example.com"}).json()["data"]
        deal = client.post("/deals", json={"name": "D", "contact_id": contact["id"]})
        deal = deal.json()["data"]
        task = client.post(
            "/tasks", json={"title": "t", "deal_id": deal["id"], "contact_id": contact["id"]}
        ).json()["data"]
        client.delete(f"/contacts/{contact['id']}").raise_for_status()
        assert client.get(f"/deals/{deal['id']}").json()["data"]["contact_id"] is None
        assert client.get(f"/tasks/{task['id']}").json()["data"]["contact_id"] is None
        client.delete(f"/deals/{deal['id']}").raise_for_status()
        assert client.get(f"/tasks/{task['id']}").json()["data"]["deal_id"] is None
    assert event_types(rex) == [
        "contact.created", "deal.created", "task.created", "contact.deleted", "deal.deleted",
    ]  # fmt: skip


# -- /embed.js under 6 KiB, /redoc served ---------------------------------------------------


def test_embed_js_is_under_6_kib_and_redoc_is_served(rex: RexServer) -> None:
    embed = httpx.get(f"{rex.url}/embed.js")
    assert embed.status_code == 200
    assert "javascript" in embed.headers["content-type"]
    assert 0 < len(embed.content) < 6 * 1024
    redoc = httpx.get(f"{rex.url}/redoc")
    assert redoc.status_code == 200 and "redoc" in redoc.text.lower()
    assert "/openapi.json" in redoc.text

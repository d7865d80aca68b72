"""The contacts API: CRUD, events, pagination, workspace isolation, authentication."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support import RexServer, sql


@pytest.fixture
def rex(shared_rex: RexServer) -> RexServer:
    """One server for this module's tests (they use only the API): tests/conftest.py."""
    return shared_rex


def event_types(rex: RexServer) -> list[str]:
    return [row.type for row in sql(rex.database_url, "SELECT type FROM events ORDER BY id")]


def test_crud_emits_one_event_per_change(rex: RexServer) -> None:
    with rex.client() as client:
        created = client.post("/contacts", json={"email": "Ann@Example.com", "first_name": "Ann"})
        assert created.status_code == 201
        contact = created.json()["data"]
        assert contact["email"] == "ann@example.com"
        assert contact["stage"] == "lead"

        assert client.get(f"/contacts/{contact['id']}").json()["data"] == contact

        patched = client.patch(
            f"/contacts/{contact['id']}", json={"last_name": "Lee", "metadata": {"a": 1}}
        )
        assert patched.status_code == 200
        assert patched.json()["data"]["last_name"] == "Lee"
        noop = client.patch(f"/contacts/{contact['id']}", json={"last_name": "Lee"})
        assert noop.status_code == 200

        deleted = client.delete(f"/contacts/{contact['id']}")
        assert deleted.json() == {"data": {"id": contact["id"], "deleted": True}}
        assert client.get(f"/contacts/{contact['id']}").status_code == 404

    assert event_types(rex) == ["contact.created", "contact.updated", "contact.deleted"]
    [updated] = sql(rex.database_url, "SELECT payload FROM events WHERE type = 'contact.updated'")
    assert json.loads(updated.payload)["previous_attributes"] == {"last_name": None, "metadata": {}}


def test_duplicate_email_is_409(rex: RexServer) -> None:
    with rex.client() as client:
        client.post("/contacts", json={"email": "dup@example.com"}).raise_for_status()
        response = client.post("/contacts", json={"email": "DUP@example.com"})
    assert response.status_code == 409
    assert response.json()["error"]["field"] == "email"
    assert sql(rex.database_url, "SELECT email FROM contacts") == [("dup@example.com",)]


def test_unknown_fields_and_bad_types_are_422(rex: RexServer) -> None:
    with rex.client() as client:
        unknown = client.post("/contacts", json={"email": "a@example.com", "nickname": "x"})
        wrong = client.post("/contacts", json={"email": "a@example.com", "metadata": "x"})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "nickname"
    assert wrong.status_code == 422
    assert sql(rex.database_url, "SELECT count(*) FROM contacts") == [(0,)]
    assert sql(rex.database_url, "SELECT count(*) FROM events") == [(0,)]


def test_list_paginates_newest_first_with_cursor(rex: RexServer) -> None:
    with rex.client() as client:
        ids = [
            client.post("/contacts", json={"email": f"p{i}@example.com"}).json()["data"]["id"]
            for i in range(5)
        ]
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = client.get("/contacts", params=params).json()
            seen += [c["id"] for c in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        bad = client.get("/contacts", params={"cursor": "nonsense!"})
    assert seen == sorted(ids, reverse=True)
    assert bad.status_code == 400


def test_keys_are_required_and_checked(rex: RexServer) -> None:
    assert httpx.get(f"{rex.url}/contacts").status_code == 401
    assert (
        httpx.get(f"{rex.url}/contacts", headers={"X-Api-Key": "rex_sk_wrong"}).status_code == 401
    )
    bearer = httpx.get(f"{rex.url}/contacts", headers={"Authorization": f"Bearer {rex.key}"})
    assert bearer.status_code == 200
    assert httpx.get(f"{rex.url}/healthz").json()["status"] == "ok"


def test_keys_are_stored_only_as_hashes(rex: RexServer) -> None:
    rows = sql(rex.database_url, "SELECT lookup, key_hash FROM api_keys")
    assert rows
    for row in rows:
        assert rex.key not in (row.lookup, row.key_hash)
        assert len(row.key_hash) == 64


def test_another_workspace_sees_nothing(rex: RexServer) -> None:
    other_key = rex.key_for("other")
    with rex.client() as mine, rex.client(other_key) as theirs:
        contact = mine.post("/contacts", json={"email": "mine@example.com"}).json()["data"]
        assert theirs.get(f"/contacts/{contact['id']}").status_code == 404
        assert (
            theirs.patch(f"/contacts/{contact['id']}", json={"first_name": "X"}).status_code == 404
        )
        assert theirs.delete(f"/contacts/{contact['id']}").status_code == 404
        assert theirs.get("/contacts").json()["data"] == []
        # The same email may exist in each workspace.
        assert theirs.post("/contacts", json={"email": "mine@example.com"}).status_code == 201

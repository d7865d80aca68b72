"""Tasks: CRUD, completion, filters, links, and the events each change emits."""

from __future__ import annotations

import pytest

from tests.integration.crm import event_types, events
from tests.support import RexServer


@pytest.fixture
def rex(shared_rex: RexServer) -> RexServer:
    """One server for this module's tests (they use only the API): tests/conftest.py."""
    return shared_rex


def test_crud_completion_and_events(rex: RexServer) -> None:
    with rex.client() as client:
        contact = client.post("/contacts", json={"email": "t@example.com"}).json()["data"]
        deal = client.post("/deals", json={"name": "T", "contact_id": contact["id"]}).json()["data"]
        created = client.post(
            "/tasks",
            json={
                "title": "Call Jane",
                "body": "About pricing",
                "due_at": "2026-03-18T10:00:00+01:00",
                "contact_id": contact["id"],
                "deal_id": deal["id"],
            },
        )
        assert created.status_code == 201, created.text
        task = created.json()["data"]
        assert task["due_at"] == "2026-03-18T09:00:00Z"
        assert (task["status"], task["completed_at"]) == ("todo", None)
        assert set(task) == {
            "id", "title", "body", "due_at", "status", "completed_at", "contact_id", "deal_id",
            "created_at", "updated_at",
        }  # fmt: skip
        assert client.get(f"/tasks/{task['id']}").json()["data"] == task

        started = client.patch(f"/tasks/{task['id']}", json={"status": "in_progress"})
        assert started.json()["data"]["status"] == "in_progress"
        noop = client.patch(
            f"/tasks/{task['id']}", json={"status": "in_progress", "due_at": "2026-03-18T09:00:00Z"}
        )
        assert noop.json()["data"] == started.json()["data"]

        done = client.patch(f"/tasks/{task['id']}", json={"status": "done"}).json()["data"]
        assert done["completed_at"] is not None
        reopened = client.patch(f"/tasks/{task['id']}", json={"status": "todo"}).json()["data"]
        assert reopened["completed_at"] is None

        assert client.delete(f"/tasks/{task['id']}").json()["data"]["deleted"] is True
        assert client.get(f"/tasks/{task['id']}").status_code == 404

    assert event_types(rex, "task.") == [
        "task.created", "task.updated", "task.updated", "task.completed", "task.updated",
        "task.deleted",
    ]  # fmt: skip
    _, start_evt, done_evt, completed_evt, reopen_evt, deleted_evt = events(rex, "task.")
    assert start_evt["previous_attributes"] == {"status": "todo"}
    assert done_evt["previous_attributes"] == {"status": "in_progress", "completed_at": None}
    assert completed_evt["data"] == done
    assert "previous_attributes" not in completed_evt
    assert reopen_evt["previous_attributes"] == {
        "status": "done",
        "completed_at": done["completed_at"],
    }
    assert deleted_evt["data"] == reopened


def test_created_done_gets_completed_at(rex: RexServer) -> None:
    with rex.client() as client:
        task = client.post("/tasks", json={"title": "Done", "status": "done"}).json()["data"]
    assert task["completed_at"] == task["created_at"]
    assert event_types(rex, "task.") == ["task.created"]


def test_filters(rex: RexServer) -> None:
    with rex.client() as client:
        contact = client.post("/contacts", json={"email": "f@example.com"}).json()["data"]
        deal = client.post("/deals", json={"name": "F"}).json()["data"]
        for title, body in (
            ("early", {"due_at": "2026-01-01T00:00:00Z", "contact_id": contact["id"]}),
            ("late", {"due_at": "2026-12-01T00:00:00Z", "deal_id": deal["id"]}),
            ("undated", {"status": "in_progress"}),
        ):
            client.post("/tasks", json={"title": title, **body}).raise_for_status()

        def titles(**params: object) -> list[str]:
            response = client.get("/tasks", params=params)
            assert response.status_code == 200, response.text
            return sorted(t["title"] for t in response.json()["data"])

        assert titles() == ["early", "late", "undated"]
        assert titles(status="todo") == ["early", "late"]
        assert titles(status="in_progress") == ["undated"]
        assert titles(due_before="2026-06-01T00:00:00Z") == ["early"]
        assert titles(due_before="2026-06-01T02:00:00+02:00") == ["early"]
        assert titles(contact_id=contact["id"]) == ["early"]
        assert titles(deal_id=deal["id"]) == ["late"]
        for params in (
            {"status": "later"},
            {"due_before": "2026-06-01T00:00:00"},  # no time zone
            {"due_before": "1767225600"},  # Unix time: not RFC 3339
            {"due_before": "0001-01-01T00:00:00+01:00"},  # before year 1 in UTC
        ):
            response = client.get("/tasks", params=params)
            assert response.status_code == 422, params
            assert response.json()["error"]["field"] == next(iter(params))


def test_bad_tasks_are_refused(rex: RexServer) -> None:
    with rex.client(rex.key_for("other")) as theirs:
        their_deal = theirs.post("/deals", json={"name": "theirs"}).json()["data"]
    with rex.client() as client:
        for body, field in (
            ({}, "title"),
            ({"title": ""}, "title"),
            ({"title": "x", "status": "blocked"}, "status"),
            ({"title": "x", "due_at": 0}, "due_at"),
            ({"title": "x", "due_at": "tomorrow"}, "due_at"),
            ({"title": "x", "deal_id": their_deal["id"]}, "deal_id"),
            ({"title": "x", "contact_id": "cont_nope"}, "contact_id"),
            ({"title": "x", "completed_at": "2026-01-01T00:00:00Z"}, "completed_at"),
        ):
            response = client.post("/tasks", json=body)
            assert response.status_code == 422, (body, response.text)
            assert response.json()["error"]["field"] == field, body
        task = client.post("/tasks", json={"title": "ok"}).json()["data"]
        link = client.patch(f"/tasks/{task['id']}", json={"deal_id": their_deal["id"]})
        assert link.status_code == 422
        assert client.patch(f"/tasks/{task['id']}", json={"title": None}).status_code == 422
    assert event_types(rex, "task.") == ["task.created"]


def test_deleting_a_deal_keeps_its_tasks_unlinked(rex: RexServer) -> None:
    with rex.client() as client:
        deal = client.post("/deals", json={"name": "D"}).json()["data"]
        task = client.post("/tasks", json={"title": "t", "deal_id": deal["id"]}).json()["data"]
        client.delete(f"/deals/{deal['id']}").raise_for_status()
        assert client.get(f"/tasks/{task['id']}").json()["data"]["deal_id"] is None

"""GET /events and GET /events/{id}: filters, pagination, deliveries."""

from __future__ import annotations

from tests.integration.crm import events
from tests.receiver import Receiver
from tests.support import RexServer, sql, wait_until


def test_list_filters_and_get_with_deliveries(rex: RexServer, receiver: Receiver) -> None:
    with rex.client() as client:
        endpoint = client.post(
            "/webhooks", json={"url": receiver.url(), "events": ["deal.created"]}
        ).json()["data"]
        contact = client.post("/contacts", json={"email": "e@example.com"}).json()["data"]
        deal = client.post("/deals", json={"name": "E"}).json()["data"]
        client.patch(f"/deals/{deal['id']}", json={"stage": "qualified"}).raise_for_status()
        receiver.wait_for(1)

        listed = client.get("/events")
        assert listed.status_code == 200
        body = listed.json()
        assert [e["event"] for e in body["data"]] == [
            "deal.stage_changed", "deal.updated", "deal.created", "contact.created",
        ]  # fmt: skip
        assert body["next_cursor"] is None
        # Exactly the stored envelopes, as delivered.
        assert body["data"] == list(reversed(events(rex)))
        stage_changed = body["data"][0]
        assert (stage_changed["from"], stage_changed["to"]) == ("lead", "qualified")

        by_type = client.get("/events", params={"type": "deal.created"}).json()["data"]
        assert [e["data"]["id"] for e in by_type] == [deal["id"]]
        by_object = client.get("/events", params={"object_id": contact["id"]}).json()["data"]
        assert [e["event"] for e in by_object] == ["contact.created"]

        created = by_type[0]
        wait_until(
            lambda: (
                client.get(f"/events/{created['id']}").json()["data"]["deliveries"][0]["status"]
                == "delivered"
            ),
            timeout=20,
        )
        detail = client.get(f"/events/{created['id']}").json()["data"]
        [delivery] = detail.pop("deliveries")
        assert detail == created
        assert delivery["endpoint_id"] == endpoint["id"]
        assert delivery["event_id"] == created["id"]
        unsent = client.get(f"/events/{by_object[0]['id']}").json()["data"]
        assert unsent["deliveries"] == []
        assert client.get("/events/evt_missing").status_code == 404


def test_time_range_and_pagination(rex: RexServer) -> None:
    with rex.client() as client:
        for i in range(5):
            client.post("/tasks", json={"title": f"t{i}"}).raise_for_status()
        rows = sql(rex.database_url, "SELECT id, created_at FROM events ORDER BY id")
        stored = [ev["timestamp"] for ev in events(rex)]
        middle = stored[2]

        since = client.get("/events", params={"since": middle}).json()["data"]
        until = client.get("/events", params={"until": middle}).json()["data"]
        assert len(since) + len(until) == 5
        assert all(e["timestamp"] >= middle for e in since)
        assert all(e["timestamp"] < middle for e in until)
        assert client.get("/events", params={"since": "2999-01-01T00:00:00Z"}).json()["data"] == []

        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = client.get("/events", params=params).json()
            seen += [e["id"] for e in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [row.id for row in reversed(rows)]

        for params in (
            {"type": "deal.exploded"},
            {"since": "yesterday"},
            {"until": "2026-01-01T00:00:00"},
            {"limit": 0},
            {"limit": 101},
        ):
            response = client.get("/events", params=params)
            assert response.status_code == 422, params
            assert response.json()["error"]["message"]
        for cursor in ("nonsense", "ZXZ0Xw", "%%%", "a" * 201):
            response = client.get("/events", params={"cursor": cursor})
            assert response.status_code in (400, 422), cursor
            assert "error" in response.json()


def test_every_payload_matches_its_documented_webhook_schema(rex: RexServer) -> None:
    from rex.events.webhooks import payload_model

    with rex.client() as client:
        contact = client.post("/contacts", json={"email": "w@example.com"}).json()["data"]
        client.patch(f"/contacts/{contact['id']}", json={"company": "Acme"}).raise_for_status()
        deal = client.post(
            "/deals",
            json={"name": "W", "amount": 5, "currency": "EUR", "contact_id": contact["id"]},
        ).json()["data"]
        client.patch(f"/deals/{deal['id']}", json={"stage": "won"}).raise_for_status()
        task = client.post("/tasks", json={"title": "W", "deal_id": deal["id"]}).json()["data"]
        client.patch(f"/tasks/{task['id']}", json={"status": "done"}).raise_for_status()
        client.delete(f"/tasks/{task['id']}").raise_for_status()
        client.delete(f"/deals/{deal['id']}").raise_for_status()
        client.delete(f"/contacts/{contact['id']}").raise_for_status()
        endpoint = client.post(
            "/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["*"]}
        ).json()["data"]
        client.post(f"/webhooks/{endpoint['id']}/test").raise_for_status()

    stored = events(rex)
    assert {e["event"] for e in stored} >= {
        "contact.created", "contact.updated", "contact.deleted", "deal.created", "deal.updated",
        "deal.stage_changed", "deal.deleted", "task.created", "task.updated", "task.completed",
        "task.deleted", "webhook.test",
    }  # fmt: skip
    for envelope in stored:
        model = payload_model(envelope["event"])
        assert model.model_validate(envelope).model_dump(by_alias=True, exclude_unset=True) == (
            envelope
        ), envelope["event"]

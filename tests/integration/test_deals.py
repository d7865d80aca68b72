"""Deals and pipelines: CRUD, derived status, events with exact previous_attributes."""

from __future__ import annotations

import concurrent.futures

import pytest

from tests.integration.crm import event_types, events
from tests.support import RexServer, sql


@pytest.fixture
def rex(shared_rex: RexServer) -> RexServer:
    """One server for this module's tests (they use only the API): tests/conftest.py."""
    return shared_rex


def test_default_pipeline_exists_and_deals_start_in_its_first_stage(rex: RexServer) -> None:
    with rex.client() as client:
        [pipeline] = client.get("/pipelines").json()["data"]
        assert pipeline["is_default"] is True
        assert [s["name"] for s in pipeline["stages"]] == [
            "lead", "qualified", "proposal", "negotiation", "won", "lost",
        ]  # fmt: skip
        assert [s["status"] for s in pipeline["stages"]][-2:] == ["won", "lost"]

        response = client.post("/deals", json={"name": "Acme"})
    assert response.status_code == 201, response.text
    deal = response.json()["data"]
    assert deal["pipeline_id"] == pipeline["id"]
    assert (deal["stage"], deal["status"]) == ("lead", "open")
    assert set(deal) == {
        "id", "name", "amount", "currency", "pipeline_id", "stage", "status",
        "expected_close_date", "contact_id", "metadata", "created_at", "updated_at",
    }  # fmt: skip
    assert deal["id"].startswith("deal_")


def test_crud_and_events(rex: RexServer) -> None:
    with rex.client() as client:
        contact = client.post("/contacts", json={"email": "d@example.com"}).json()["data"]
        created = client.post(
            "/deals",
            json={
                "name": "Acme - 50 seats",
                "amount": 1200000,
                "currency": "USD",
                "stage": "qualified",
                "expected_close_date": "2026-06-30",
                "contact_id": contact["id"],
            },
        )
        assert created.status_code == 201, created.text
        deal = created.json()["data"]
        assert deal["expected_close_date"] == "2026-06-30"
        assert client.get(f"/deals/{deal['id']}").json()["data"] == deal

        patched = client.patch(f"/deals/{deal['id']}", json={"amount": 1500000, "name": "Acme"})
        assert patched.status_code == 200
        assert patched.json()["data"]["amount"] == 1500000
        # The same values again: nothing changes, nothing is emitted.
        noop = client.patch(f"/deals/{deal['id']}", json={"amount": 1500000, "stage": "qualified"})
        assert noop.json()["data"] == patched.json()["data"]

        won = client.patch(f"/deals/{deal['id']}", json={"stage": "won"}).json()["data"]
        assert (won["stage"], won["status"]) == ("won", "won")

        deleted = client.delete(f"/deals/{deal['id']}")
        assert deleted.json() == {"data": {"id": deal["id"], "deleted": True}}
        assert client.get(f"/deals/{deal['id']}").status_code == 404

    assert event_types(rex, "deal.") == [
        "deal.created", "deal.updated", "deal.updated", "deal.stage_changed", "deal.deleted",
    ]  # fmt: skip
    created_evt, amount_evt, stage_evt, stage_changed, deleted_evt = events(rex, "deal.")
    assert created_evt["data"] == deal
    assert amount_evt["previous_attributes"] == {"amount": 1200000, "name": "Acme - 50 seats"}
    assert stage_evt["previous_attributes"] == {"stage": "qualified", "status": "open"}
    assert stage_changed["from"] == "qualified"
    assert stage_changed["to"] == "won"
    assert stage_changed["data"] == won
    assert "previous_attributes" not in stage_changed
    assert deleted_evt["data"] == won


def test_custom_pipeline_and_moving_between_pipelines(rex: RexServer) -> None:
    with rex.client() as client:
        custom = client.post(
            "/pipelines",
            json={
                "name": "Partners",
                "stages": [{"name": "intro"}, {"name": "signed", "status": "won"}],
            },
        )
        assert custom.status_code == 201, custom.text
        pipeline = custom.json()["data"]
        assert pipeline["stages"][0] == {"name": "intro", "status": "open"}
        deal = client.post("/deals", json={"name": "P", "pipeline_id": pipeline["id"]}).json()[
            "data"
        ]
        assert deal["stage"] == "intro"

        # Moving to the default pipeline needs a stage that exists there.
        default = next(p for p in client.get("/pipelines").json()["data"] if p["is_default"])
        bad = client.patch(f"/deals/{deal['id']}", json={"pipeline_id": default["id"]})
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "stage"
        moved = client.patch(
            f"/deals/{deal['id']}", json={"pipeline_id": default["id"], "stage": "proposal"}
        )
        assert moved.status_code == 200
        assert moved.json()["data"]["pipeline_id"] == default["id"]

        listed = client.get("/deals", params={"pipeline_id": default["id"]}).json()["data"]
        assert [d["id"] for d in listed] == [deal["id"]]
    [changed] = events(rex, "deal.stage_changed")
    assert (changed["from"], changed["to"]) == ("intro", "proposal")


def test_pipeline_rules(rex: RexServer) -> None:
    with rex.client() as client:
        default = client.get("/pipelines").json()["data"][0]
        assert client.delete(f"/pipelines/{default['id']}").status_code == 409

        pipeline = client.post(
            "/pipelines", json={"name": "P", "stages": [{"name": "a"}, {"name": "b"}]}
        ).json()["data"]
        client.post("/deals", json={"name": "D", "pipeline_id": pipeline["id"], "stage": "b"})

        removing = client.patch(f"/pipelines/{pipeline['id']}", json={"stages": [{"name": "a"}]})
        assert removing.status_code == 409
        assert "'b'" in removing.json()["error"]["message"]
        restatus = client.patch(
            f"/pipelines/{pipeline['id']}",
            json={"stages": [{"name": "a"}, {"name": "b", "status": "won"}]},
        )
        assert restatus.status_code == 409
        # Both refusals changed nothing: the pipeline reads back as it was.
        stored = client.get(f"/pipelines/{pipeline['id']}").json()["data"]
        assert stored == pipeline
        adding = client.patch(
            f"/pipelines/{pipeline['id']}",
            json={"name": "Q", "stages": [{"name": "a"}, {"name": "b"}, {"name": "c"}]},
        )
        assert adding.status_code == 200
        assert adding.json()["data"]["name"] == "Q"
        assert client.delete(f"/pipelines/{pipeline['id']}").status_code == 409

        for body in (
            {"name": "X", "stages": []},
            {"name": "X", "stages": [{"name": "a"}, {"name": "a"}]},
            {"name": "X", "stages": [{"name": "a", "status": "maybe"}]},
            {"name": "", "stages": [{"name": "a"}]},
        ):
            response = client.post("/pipelines", json=body)
            assert response.status_code == 422, body
            assert response.json()["error"]["message"]


def test_bad_deals_are_refused_and_write_nothing(rex: RexServer) -> None:
    other_contact = None
    with rex.client(rex.key_for("other")) as theirs:
        other_contact = theirs.post("/contacts", json={"email": "o@example.com"}).json()["data"]
    before = len(events(rex, "deal."))
    with rex.client() as client:
        cases = [
            ({"name": "X", "stage": "nope"}, "stage"),
            ({"name": "X", "amount": 100}, "currency"),
            ({"name": "X", "amount": -1, "currency": "USD"}, "amount"),
            ({"name": "X", "amount": "100", "currency": "USD"}, "amount"),
            ({"name": "X", "amount": 100, "currency": "usd"}, "currency"),
            ({"name": "X", "expected_close_date": "30/06/2026"}, "expected_close_date"),
            ({"name": "X", "contact_id": other_contact["id"]}, "contact_id"),
            ({"name": "X", "contact_id": "cont_missing"}, "contact_id"),
            ({"name": "X", "pipeline_id": "pipe_missing"}, "pipeline_id"),
            ({"name": "X", "colour": "red"}, "colour"),
            ({"name": "X", "metadata": {"a": "b\u0000c"}}, None),
        ]
        for body, field in cases:
            response = client.post("/deals", json=body)
            assert response.status_code == 422, (body, response.text)
            error = response.json()["error"]
            assert error["message"]
            if field:
                assert error["field"] == field, (body, error)
        deal = client.post("/deals", json={"name": "Y"}).json()["data"]
        nulls = client.patch(f"/deals/{deal['id']}", json={"stage": None})
        assert nulls.status_code == 422
    assert len(events(rex, "deal.")) == before + 1


def test_list_filters_and_pagination(rex: RexServer) -> None:
    with rex.client() as client:
        contact = client.post("/contacts", json={"email": "f@example.com"}).json()["data"]
        ids = {}
        for name, stage in (("a", "lead"), ("b", "won"), ("c", "lost"), ("d", "lead")):
            body = {"name": name, "stage": stage}
            if name == "d":
                body["contact_id"] = contact["id"]
            ids[name] = client.post("/deals", json=body).json()["data"]["id"]

        def names(**params: object) -> list[str]:
            data = client.get("/deals", params=params).json()["data"]
            return sorted(d["name"] for d in data)

        assert names(stage="lead") == ["a", "d"]
        assert names(status="won") == ["b"]
        assert names(status="lost") == ["c"]
        assert names(contact_id=contact["id"]) == ["d"]
        assert client.get("/deals", params={"status": "maybe"}).status_code == 422

        seen, cursor = [], None
        while True:
            page = client.get(
                "/deals", params={"limit": 3, **({"cursor": cursor} if cursor else {})}
            )
            seen += [d["id"] for d in page.json()["data"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(ids.values(), reverse=True)
        assert client.get("/deals", params={"cursor": "!!"}).status_code == 400


def test_deleting_a_contact_unlinks_its_deals(rex: RexServer) -> None:
    with rex.client() as client:
        contact = client.post("/contacts", json={"email": "u@example.com"}).json()["data"]
        deal = client.post("/deals", json={"name": "U", "contact_id": contact["id"]}).json()["data"]
        client.delete(f"/contacts/{contact['id']}").raise_for_status()
        assert client.get(f"/deals/{deal['id']}").json()["data"]["contact_id"] is None


def test_concurrent_first_deals_create_one_default_pipeline(rex: RexServer) -> None:
    """Several requests racing to create a workspace's missing default pipeline end with one."""
    sql(rex.database_url, "DELETE FROM pipelines")

    def create(i: int) -> dict:
        with rex.client() as client:
            response = client.post("/deals", json={"name": f"race {i}"})
        assert response.status_code == 201, response.text
        return response.json()["data"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        deals = list(pool.map(create, range(16)))
    defaults = sql(rex.database_url, "SELECT id FROM pipelines WHERE is_default")
    assert len(defaults) == 1
    assert {d["pipeline_id"] for d in deals} == {defaults[0].id}

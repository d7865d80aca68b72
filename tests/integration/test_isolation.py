"""Workspace isolation for EVERY key-authenticated operation, found by walking the app's routes.

Workspace A creates one of everything. With workspace B's key, every operation that names an
object in its path answers 404 for A's ids (exactly like a missing id), and every list (GET
without path parameters) shows none of A's ids. Afterwards A's objects and events are
unchanged.

A route added later is covered automatically. If its path names a parameter this test cannot
fill, it fails and says so: add a line to ``SAMPLE_IDS`` saying which of workspace A's objects
the parameter is (see ``Samples``). Request bodies come from the OpenAPI examples, so a POST or
PATCH needs an example that is valid (the 404 must come from the lookup, not from validation).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from rex.api.routes import api_operations
from rex.app import create_app
from tests.receiver import Receiver
from tests.support import RexServer, make_settings, sql


@dataclass
class Samples:
    """One object of each kind in workspace A."""

    contact: str
    deal: str
    task: str
    pipeline: str
    endpoint: str
    event: str
    delivery: str
    session: str
    form: str
    submission: str

    def all_ids(self) -> list[str]:
        return list(vars(self).values())


# Path parameter name -> which sample it is. Add new parameter names here.
SAMPLE_IDS: dict[str, Callable[[Samples], str]] = {
    "contact_id": lambda s: s.contact,
    "deal_id": lambda s: s.deal,
    "task_id": lambda s: s.task,
    "pipeline_id": lambda s: s.pipeline,
    "endpoint_id": lambda s: s.endpoint,
    "webhook_id": lambda s: s.endpoint,
    "event_id": lambda s: s.event,
    "delivery_id": lambda s: s.delivery,
    "session_id": lambda s: s.session,
    "form_id": lambda s: s.form,
    "submission_id": lambda s: s.submission,
}

_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


def _make_samples(client: httpx.Client, receiver: Receiver) -> Samples:
    def data(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code in (200, 201, 202), response.text
        return response.json()["data"]  # type: ignore[no-any-return]

    contact = data(client.post("/contacts", json={"email": "a@example.com"}))
    pipeline = data(client.post("/pipelines", json={"name": "A", "stages": [{"name": "s"}]}))
    deal = data(client.post("/deals", json={"name": "A deal", "contact_id": contact["id"]}))
    task = data(client.post("/tasks", json={"title": "A task", "deal_id": deal["id"]}))
    endpoint = data(client.post("/webhooks", json={"url": receiver.url(), "events": ["*"]}))
    delivery = data(client.post(f"/webhooks/{endpoint['id']}/test"))
    form = data(client.post("/forms", json={"name": "A form"}))
    data(client.post(f"/capture/{form['id']}", json={"EMAIL": "form@example.com"}))
    submission = client.get("/submissions", params={"form_id": form["id"]}).json()["data"][0]
    return Samples(
        contact=contact["id"],
        deal=deal["id"],
        task=task["id"],
        pipeline=pipeline["id"],
        endpoint=endpoint["id"],
        session=data(
            client.post("/listen/sessions", json={"forward_to": "http://127.0.0.1:9/hook"})
        )["id"],
        event=delivery["event_id"],
        delivery=delivery["id"],
        form=form["id"],
        submission=submission["id"],
    )


def _example_body(openapi: dict[str, Any], path: str, method: str) -> Any:
    operation = openapi["paths"][path][method.lower()]
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    if "example" in content:
        return content["example"]
    schema = content["schema"]
    # An optional body is anyOf [the model, null].
    schema = next((s for s in schema.get("anyOf", []) if "$ref" in s), schema)
    if "$ref" in schema:
        schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    examples = schema.get("examples")
    assert examples, f"{method} {path}: its request body schema has no example"
    return examples[0]


def _snapshot(rex: RexServer, workspace_slug: str) -> dict[str, list[Any]]:
    """Everything workspace A has, to compare before and after B's attempts."""
    tables = ("contacts", "deals", "tasks", "pipelines", "endpoints", "events", "deliveries")
    snapshot = {}
    for table in tables:
        snapshot[table] = [
            tuple(row)
            for row in sql(
                rex.database_url,
                f"SELECT t.* FROM {table} t JOIN workspaces w ON w.id = t.workspace_id "
                "WHERE w.slug = :slug ORDER BY t.id",
                slug=workspace_slug,
            )
        ]
    return snapshot


def test_every_operation_hides_another_workspaces_objects(
    rex: RexServer, receiver: Receiver
) -> None:
    app = create_app(make_settings(rex.database_url))
    operations = [op for op in api_operations(app) if op.requires_api_key]
    assert len(operations) >= 20  # contacts, deals, tasks, pipelines, events, webhooks...
    their_key = rex.key_for("other")
    with rex.client() as mine, rex.client(their_key) as theirs:
        samples = _make_samples(mine, receiver)
        openapi = mine.get("/openapi.json").json()
        before = _snapshot(rex, "default")
        checked_by_id, checked_lists = [], []
        for op in operations:
            params = _PARAM.findall(op.path)
            for method in sorted(op.methods - {"HEAD", "OPTIONS"}):
                if params:
                    unknown = [p for p in params if p not in SAMPLE_IDS]
                    assert not unknown, (
                        f"{method} {op.path}: add {unknown} to SAMPLE_IDS in {__file__}"
                    )
                    url = op.path
                    for param in params:
                        pattern = "{" + param + r"(?::\w+)?}"
                        url = re.sub(pattern, SAMPLE_IDS[param](samples), url)
                    body = _example_body(openapi, op.path, method)
                    response = theirs.request(
                        method, url, **({"json": body} if body is not None else {})
                    )
                    assert response.status_code == 404, (method, url, response.text)
                    assert response.json()["error"]["type"] == "not_found", (method, url)
                    # Indistinguishable from an id that does not exist at all.
                    missing = re.sub(r"_[0-9A-Z]{26}", "_01JAAAAAAAAAAAAAAAAAAAAAAA", url)
                    mine_missing = mine.request(
                        method, missing, **({"json": body} if body is not None else {})
                    )
                    assert mine_missing.status_code == 404, (method, missing)
                    checked_by_id.append(f"{method} {op.path}")
                elif method == "GET":
                    response = theirs.get(op.path)
                    assert response.status_code == 200, (op.path, response.text)
                    leaked = [i for i in samples.all_ids() if i in response.text]
                    assert not leaked, f"GET {op.path} shows workspace A's {leaked}"
                    checked_lists.append(op.path)
        assert _snapshot(rex, "default") == before

    assert {"GET /deals/{deal_id}", "PATCH /tasks/{task_id}", "GET /events/{event_id}"} <= set(
        checked_by_id
    )
    assert {"/contacts", "/deals", "/tasks", "/pipelines", "/events", "/webhooks"} <= set(
        checked_lists
    )


def test_links_to_another_workspaces_objects_are_refused(rex: RexServer) -> None:
    with rex.client() as mine, rex.client(rex.key_for("other")) as theirs:
        contact = mine.post("/contacts", json={"email": "l@example.com"}).json()["data"]
        deal = mine.post("/deals", json={"name": "L"}).json()["data"]
        pipeline = mine.post("/pipelines", json={"name": "L", "stages": [{"name": "x"}]}).json()[
            "data"
        ]
        their_deal = theirs.post("/deals", json={"name": "theirs"}).json()["data"]
        their_task = theirs.post("/tasks", json={"title": "theirs"}).json()["data"]
        attempts = [
            ("POST", "/deals", {"name": "X", "contact_id": contact["id"]}, "contact_id"),
            ("POST", "/deals", {"name": "X", "pipeline_id": pipeline["id"]}, "pipeline_id"),
            ("POST", "/tasks", {"title": "X", "deal_id": deal["id"]}, "deal_id"),
            ("POST", "/tasks", {"title": "X", "contact_id": contact["id"]}, "contact_id"),
            ("PATCH", f"/deals/{their_deal['id']}", {"contact_id": contact["id"]}, "contact_id"),
            ("PATCH", f"/deals/{their_deal['id']}", {"pipeline_id": pipeline["id"]}, None),
            ("PATCH", f"/tasks/{their_task['id']}", {"deal_id": deal["id"]}, "deal_id"),
        ]
        for method, url, body, field in attempts:
            response = theirs.request(method, url, json=body)
            assert response.status_code == 422, (method, url, body, response.text)
            if field:
                assert response.json()["error"]["field"] == field
            # The same answer as for an id that does not exist.
            fake = {
                k: re.sub(r"_[0-9A-Z]{26}", "_01JAAAAAAAAAAAAAAAAAAAAAAA", v)
                for k, v in body.items()
            }
            missing = theirs.request(method, url, json=fake)
            assert missing.status_code == response.status_code
            assert missing.json()["error"]["field"] == response.json()["error"]["field"]

"""Workspace A's sample objects (one of each kind) and the path parameters that name them:
shared by the tests that walk every route (isolation, bad input)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tests.receiver import Receiver


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
    key: str
    form: str
    submission: str
    event_type: str

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
    "key_id": lambda s: s.key,
    "form_id": lambda s: s.form,
    "submission_id": lambda s: s.submission,
    "name_or_id": lambda s: s.event_type,
    # Query filters (see the list-filter test): an event's object, e.g. the contact.
    "object_id": lambda s: s.contact,
}

PARAM = re.compile(r"{(\w+)(?::\w+)?}")


def make_samples(client: httpx.Client, receiver: Receiver) -> Samples:
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
    event_type = data(client.post("/event-types", json={"name": "acme.sample_made"}))
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
        key=data(client.get("/keys"))[0]["id"],
        form=form["id"],
        submission=submission["id"],
        event_type=event_type["id"],
    )

"""One shape per object: the ``data`` of a webhook delivered to a real receiver is exactly
what ``GET /<objects>/{id}`` answers at that moment, every key included (a receiver that
mirrors objects never sees a key come and go), for contacts, deals and tasks; the
``/capture`` answer is the same contact, cut to the keys a request can echo; the operational
events carry the endpoint, the delivery and its last attempt as the API shows them (plus
their documented extras); and every API answer about an object (create, read, list, update)
shows it in the same shape, for every entity: endpoints, deliveries, attempts, events,
pipelines, the workspace, forms, submissions and listen sessions.

Pipelines, the workspace, forms, submissions and listen sessions have no public events of
their own (``submission.accepted`` is Rex's internal one, for a form's new-lead mail), so
their one shape is the API's."""

from __future__ import annotations

from typing import Any

import httpx

import rex as rexlib
from tests.receiver import Receiver
from tests.support import RexServer, wait_until

SECRET = "whsec_one_shape_secret_of_32_characters"


def _get(client: httpx.Client, path: str) -> dict[str, Any]:
    response = client.get(path)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def _write(client: httpx.Client, method: str, path: str, body: dict[str, Any]) -> str:
    response = client.request(method, path, json=body)
    assert response.status_code in (200, 201), response.text
    object_id: str = response.json()["data"]["id"]
    return object_id


def test_event_data_is_the_object_the_api_answers(rex: RexServer, receiver: Receiver) -> None:
    with rex.client() as client:
        endpoint = client.post(
            "/webhooks", json={"url": receiver.url(), "events": ["*"], "secret": SECRET}
        )
        assert endpoint.status_code == 201, endpoint.text
        expected: dict[tuple[str, str], dict[str, Any]] = {}

        # A captured lead with some attribution: the other attribution keys are null.
        captured = httpx.post(
            f"{rex.url}/capture",
            json={"email": "shape@example.com", "first_name": "Ada", "utm_source": "google"},
        )
        assert captured.status_code == 201, captured.text
        contact_id = captured.json()["data"]["id"]
        expected["contact.created", contact_id] = _get(client, f"/contacts/{contact_id}")
        # The /capture answer echoes the request (it reads nothing stored back: no existence
        # oracle), so it holds fewer keys; each one is the contact's own, spelled the same.
        answered = captured.json()["data"]
        contact = expected["contact.created", contact_id]
        assert set(answered) < set(contact)
        assert answered == {key: contact[key] for key in answered}

        deal_id = _write(
            client,
            "POST",
            "/deals",
            {
                "name": "Ada's team plan",
                "amount": 120000,
                "currency": "EUR",
                "expected_close_date": "2026-06-30",
                "contact_id": contact_id,
                "metadata": {"seats": 12},
            },
        )
        expected["deal.created", deal_id] = _get(client, f"/deals/{deal_id}")
        _write(client, "PATCH", f"/deals/{deal_id}", {"stage": "won"})
        won = _get(client, f"/deals/{deal_id}")
        expected["deal.updated", deal_id] = won
        expected["deal.stage_changed", deal_id] = won

        task_id = _write(
            client,
            "POST",
            "/tasks",
            {"title": "Send the contract", "due_at": "2026-06-01T09:00:00Z", "deal_id": deal_id},
        )
        expected["task.created", task_id] = _get(client, f"/tasks/{task_id}")
        _write(client, "PATCH", f"/tasks/{task_id}", {"status": "done"})
        done = _get(client, f"/tasks/{task_id}")
        expected["task.updated", task_id] = done
        expected["task.completed", task_id] = done

        _write(client, "PATCH", f"/contacts/{contact_id}", {"company": "Analytical Engines"})
        expected["contact.updated", contact_id] = _get(client, f"/contacts/{contact_id}")

    delivered: dict[tuple[str, str], dict[str, Any]] = {}
    for request in receiver.wait_for(len(expected), timeout=20):
        event = rexlib.construct_event(request.body, request.headers["X-Rex-Signature"], SECRET)
        delivered[event["event"], event["data"]["id"]] = event["data"]

    assert set(delivered) == set(expected)
    for key, answered in expected.items():
        assert delivered[key] == answered, key
    # Not vacuous: the API answers every attribution key, the unset ones as null.
    touch = expected["contact.created", contact_id]["first_touch"]
    assert touch["utm_source"] == "google"
    assert touch["utm_campaign"] is None
    assert "gclid" in touch


# The keys an operational event adds to the object it is about (documented in
# rex.events.schemas): an endpoint's health, and a failed delivery's last attempt and endpoint.
ENDPOINT_HEALTH = {"failing_since", "last_success_at"}
DELIVERY_FAILED_EXTRAS = {"last_attempt", "endpoint"}


def _without(obj: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if key not in keys}


def test_operational_events_carry_the_endpoint_delivery_and_attempt_the_api_answers(
    rex: RexServer, receiver: Receiver
) -> None:
    with (
        Receiver(default=500) as failing,
        Receiver(default=410) as gone,
        rex.client() as client,
    ):
        watch = {"url": receiver.url("/watch"), "secret": SECRET}
        answer = client.post(
            "/webhooks", json={**watch, "events": ["endpoint.disabled", "delivery.failed"]}
        )
        assert answer.status_code == 201, answer.text
        failing_id = _write(
            client, "POST", "/webhooks", {"url": failing.url(), "events": ["contact.created"]}
        )
        gone_id = _write(
            client, "POST", "/webhooks", {"url": gone.url(), "events": ["contact.created"]}
        )
        _write(client, "POST", "/contacts", {"email": "ops@example.com"})

        def received() -> dict[tuple[str, str], dict[str, Any]]:
            """Each operational event by its type and the endpoint it is about."""
            found = {}
            for request in receiver.requests:
                event = rexlib.construct_event(
                    request.body, request.headers["X-Rex-Signature"], SECRET
                )
                data = event["data"]
                about = data["endpoint_id"] if event["event"] == "delivery.failed" else data["id"]
                found[event["event"], about] = data
            return found

        wanted = {("delivery.failed", failing_id), ("endpoint.disabled", gone_id)}
        events = wait_until(lambda: wanted <= set(received()) and received(), 60)

        failed = events["delivery.failed", failing_id]
        delivery = _get(client, f"/deliveries/{failed['id']}")
        disabled_endpoint = _get(client, f"/webhooks/{gone_id}")
        failing_endpoint = _get(client, f"/webhooks/{failing_id}")

    # delivery.failed: the delivery as GET /deliveries/{id} shows it (but its attempts), its
    # last attempt as that answer lists attempts, and its endpoint as endpoint.* carry it.
    assert set(failed) == (set(delivery) - {"attempts"}) | DELIVERY_FAILED_EXTRAS
    assert _without(failed, DELIVERY_FAILED_EXTRAS) == _without(delivery, {"attempts"})
    assert failed["status"] == "failed"
    assert failed["last_attempt"] == delivery["attempts"][-1]
    assert set(failed["endpoint"]) == set(failing_endpoint) | ENDPOINT_HEALTH
    assert _without(failed["endpoint"], ENDPOINT_HEALTH) == failing_endpoint

    # endpoint.disabled: the endpoint as GET /webhooks/{id} shows it, and its health.
    about = events["endpoint.disabled", gone_id]
    assert set(about) == set(disabled_endpoint) | ENDPOINT_HEALTH
    assert _without(about, ENDPOINT_HEALTH) == disabled_endpoint
    assert about["enabled"] is False and about["disabled_reason"]


def _listed(client: httpx.Client, path: str, object_id: str) -> dict[str, Any]:
    response = client.get(path, params={"limit": 100})
    assert response.status_code == 200, response.text
    [found] = [item for item in response.json()["data"] if item.get("id") == object_id]
    return dict(found)


def _answer(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201, 202), response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def test_every_api_answer_shows_an_object_in_one_shape(rex: RexServer, receiver: Receiver) -> None:
    with rex.client() as client:
        # Endpoints: created (and rotated) with the secret, otherwise without it.
        created = _answer(
            client.post("/webhooks", json={"url": receiver.url(), "events": ["contact.created"]})
        )
        endpoint_id = created["id"]
        endpoint = _get(client, f"/webhooks/{endpoint_id}")
        assert _without(created, {"secret"}) == endpoint
        assert _listed(client, "/webhooks", endpoint_id) == endpoint
        patched = _answer(client.patch(f"/webhooks/{endpoint_id}", json={"description": "d"}))
        assert patched == _get(client, f"/webhooks/{endpoint_id}")
        assert set(patched) == set(endpoint)
        rotated = _answer(client.post(f"/webhooks/{endpoint_id}/rotate-secret"))
        assert set(rotated) == set(created)

        # Deliveries and attempts: the test send's answer, the lists (all, the endpoint's,
        # the event's) and the read with attempts agree.
        tested = _answer(client.post(f"/webhooks/{endpoint_id}/test"))
        receiver.wait_for(1, timeout=30)
        delivery = wait_until(
            lambda: (
                (d := _get(client, f"/deliveries/{tested['id']}"))["status"] == "delivered" and d
            ),
            30,
        )
        assert set(tested) == set(delivery) - {"attempts"}
        shown = _without(delivery, {"attempts"})
        assert _listed(client, "/deliveries", tested["id"]) == shown
        assert _listed(client, f"/webhooks/{endpoint_id}/deliveries", tested["id"]) == shown
        event = _get(client, f"/events/{tested['event_id']}")
        assert event["deliveries"] == [shown]
        [attempt] = delivery["attempts"]
        assert set(attempt) == {"at", "status_code", "error", "latency_ms", "response_excerpt"}
        retried = _answer(client.post(f"/deliveries/{tested['id']}/retry"))
        assert set(retried) == set(shown)

        # Events: the read is the list's item, with its deliveries.
        listed_event = _listed(client, "/events", tested["event_id"])
        assert _without(event, {"deliveries"}) == listed_event

        # Pipelines.
        pipeline = _answer(
            client.post(
                "/pipelines",
                json={
                    "name": "Partners",
                    "stages": [
                        {"name": "intro", "status": "open"},
                        {"name": "won", "status": "won"},
                    ],
                },
            )
        )
        assert pipeline == _get(client, f"/pipelines/{pipeline['id']}")
        assert _listed(client, "/pipelines", pipeline["id"]) == pipeline
        renamed = _answer(client.patch(f"/pipelines/{pipeline['id']}", json={"name": "Allies"}))
        assert renamed == _get(client, f"/pipelines/{pipeline['id']}")

        # The workspace.
        workspace = _get(client, "/workspace")
        updated = _answer(client.patch("/workspace", json={"name": "Shapes"}))
        assert set(updated) == set(workspace)
        assert updated == _get(client, "/workspace")

        # Forms, and a submission to one.
        form = _answer(client.post("/forms", json={"name": "Pricing"}))
        assert form == _get(client, f"/forms/{form['id']}")
        assert _listed(client, "/forms", form["id"]) == form
        assert _answer(client.patch(f"/forms/{form['id']}", json={"name": "Plans"})) == _get(
            client, f"/forms/{form['id']}"
        )
        posted = httpx.post(f"{rex.url}/capture/{form['id']}", data={"email": "f@example.com"})
        assert posted.status_code in (200, 201, 303), posted.text
        [submission] = client.get("/submissions", params={"form_id": form["id"]}).json()["data"]
        assert submission == _get(client, f"/submissions/{submission['id']}")

        # Listen sessions: opened (with its secret and stream settings), read, listed.
        opened = _answer(
            client.post(
                "/listen/sessions",
                json={"forward_to": "http://127.0.0.1:9/hook", "events": ["contact.created"]},
            )
        )
        session = _get(client, f"/listen/sessions/{opened['id']}")
        assert {key: opened[key] for key in session} == session
        assert _listed(client, "/listen/sessions", opened["id"]) == session

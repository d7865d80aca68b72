"""One shape per object: the ``data`` of a webhook delivered to a real receiver is exactly
what ``GET /<objects>/{id}`` answers at that moment, every key included (a receiver that
mirrors objects never sees a key come and go), for contacts, deals and tasks; and the
``/capture`` answer is the same contact, cut to the keys a request can echo."""

from __future__ import annotations

from typing import Any

import httpx

import rex as rexlib
from tests.receiver import Receiver
from tests.support import RexServer

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

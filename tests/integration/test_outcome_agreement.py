"""The worker and ``rex listen`` judge an answer by one rule (``outcome_for``): a 410 Gone
fails the delivery at once and disables its endpoint, with ``endpoint.disabled`` announced,
whether the worker got it or a ``rex listen`` CLI reported it. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import httpx

from tests.receiver import Receiver
from tests.support import RexServer, sql, wait_until


def _deliveries(rex: RexServer, endpoint_id: str) -> list[Any]:
    return sql(
        rex.database_url,
        "SELECT id, status, attempt_count FROM deliveries WHERE endpoint_id = :e",
        e=endpoint_id,
    )


def _endpoint(rex: RexServer, endpoint_id: str) -> Any:
    [row] = sql(
        rex.database_url,
        "SELECT enabled, disabled_reason FROM endpoints WHERE id = :e",
        e=endpoint_id,
    )
    return row


def _deliveries_streamed(
    client: httpx.Client, session_id: str
) -> Generator[dict[str, Any], None, None]:
    """The deliveries the session's stream hands out, while it stays open (it holds their
    leases: a report made then moves the delivery on)."""
    with client.stream("GET", f"/listen/sessions/{session_id}/stream") as response:
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "delivery":
                yield json.loads(line.removeprefix("data: "))


def test_410_fails_and_disables_alike_for_the_worker_and_rex_listen(
    rex: RexServer, receiver: Receiver
) -> None:
    receiver.set_default(lambda r: 410 if r.path == "/gone" else 200)
    forward_to = "http://127.0.0.1:3000/hook"
    with rex.client() as client:
        hook = client.post(
            "/webhooks", json={"url": receiver.url("/gone"), "events": ["contact.created"]}
        ).json()["data"]
        client.post(
            "/webhooks", json={"url": receiver.url("/ops"), "events": ["endpoint.disabled"]}
        ).raise_for_status()
        opened = client.post(
            "/listen/sessions", json={"forward_to": forward_to, "events": ["contact.created"]}
        )
        session = opened.json()["data"]
        client.post("/contacts", json={"email": "gone@example.com"}).raise_for_status()

        # The worker's attempt: the receiver answers 410.
        wait_until(lambda: [r[1:] for r in _deliveries(rex, hook["id"])] == [("failed", 1)])
        # The same answer, reported by `rex listen` while its stream holds the lease.
        stream = _deliveries_streamed(client, session["id"])
        delivery = next(stream)
        report = {
            "delivery_id": delivery["id"],
            "lease": delivery["lease"],
            "status_code": 410,
            "latency_ms": 4,
        }
        with rex.client() as cli:
            reported = cli.post(f"/listen/sessions/{session['id']}/results", json=report)
        stream.close()
        assert reported.status_code == 200, reported.text
        assert reported.json()["data"]["status"] == "failed"
        assert reported.json()["data"]["attempt_count"] == 1  # no retry after a 410

        # Both endpoints disabled, for the same reason, and both announced.
        worker_side, listen_side = _endpoint(rex, hook["id"]), _endpoint(rex, session["id"])
        assert worker_side.enabled is False or worker_side.enabled == 0
        assert listen_side.enabled is False or listen_side.enabled == 0
        assert "410" in worker_side.disabled_reason
        assert listen_side.disabled_reason == worker_side.disabled_reason
        notices = receiver.wait_for(2, path="/ops", timeout=20)
        announced = {n.json()["data"]["id"] for n in notices}
        assert announced == {hook["id"], session["id"]}
        assert {n.json()["event"] for n in notices} == {"endpoint.disabled"}

        # Disabled, the session cannot be tested (as a disabled endpoint cannot)...
        refused = client.post(f"/listen/sessions/{session['id']}/test")
        assert refused.status_code == 409, refused.text
        assert "410" in refused.json()["error"]["message"]
        # ...until a new `rex listen` for the same URL resumes it, enabled again (the way
        # PATCH enabled=true re-enables a webhook endpoint).
        resumed = client.post(
            "/listen/sessions", json={"forward_to": forward_to, "events": ["contact.created"]}
        )
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["data"]["id"] == session["id"]
        again = _endpoint(rex, session["id"])
        assert (bool(again.enabled), again.disabled_reason) == (True, None)
        tested = client.post(f"/listen/sessions/{session['id']}/test")
        assert tested.status_code == 202, tested.text

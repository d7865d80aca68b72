"""A slow endpoint does not delay deliveries to a fast one."""

from __future__ import annotations

from tests.receiver import Hang, Receiver
from tests.support import make_settings, serve_rex

EVENTS = 24


def test_a_slow_endpoint_does_not_delay_a_fast_one(database_url: str, receiver: Receiver) -> None:
    # 8 deliveries in flight per worker; the slow endpoint may take 4 of them. It never answers
    # (until the receiver stops), so the outcome cannot depend on how fast the machine is: its
    # 4 attempts hold their slots for the whole test, far inside the delivery timeout.
    settings = make_settings(
        database_url, worker_concurrency=8, delivery_timeout=120, delivery_lease=180
    )
    receiver.set_default(lambda r: Hang() if r.path == "/slow" else 200)
    with serve_rex(settings) as rex, rex.client() as client:
        for path, event, limit in (
            ("/slow", "contact.created", 4),
            ("/fast", "contact.updated", 10),
        ):
            client.post(
                "/webhooks",
                json={"url": receiver.url(path), "events": [event], "max_concurrency": limit},
            ).raise_for_status()
        # The slow endpoint's whole backlog is queued first, so it is due first...
        contacts = [
            client.post("/contacts", json={"email": f"c{i}@example.com"}).json()["data"]
            for i in range(EVENTS)
        ]
        # ...and only then the fast endpoint's deliveries.
        for contact in contacts:
            client.patch(f"/contacts/{contact['id']}", json={"first_name": "F"}).raise_for_status()

        # Oldest-first alone would give the slow endpoint all 8 slots, and the fast endpoint
        # nothing, for as long as the slow one hangs.
        receiver.wait_for(EVENTS, path="/fast", timeout=60)
        slow_so_far = len([r for r in receiver.requests if r.path == "/slow"])
        receiver.stop()  # releases the hanging attempts, so that the server stops at once

    assert slow_so_far == 4  # its limit, never more

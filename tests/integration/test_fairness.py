"""A slow endpoint does not delay deliveries to a fast one."""

from __future__ import annotations

from tests.receiver import Receiver, Slow
from tests.support import make_settings, serve_rex

EVENTS = 24


def test_a_slow_endpoint_does_not_delay_a_fast_one(database_url: str, receiver: Receiver) -> None:
    # 8 deliveries in flight per worker; the slow endpoint may take 4 of them.
    settings = make_settings(database_url, worker_concurrency=8, delivery_timeout=10)
    receiver.set_default(lambda r: Slow(2.0) if r.path == "/slow" else 200)
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

        receiver.wait_for(EVENTS, path="/fast", timeout=30)
        slow_so_far = len([r for r in receiver.requests if r.path == "/slow"])

    # Oldest-first alone would have given the slow endpoint all 8 slots until its backlog
    # (24 x 2 s / 8 = 6 s) was gone. With its 4 slots it needs 12 s; the fast endpoint's 24
    # deliveries all went out long before that.
    assert slow_so_far < EVENTS
    print(f"\nfast endpoint: all {EVENTS} delivered while the slow one had {slow_so_far} requests")

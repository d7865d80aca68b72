"""Ordered delivery (``ordering`` on an endpoint), against a real receiver on both backends,
and on PostgreSQL with two ``rex worker`` processes, one of them SIGKILLed mid-flight."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from tests.receiver import ReceivedRequest, Receiver, Slow
from tests.support import (
    RexServer,
    make_settings,
    rex_process,
    serve_rex,
    sql,
    stop_process,
    truncate_all,
    wait_until,
)

# Long enough that a held-back head never fails for good while a test waits on it.
PATIENT = {"retry_schedule": (0.2,) * 100}


def contact_id(request: ReceivedRequest) -> str:
    return str(request.json()["data"]["id"])


def create_contacts(rex: RexServer, count: int, prefix: str) -> list[str]:
    with rex.client() as client:
        return [
            client.post("/contacts", json={"email": f"{prefix}{i}@example.com"}).json()["data"][
                "id"
            ]
            for i in range(count)
        ]


def test_ordering_is_validated_and_shown(rex: RexServer, receiver: Receiver) -> None:
    with rex.client() as client:
        created = client.post(
            "/webhooks", json={"url": receiver.url(), "events": ["*"], "ordering": "endpoint"}
        ).json()["data"]
        assert created["ordering"] == "endpoint"
        assert client.get(f"/webhooks/{created['id']}").json()["data"]["ordering"] == "endpoint"
        default = client.post("/webhooks", json={"url": receiver.url(), "events": ["*"]})
        assert default.json()["data"]["ordering"] == "none"
        bad = client.post(
            "/webhooks", json={"url": receiver.url(), "events": ["*"], "ordering": "fifo"}
        )
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "ordering"
        assert "fifo" in bad.json()["error"]["message"] or "none" in bad.json()["error"]["message"]
        null = client.patch(f"/webhooks/{created['id']}", json={"ordering": None})
        assert null.status_code == 422
        patched = client.patch(f"/webhooks/{created['id']}", json={"ordering": "object"})
        assert patched.json()["data"]["ordering"] == "object"


def test_endpoint_ordering_holds_back_until_the_first_succeeds(
    database_url: str, receiver: Receiver
) -> None:
    receiver.respond_with(500, 500)  # event 1 fails twice, then everything succeeds
    with serve_rex(make_settings(database_url, **PATIENT)) as rex:
        with rex.client() as client:
            client.post(
                "/webhooks",
                json={
                    "url": receiver.url(),
                    "events": ["contact.created"],
                    "ordering": "endpoint",
                    "max_concurrency": 10,
                },
            ).raise_for_status()
        ids = create_contacts(rex, 8, "ordered")
        receiver.wait_for(len(ids) + 2, timeout=30)
        wait_until(
            lambda: (
                sql(
                    rex.database_url,
                    "SELECT count(*) AS n FROM deliveries WHERE status = 'delivered'",
                )[0].n
                == len(ids)
            ),
            timeout=30,
        )
    arrived = [contact_id(r) for r in receiver.requests]
    # Event 1 three times (500, 500, 200), then 2..N once each, in order.
    assert arrived == [ids[0]] * 3 + ids[1:]


def test_a_rate_limited_head_keeps_its_followers_behind(
    database_url: str, receiver: Receiver
) -> None:
    """Ordering and rate_limit together: the limit paces the head, and none of the deliveries
    parked behind it goes out first (each in order, one slot apart at most 5 a second)."""
    receiver.respond_with(500, 500)
    with serve_rex(make_settings(database_url, **PATIENT)) as rex:
        with rex.client() as client:
            client.post(
                "/webhooks",
                json={
                    "url": receiver.url(),
                    "events": ["contact.created"],
                    "ordering": "endpoint",
                    "rate_limit": 5,
                },
            ).raise_for_status()
        ids = create_contacts(rex, 5, "paced")
        receiver.wait_for(len(ids) + 2, timeout=30)
        wait_until(
            lambda: (
                sql(
                    rex.database_url,
                    "SELECT count(*) AS n FROM deliveries WHERE status = 'delivered'",
                )[0].n
                == len(ids)
            ),
            timeout=30,
        )
    arrived = [contact_id(r) for r in receiver.requests]
    assert arrived == [ids[0]] * 3 + ids[1:]


def test_object_ordering_keeps_objects_independent(database_url: str, receiver: Receiver) -> None:
    b_done = threading.Event()
    state: dict[str, str] = {}

    def behaviour(request: ReceivedRequest) -> int:
        event = request.json()
        if contact_id(request) == state.get("a") and not b_done.is_set():
            return 500  # object A's first event fails until object B's events are through
        if contact_id(request) == state.get("b") and event["event"] == "contact.updated":
            b_done.set()
        return 200

    receiver.set_default(behaviour)
    with serve_rex(make_settings(database_url, **PATIENT)) as rex:
        with rex.client() as client:
            client.post(
                "/webhooks",
                json={"url": receiver.url(), "events": ["*"], "ordering": "object"},
            ).raise_for_status()
            a = client.post("/contacts", json={"email": "a@example.com"}).json()["data"]["id"]
            state["a"] = a
            wait_until(lambda: any(contact_id(r) == a for r in receiver.requests), timeout=20)
            b = client.post("/contacts", json={"email": "b@example.com"}).json()["data"]["id"]
            state["b"] = b
            client.patch(f"/contacts/{a}", json={"first_name": "Ada"}).raise_for_status()
            client.patch(f"/contacts/{b}", json={"first_name": "Bo"}).raise_for_status()
        wait_until(
            lambda: (
                sql(
                    rex.database_url,
                    "SELECT count(*) AS n FROM deliveries WHERE status = 'delivered'",
                )[0].n
                == 4
            ),
            timeout=30,
        )
    seen = [(contact_id(r), r.json()["event"]) for r in receiver.requests]
    b_events = [event for who, event in seen if who == b]
    a_events = [event for who, event in seen if who == a]
    assert b_events == ["contact.created", "contact.updated"]
    # A: its created event failed (at least once) until B was through, then created, updated.
    assert a_events[-2:] == ["contact.created", "contact.updated"]
    assert set(a_events[:-1]) == {"contact.created"} and len(a_events) >= 3
    # B's events went while A's first one was failing: both arrived before A's success.
    first_a_success = len(seen) - 1 - seen[::-1].index((a, "contact.created"))
    assert seen.index((b, "contact.updated")) < first_a_success


def test_retry_of_a_failed_delivery_goes_to_the_back(database_url: str, receiver: Receiver) -> None:
    receiver.respond_with(500, 500, 500, 500)  # event 1 fails for good (4 attempts)
    with serve_rex(make_settings(database_url)) as rex:
        with rex.client() as client:
            client.post(
                "/webhooks",
                json={"url": receiver.url(), "events": ["contact.created"], "ordering": "endpoint"},
            ).raise_for_status()
        ids = create_contacts(rex, 3, "retry")
        receiver.wait_for(6, timeout=30)  # 4 failures of 1, then 2 and 3
        rows = wait_until(
            lambda: (
                (
                    r := sql(
                        rex.database_url,
                        "SELECT id, status FROM deliveries ORDER BY sequence",
                    )
                )
                and [x.status for x in r] == ["failed", "delivered", "delivered"]
                and r
            ),
            timeout=30,
        )
        with rex.client() as client:
            retried = client.post(f"/deliveries/{rows[0].id}/retry")
            assert retried.status_code in (200, 202), retried.text
        receiver.wait_for(7, timeout=30)
    arrived = [contact_id(r) for r in receiver.requests]
    assert arrived == [ids[0]] * 4 + ids[1:] + [ids[0]]


@pytest.mark.postgres
def test_two_workers_and_a_sigkill_keep_the_order(postgres_url: str, tmp_path: Path) -> None:
    truncate_all(postgres_url)
    env = {
        "REX_DATABASE_URL": postgres_url,
        "REX_ALLOW_PRIVATE_DESTINATIONS": "1",
        "REX_DELIVERY_LEASE": "2",
        "REX_DELIVERY_POLL_INTERVAL": "0.2",
        "REX_RETRY_SCHEDULE": ",".join(["0.2"] * 50),
    }
    count = 24
    with Receiver() as receiver, serve_rex(make_settings(postgres_url), run_worker=False) as rex:
        receiver.set_default(Slow(0.15))
        with rex.client() as client:
            client.post(
                "/webhooks",
                json={"url": receiver.url(), "events": ["contact.created"], "ordering": "endpoint"},
            ).raise_for_status()
        ids = create_contacts(rex, count, "kill")

        def held_by(pid: int) -> int:
            rows = sql(
                postgres_url,
                "SELECT count(*) AS n FROM deliveries WHERE status = 'pending' "
                "AND leased_by LIKE :p",
                p=f"%:{pid}:%",
            )
            return int(rows[0].n)

        victim = rex_process(["worker"], env, tmp_path / "victim.log")
        survivor = None
        try:
            # The victim is mid-flight (it holds the head's lease) after a few deliveries;
            # then a second worker joins, and the victim is killed.
            wait_until(lambda: len(receiver.requests) >= 4 and held_by(victim.pid), timeout=30)
            survivor = rex_process(["worker"], env, tmp_path / "survivor.log")
            wait_until(lambda: held_by(victim.pid), timeout=30)
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)

            def all_delivered() -> bool:
                rows = sql(postgres_url, "SELECT status, count(*) AS n FROM deliveries GROUP BY 1")
                return {r.status: r.n for r in rows} == {"delivered": count}

            wait_until(all_delivered, timeout=90, interval=0.2)
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.wait(10)
            if survivor is not None:
                assert stop_process(survivor) == 0, (tmp_path / "survivor.log").read_text()
        arrived = [contact_id(r) for r in receiver.requests]
    # At-least-once: the delivery in flight at the kill may arrive twice, but nothing
    # behind it arrives before it, and every event arrives in order.
    collapsed = [who for i, who in enumerate(arrived) if i == 0 or arrived[i - 1] != who]
    assert collapsed == ids

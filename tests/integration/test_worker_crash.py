"""PostgreSQL: two ``rex worker`` processes share a batch; one is SIGKILLed mid-batch; the
other takes its leases over when they expire. Every event is delivered; the only
duplicates are deliveries the killed worker had in flight."""

from __future__ import annotations

import collections
import signal
from pathlib import Path

import pytest

from tests.receiver import Receiver, Slow
from tests.support import (
    make_settings,
    rex_process,
    serve_rex,
    sql,
    stop_process,
    truncate_all,
    wait_until,
)

EVENTS = 300
ENV = {
    "REX_ALLOW_PRIVATE_DESTINATIONS": "1",
    "REX_DELIVERY_LEASE": "3",
    "REX_DELIVERY_POLL_INTERVAL": "0.2",
    "REX_RETRY_SCHEDULE": "0.2,0.2,0.2",
}


def leased_by(postgres_url: str, pid: int) -> int:
    """Pending deliveries under a lease of the worker with this pid (id: host:pid:...)."""
    rows = sql(
        postgres_url,
        "SELECT count(*) AS n FROM deliveries WHERE status = 'pending' AND leased_by LIKE :p",
        p=f"%:{pid}:%",
    )
    return int(rows[0].n)


@pytest.mark.postgres
def test_sigkilled_worker_loses_no_event(postgres_url: str, tmp_path: Path) -> None:
    truncate_all(postgres_url)
    env = {**ENV, "REX_DATABASE_URL": postgres_url}
    settings = make_settings(postgres_url)
    with Receiver() as receiver, serve_rex(settings, run_worker=False) as rex:
        receiver.set_default(Slow(0.3))
        with rex.client() as client:
            client.post(
                "/webhooks", json={"url": receiver.url(), "events": ["*"], "max_concurrency": 24}
            ).raise_for_status()
            for i in range(EVENTS):
                response = client.post("/contacts", json={"email": f"k{i}@example.com"})
                assert response.status_code == 201

        victim = rex_process(["worker", "--concurrency", "12"], env, tmp_path / "victim.log")
        survivor = rex_process(["worker", "--concurrency", "12"], env, tmp_path / "survivor.log")
        try:
            # Mid-batch: both workers hold leases and part of the batch has arrived.
            wait_until(
                lambda: (
                    leased_by(postgres_url, victim.pid)
                    and leased_by(postgres_url, survivor.pid)
                    and len(receiver.requests) >= 40
                ),
                timeout=30,
            )
        finally:
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
        # What the victim held when it died: sent or not, none of it was recorded.
        in_flight_at_kill = leased_by(postgres_url, victim.pid)
        received_at_kill = len(receiver.requests)
        try:

            def all_delivered() -> bool:
                rows = sql(postgres_url, "SELECT status, count(*) AS n FROM deliveries GROUP BY 1")
                return {r.status: r.n for r in rows} == {"delivered": EVENTS}

            wait_until(all_delivered, timeout=60, interval=0.2)
        finally:
            assert stop_process(survivor) == 0, (tmp_path / "survivor.log").read_text()

    received = collections.Counter(r.headers["X-Rex-Event-Id"] for r in receiver.requests)
    events = {row.id for row in sql(postgres_url, "SELECT id FROM events")}
    assert set(received) == events and len(events) == EVENTS
    duplicates = sum(n - 1 for n in received.values())
    assert 0 < in_flight_at_kill < EVENTS
    assert duplicates <= in_flight_at_kill
    print(
        f"\n{EVENTS} events, 2 workers, one SIGKILLed after {received_at_kill} requests with "
        f"{in_flight_at_kill} deliveries in flight: all delivered, {duplicates} duplicates"
    )

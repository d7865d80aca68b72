"""PostgreSQL: a ``rex worker`` SIGKILLed mid-delivery loses nothing; another takes over."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.receiver import Receiver, Slow
from tests.support import make_settings, serve_rex, sql, truncate_all, wait_until

REX = str(Path(sys.executable).with_name("rex"))
EVENTS = 40


def start_worker(database_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REX_DATABASE_URL": database_url,
        "REX_ALLOW_PRIVATE_DESTINATIONS": "1",
        "REX_DELIVERY_LEASE": "3",
        "REX_DELIVERY_POLL_INTERVAL": "0.2",
        "REX_RETRY_SCHEDULE": "0.2,0.2,0.2",
    }
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [REX, "worker", "--concurrency", "8"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


@pytest.mark.postgres
def test_sigkilled_worker_loses_no_event(postgres_url: str, tmp_path: Path) -> None:
    truncate_all(postgres_url)
    settings = make_settings(postgres_url)
    with Receiver() as receiver, serve_rex(settings, run_worker=False) as rex:
        receiver.set_default(Slow(1.0))
        with rex.client() as client:
            client.post(
                "/webhooks", json={"url": receiver.url(), "events": ["*"]}
            ).raise_for_status()
        for i in range(EVENTS):
            response = httpx.post(f"{rex.url}/capture", json={"email": f"k{i}@example.com"})
            assert response.status_code == 201

        first = start_worker(postgres_url, tmp_path / "worker1.log")
        try:
            receiver.wait_for(4, timeout=20)  # attempts are in flight now
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        in_flight_at_kill = len(receiver.requests)

        second = start_worker(postgres_url, tmp_path / "worker2.log")
        try:

            def all_delivered() -> bool:
                rows = sql(postgres_url, "SELECT status, count(*) AS n FROM deliveries GROUP BY 1")
                return {r.status: r.n for r in rows} == {"delivered": EVENTS}

            wait_until(all_delivered, timeout=60, interval=0.2)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0, (tmp_path / "worker2.log").read_text()

    received = collections.Counter(r.headers["X-Rex-Event-Id"] for r in receiver.requests)
    events = {row.id for row in sql(postgres_url, "SELECT id FROM events")}
    assert set(received) == events and len(events) == EVENTS
    duplicates = sum(n - 1 for n in received.values())
    # Only what the killed worker had in flight can arrive twice.
    assert duplicates <= in_flight_at_kill
    print(f"\n{EVENTS} events, {in_flight_at_kill} in flight at SIGKILL, {duplicates} duplicates")

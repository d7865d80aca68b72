"""PostgreSQL, as deployed: two `rex worker --http-port` processes beside an API process;
each is ready, `rex status` lists both running, and both stop cleanly (heartbeat stopped, no
lease left)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.cli import REX
from tests.operations.conftest import Proc, rex_env, scrape, serve, start
from tests.receiver import Receiver
from tests.support import api_key, free_port, sql, truncate_all, wait_until

pytestmark = pytest.mark.postgres


def test_two_workers_report_ready_and_stop_cleanly(
    postgres_url: str, tmp_path: Path, receiver: Receiver, procs: list[Proc]
) -> None:
    database_url = postgres_url
    truncate_all(database_url)
    api = serve(procs, database_url, tmp_path, "--no-worker")
    key = api_key(database_url)
    workers = []
    for n in range(2):
        port = free_port()
        worker = start(
            ["worker", "--http-port", str(port)],
            rex_env(database_url),
            tmp_path / f"worker-{n}.log",
            f"http://127.0.0.1:{port}/readyz",
        )
        procs.append(worker)
        workers.append(worker)
    with httpx.Client(base_url=api.url, headers={"X-Api-Key": key}) as client:
        client.post("/webhooks", json={"url": receiver.url(), "events": ["*"]}).raise_for_status()
        for i in range(20):
            client.post("/contacts", json={"email": f"pg{i}@example.com"}).raise_for_status()
    receiver.wait_for(20, timeout=60)
    wait_until(lambda: scrape(api.url)["rex_deliveries_pending"] == 0, timeout=30)
    successes = sum(
        scrape(w.url).get('rex_delivery_attempts_total{outcome="success"}', 0) for w in workers
    )
    assert successes == 20

    status = subprocess.run(
        [REX, "status", "--json"], env=rex_env(database_url), capture_output=True, text=True
    )
    assert status.returncode == 0, status.stderr
    running = [w for w in json.loads(status.stdout)["workers"] if w["state"] == "running"]
    assert len(running) == 2 and {w["kind"] for w in running} == {"worker"}

    for worker in workers:
        assert worker.stop() == 0, worker.text()
    states = [
        r.stopped_at is not None
        for r in sql(database_url, "SELECT stopped_at FROM worker_heartbeats")
    ]
    assert states == [True, True]
    assert sql(database_url, "SELECT id FROM deliveries WHERE leased_by IS NOT NULL") == []

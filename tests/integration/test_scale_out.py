"""PostgreSQL scale-out: several ``rex serve --no-worker`` and ``rex worker`` processes on one
database deliver every event exactly once, woken by LISTEN/NOTIFY."""

from __future__ import annotations

import collections
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.receiver import Receiver, Respond
from tests.support import (
    api_key,
    free_port,
    rex_process,
    stop_process,
    truncate_all,
    wait_for_http,
    wait_until,
)

EVENTS = 300


@pytest.mark.postgres
def test_two_apis_and_two_workers_deliver_every_event_exactly_once(
    postgres_url: str, tmp_path: Path
) -> None:
    truncate_all(postgres_url)
    env = {
        "REX_DATABASE_URL": postgres_url,
        "REX_ALLOW_PRIVATE_DESTINATIONS": "1",
        "REX_RETRY_SCHEDULE": "0.5,0.5,0.5",
        # Polling only every minute: what wakes the idle workers below is NOTIFY.
        "REX_DELIVERY_POLL_INTERVAL": "60",
    }
    key = api_key(postgres_url)
    processes = []
    with Receiver() as receiver:
        receiver.set_default(Respond(200, delay=0.01))
        try:
            apis = []
            for n in (1, 2):
                port, log = free_port(), tmp_path / f"api{n}.log"
                api = rex_process(["serve", "--no-worker", "--port", str(port)], env, log)
                processes.append((api, log))
                apis.append((f"http://127.0.0.1:{port}", api, log))
            workers = []
            for n in (1, 2):
                log = tmp_path / f"worker{n}.log"
                worker = rex_process(["worker", "--concurrency", "16"], env, log)
                processes.append((worker, log))
                workers.append(log)
            for url, api, log in apis:
                wait_for_http(f"{url}/healthz", api, log)
            for log in workers:
                wait_until(lambda log=log: "worker_started" in log.read_text(), timeout=30)

            headers = {"X-Api-Key": key}
            httpx.post(
                f"{apis[0][0]}/webhooks",
                headers=headers,
                json={"url": receiver.url(), "events": ["*"], "max_concurrency": 32},
            ).raise_for_status()

            clients = [httpx.Client(base_url=url, headers=headers, timeout=30) for url, *_ in apis]

            def send(i: int) -> int:
                client = clients[i % 2]  # alternate between the two API processes
                return client.post("/contacts", json={"email": f"s{i}@example.com"}).status_code

            with ThreadPoolExecutor(6) as pool:
                assert set(pool.map(send, range(EVENTS))) == {201}
            for client in clients:
                client.close()

            receiver.wait_for(EVENTS, timeout=45)
        finally:
            codes = {str(log.name): stop_process(process) for process, log in processes}

    # Workers exit 0 after SIGTERM; uvicorn, after its graceful shutdown, re-raises the
    # SIGTERM it caught, so an API process may also report having been terminated by it.
    assert {name: code for name, code in codes.items() if name.startswith("worker")} == {
        "worker1.log": 0, "worker2.log": 0
    }, codes  # fmt: skip
    assert {codes["api1.log"], codes["api2.log"]} <= {0, -signal.SIGTERM}, codes
    received = collections.Counter(r.headers["X-Rex-Event-Id"] for r in receiver.requests)
    assert len(received) == EVENTS
    duplicates = sum(n - 1 for n in received.values())
    assert duplicates == 0
    shares = [log.read_text().count("delivery_attempt") for log in workers]
    assert all(shares) and sum(shares) == EVENTS, shares
    print(f"\n{EVENTS} events via 2 API processes, delivered by 2 workers {shares}, 0 duplicates")

"""SIGTERM under load: `rex serve` stops taking work, finishes what is in flight, frees its
leases and exits 0, with every acknowledged capture stored; a second signal exits at once."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from tests.operations.conftest import Proc, first_key, rex_env, serve, start
from tests.receiver import Hang, Receiver, Slow
from tests.support import free_port, sql, wait_until


def test_sigterm_under_load_loses_nothing_and_leaves_no_lease(
    tmp_path: Path, receiver: Receiver, procs: list[Proc]
) -> None:
    receiver.set_default(Slow(0.5))
    database_url = f"sqlite:///{tmp_path}/rex.db"
    rex = serve(
        procs, database_url, tmp_path, REX_CAPTURE_RATE_LIMIT="off", REX_DELIVERY_TIMEOUT="10"
    )
    key = first_key(rex)
    httpx.post(
        f"{rex.url}/webhooks",
        json={"url": receiver.url(), "events": ["contact.created"]},
        headers={"X-Api-Key": key},
    ).raise_for_status()

    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(n: int) -> None:
        with httpx.Client(base_url=rex.url, timeout=15) as client:
            for i in range(300):  # bounded; stops when the server goes away
                if stop.is_set():
                    return
                email = f"load{n}-{i}@example.com"
                try:
                    response = client.post("/capture", json={"email": email})
                except httpx.TransportError:
                    return
                if response.status_code == 201:
                    with lock:
                        acknowledged.append(email)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(acknowledged) >= 40 and receiver.requests, timeout=30)
    rex.process.send_signal(signal.SIGTERM)
    code = rex.process.wait(40)
    stop.set()
    for thread in threads:
        thread.join(30)

    assert code == 0, rex.text()
    stored = {r.email for r in sql(database_url, "SELECT email FROM contacts")}
    assert set(acknowledged) <= stored, "an acknowledged capture is missing"
    leased = sql(database_url, "SELECT id FROM deliveries WHERE leased_by IS NOT NULL")
    assert leased == [], "a lease was left to expire"
    # Every attempt sent before the exit was finished and recorded (none left mid-flight).
    attempts = sql(database_url, "SELECT count(*) AS n FROM attempts")[0].n
    assert attempts == len(receiver.requests) > 0
    assert "shutting_down" in rex.text() and "worker_stopped" in rex.text()

    # A restart delivers the rest: every acknowledged capture's event arrives.
    again = serve(procs, database_url, tmp_path, REX_CAPTURE_RATE_LIMIT="off")
    wait_until(
        lambda: (
            sql(database_url, "SELECT count(*) AS n FROM deliveries WHERE status = 'pending'")[0].n
            == 0
        ),
        timeout=60,
    )
    delivered = {r.json()["data"]["email"] for r in receiver.requests}
    assert set(acknowledged) <= delivered
    assert again.stop() == 0


def test_a_second_signal_exits_at_once(
    tmp_path: Path, receiver: Receiver, procs: list[Proc]
) -> None:
    receiver.set_default(Hang())
    database_url = f"sqlite:///{tmp_path}/rex.db"
    api = serve(procs, database_url, tmp_path, "--no-worker")
    key = first_key(api)
    with httpx.Client(base_url=api.url, headers={"X-Api-Key": key}) as client:
        client.post("/webhooks", json={"url": receiver.url(), "events": ["*"]}).raise_for_status()
        client.post("/contacts", json={"email": "hang@example.com"}).raise_for_status()
    port = free_port()
    worker = start(
        ["worker", "--http-port", str(port)],
        rex_env(database_url, REX_DELIVERY_TIMEOUT="60"),
        tmp_path / "worker.log",
        f"http://127.0.0.1:{port}/healthz",
    )
    procs.append(worker)
    receiver.wait_for(1, timeout=30)  # the attempt hangs, up to 60 s
    worker.process.send_signal(signal.SIGTERM)
    time.sleep(1)
    assert worker.process.poll() is None  # the first one waits for the attempt
    worker.process.send_signal(signal.SIGINT)
    # At once: well before the hanging attempt's 60 s timeout (a bound, not a timed assertion
    # that a loaded machine could miss).
    code = worker.process.wait(30)
    assert code == 128 + signal.SIGINT, worker.text()


def test_a_second_sigterm_stops_rex_serve_at_once(
    tmp_path: Path, receiver: Receiver, procs: list[Proc]
) -> None:
    receiver.set_default(Hang())
    database_url = f"sqlite:///{tmp_path}/rex.db"
    rex = serve(procs, database_url, tmp_path, REX_DELIVERY_TIMEOUT="60")
    with httpx.Client(base_url=rex.url, headers={"X-Api-Key": first_key(rex)}) as client:
        client.post("/webhooks", json={"url": receiver.url(), "events": ["*"]}).raise_for_status()
        client.post("/contacts", json={"email": "hang@example.com"}).raise_for_status()
    receiver.wait_for(1, timeout=30)  # the embedded worker's attempt hangs, up to 60 s
    rex.process.send_signal(signal.SIGTERM)
    time.sleep(1)
    assert rex.process.poll() is None  # the first one waits for the attempt
    rex.process.send_signal(signal.SIGTERM)
    # At once: well before the hanging attempt's 60 s timeout (a bound, not a timed assertion
    # that a loaded machine could miss).
    code = rex.process.wait(30)
    assert code == 128 + signal.SIGTERM, rex.text()

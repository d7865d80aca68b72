"""SIGTERM lets an attempt in flight finish and be recorded before the process exits."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.receiver import Receiver, Slow
from tests.support import (
    first_key_from_log,
    free_port,
    make_settings,
    rex_process,
    serve_rex,
    sql,
    stop_process,
    wait_for_http,
    wait_until,
)

ENV = {
    "REX_ALLOW_PRIVATE_DESTINATIONS": "1",
    "REX_DELIVERY_TIMEOUT": "20",
    "REX_DELIVERY_POLL_INTERVAL": "0.2",
}


def attempts(database_url: str) -> list[tuple[int | None, str | None]]:
    rows = sql(database_url, "SELECT status_code, error FROM attempts")
    return [(r.status_code, r.error) for r in rows]


def test_sigterm_to_a_worker_finishes_the_attempt_in_flight(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.set_default(Slow(3))  # well inside the 20 s timeout
    log = tmp_path / "worker.log"
    with serve_rex(make_settings(database_url), run_worker=False) as rex:
        with rex.client() as client:
            client.post("/webhooks", json={"url": receiver.url(), "events": ["*"]})
            client.post("/contacts", json={"email": "term@example.com"}).raise_for_status()
        worker = rex_process(["worker"], {**ENV, "REX_DATABASE_URL": database_url}, log)
        try:
            receiver.wait_for(1, timeout=30)  # the attempt is in flight
            assert attempts(database_url) == []
        finally:
            code = stop_process(worker)

    assert code == 0, log.read_text()
    assert attempts(database_url) == [(200, None)]
    [delivery] = sql(database_url, "SELECT status, attempt_count, leased_by FROM deliveries")
    assert (delivery.status, delivery.attempt_count, delivery.leased_by) == ("delivered", 1, None)
    assert len(receiver.requests) == 1
    assert "worker_stopped" in log.read_text()


def test_sigterm_to_rex_serve_finishes_its_embedded_workers_attempt(
    receiver: Receiver, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path}/rex.db"
    receiver.set_default(Slow(3))
    port, log = free_port(), tmp_path / "serve.log"
    serve = rex_process(
        ["serve", "--port", str(port)], {**ENV, "REX_DATABASE_URL": database_url}, log
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/healthz", serve, log)
        key = first_key_from_log(log.read_text())
        with httpx.Client(base_url=url, headers={"X-Api-Key": key.strip()}) as client:
            client.post("/webhooks", json={"url": receiver.url(), "events": ["*"]})
            client.post("/contacts", json={"email": "serve@example.com"}).raise_for_status()
        receiver.wait_for(1, timeout=30)
        assert attempts(database_url) == []
    finally:
        code = stop_process(serve)

    # A clean stop exits 0 (uvicorn would re-raise the SIGTERM: `rex serve` does not).
    assert code == 0, log.read_text()
    assert attempts(database_url) == [(200, None)]
    assert "worker_stopped" in log.read_text()


@pytest.mark.postgres
def test_sigterm_with_nothing_in_flight_exits_at_once(postgres_url: str, tmp_path: Path) -> None:
    log = tmp_path / "idle.log"
    env = {**ENV, "REX_DATABASE_URL": postgres_url, "REX_LOG_JSON": "1"}
    worker = rex_process(["worker", "--concurrency", "4"], env, log)
    try:
        wait_until(lambda: "worker_started" in log.read_text(), timeout=30)
    finally:
        code = stop_process(worker, timeout=20)
    assert code == 0, log.read_text()
    events = [json.loads(line)["event"] for line in log.read_text().splitlines() if "{" in line]
    assert events[-1] == "worker_stopped"

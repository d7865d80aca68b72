"""/metrics on `rex serve` and on `rex worker --http-port`: scraped before and after a
capture, a failing and a successful delivery, the series move; the token is enforced."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.operations.conftest import (
    Proc,
    first_key,
    rex_env,
    scrape,
    serve,
    start,
    wait_for_series,
)
from tests.receiver import Receiver
from tests.support import free_port, wait_until

TOKEN = "s3cret-scrape-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAILED_5XX = 'rex_delivery_attempts_total{outcome="http_5xx"}'
SUCCESS = 'rex_delivery_attempts_total{outcome="success"}'
ACCEPTED = 'rex_captures_total{outcome="accepted"}'
REJECTED = 'rex_captures_total{outcome="rejected"}'


def test_serve_metrics_move_with_a_capture_and_a_failing_delivery(
    tmp_path: Path, receiver: Receiver, procs: list[Proc]
) -> None:
    receiver.set_default(500)
    database_url = f"sqlite:///{tmp_path}/rex.db"
    # The first retry waits a minute: the failed delivery stays pending for the scrape.
    rex = serve(procs, database_url, tmp_path, REX_METRICS_TOKEN=TOKEN, REX_RETRY_SCHEDULE="60")
    key = first_key(rex)

    refused = httpx.get(f"{rex.url}/metrics")
    assert refused.status_code == 401
    assert refused.json()["error"]["request_id"] == refused.headers["x-request-id"]
    assert (
        httpx.get(f"{rex.url}/metrics", headers={"Authorization": "Bearer no"}).status_code == 401
    )

    before = scrape(rex.url, **AUTH)
    assert before["rex_deliveries_pending"] == 0
    assert before["rex_endpoints_disabled"] == 0
    with httpx.Client(base_url=rex.url, headers={"X-Api-Key": key}) as client:
        hook = client.post("/webhooks", json={"url": receiver.url(), "events": ["*"]})
        assert hook.status_code == 201, hook.text
        assert httpx.post(f"{rex.url}/capture", json={"email": "m@example.com"}).status_code == 201
        assert httpx.post(f"{rex.url}/capture", json={"email": "not an email"}).status_code == 422
        wait_for_series(rex.url, FAILED_5XX, before[FAILED_5XX] + 1, **AUTH)
        after = scrape(rex.url, **AUTH)
        assert after[ACCEPTED] == before[ACCEPTED] + 1
        assert after[REJECTED] == before[REJECTED] + 1
        assert after["rex_deliveries_pending"] >= 1  # contact.created waits for its retry
        assert after["rex_delivery_attempt_duration_seconds_count"] >= 1
        assert after[SUCCESS] == before[SUCCESS]
        route = 'rex_http_requests_total{method="POST",route="/capture",status="201"}'
        assert after[route] == before.get(route, 0) + 1
        assert after['rex_http_request_duration_seconds_count{route="/capture"}'] >= 2
        # Route templates, never raw paths: one series for every endpoint id.
        client.get("/webhooks/wh_01HQ3Z8W6X9Y2V4T5R7P8N0M1K")
        templated = (
            'rex_http_requests_total{method="GET",route="/webhooks/{endpoint_id}",status="404"}'
        )
        assert scrape(rex.url, **AUTH)[templated] == 1

        endpoint_id = hook.json()["data"]["id"]
        assert client.patch(f"/webhooks/{endpoint_id}", json={"enabled": False}).status_code == 200
        assert scrape(rex.url, **AUTH)["rex_endpoints_disabled"] == 1


def test_worker_http_port_serves_metrics_health_and_readiness(
    tmp_path: Path, receiver: Receiver, procs: list[Proc]
) -> None:
    database_url = f"sqlite:///{tmp_path}/rex.db"
    api = serve(procs, database_url, tmp_path, "--no-worker")
    key = first_key(api)
    with httpx.Client(base_url=api.url, headers={"X-Api-Key": key}) as client:
        client.post("/webhooks", json={"url": receiver.url(), "events": ["*"]}).raise_for_status()
        client.post("/contacts", json={"email": "w@example.com"}).raise_for_status()

    # No worker yet: the delivery is due and waits; every process reads the same backlog.
    wait_until(lambda: scrape(api.url)["rex_delivery_oldest_pending_age_seconds"] > 0.2, timeout=10)
    assert scrape(api.url)["rex_deliveries_pending"] == 1
    receiver.assert_no_requests()

    port = free_port()
    worker = start(
        ["worker", "--http-port", str(port)],
        rex_env(database_url),
        tmp_path / "worker.log",
        f"http://127.0.0.1:{port}/healthz",
    )
    procs.append(worker)
    wait_for_series(worker.url, SUCCESS, 1)
    series = scrape(worker.url)
    assert series["rex_capture_to_delivery_seconds_count"] == 1
    assert series["rex_delivery_attempt_duration_seconds_count"] == 1
    assert series["rex_deliveries_pending"] == 0
    assert series["rex_delivery_oldest_pending_age_seconds"] == 0
    assert scrape(api.url)["rex_deliveries_pending"] == 0  # the API process agrees
    ready = httpx.get(f"{worker.url}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "migrations": "ok", "worker": "ok"}
    assert worker.stop() == 0, worker.text()


def test_the_capture_to_delivery_time_is_read_from_the_event_ids_ulid() -> None:
    from ulid import ULID

    from rex.ids import new_id
    from rex.ops.metrics import _id_millis

    event_id = new_id("evt")
    expected = int(ULID.from_str(event_id.rpartition("_")[2]).datetime.timestamp() * 1000)
    assert _id_millis(event_id) == expected
    assert _id_millis(event_id.lower()) == expected
    assert _id_millis("evt_not-a-ulid") is None
    assert _id_millis("evt_" + "Z" * 26) is None  # beyond 48 bits

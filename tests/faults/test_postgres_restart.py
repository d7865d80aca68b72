"""PostgreSQL crashes (an immediate shutdown: every backend killed, no checkpoint) and comes
back while leads are being captured. During the outage `POST /capture` answers 503 with
`Retry-After` and the error envelope, never a 500, never a hang, and never a 2xx for a write
that did not commit; after recovery every acknowledged lead is stored and delivered.

It runs on a private cluster started for the test, never on the shared server."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.faults.harness import (
    ACKNOWLEDGED,
    CaptureLoad,
    PrivatePostgres,
    assert_clean_errors,
    assert_lead_promise,
    fast_env,
    report,
    rex_serve,
    rex_worker,
    running,
    subscribe,
    wait_all_delivered,
)
from tests.receiver import Receiver
from tests.support import api_key, wait_until


def outage_api_calls(url: str, key: str, idempotency_key: str) -> list[tuple[str, int, str | None]]:
    """A read, an idempotent write and the health check, while the database is down."""
    answers = []
    with httpx.Client(base_url=url, headers={"X-Api-Key": key}, timeout=30) as client:
        for method, path, kwargs in [
            ("GET", "/contacts?limit=5", {}),
            (
                "POST",
                "/contacts",
                {
                    "json": {"email": f"{idempotency_key}@example.com"},
                    "headers": {"Idempotency-Key": idempotency_key},
                },
            ),
            ("GET", "/readyz", {}),
        ]:
            response = client.request(method, path, **kwargs)
            if response.status_code != 503 or path != "/readyz":
                assert set(response.json()["error"]) >= {"type", "message"}, response.text
            answers.append(
                (f"{method} {path}", response.status_code, response.headers.get("Retry-After"))
            )
    return answers


def postgres_restart_scenario(
    cluster: PrivatePostgres,
    tmp_path: Path,
    *,
    leads_between: int,
    outages: int,
    outage_seconds: float,
) -> None:
    """An outage after every ``leads_between`` acknowledged leads; the load goes on until
    ``leads_between`` more are in after the last one (however fast the server), then stops
    taking new leads and lets the clients finish (and retry) the ones they hold."""
    env = fast_env(cluster.url)
    key = api_key(cluster.url)
    api = rex_serve(env, tmp_path / "api.log", "--no-worker")
    worker = rex_worker(env, tmp_path / "worker.log")
    with Receiver() as receiver, running(api, worker):
        assert api.url is not None
        subscribe(api.url, key, receiver.url())
        load = CaptureLoad(api.url, total=100_000, clients=4, max_seconds=60 + 30 * outages)
        load.start()
        api_recovery, delivery_recovery = [], []
        api_answers: list[tuple[str, int, str | None]] = []
        try:
            for n in range(outages):
                # Mid-load: part of the leads are in, the rest are still coming.
                wait_until(
                    lambda n=n: len(load.acknowledged()) >= leads_between * (n + 1), timeout=60
                )
                cluster.stop("immediate")
                outage_ends = time.monotonic() + outage_seconds
                api_answers += outage_api_calls(api.url, key, idempotency_key=f"outage-{n}")
                time.sleep(max(0.0, outage_ends - time.monotonic()))
                cluster.start()
                started, started_wall = time.monotonic(), time.time()
                ok_after = wait_until(
                    lambda started=started: [
                        o.at for o in load.outcomes if o.status in ACKNOWLEDGED and o.at > started
                    ],
                    timeout=60,
                )
                api_recovery.append(round(min(ok_after) - started, 2))
                delivered_after = wait_until(
                    lambda wall=started_wall: [
                        r.received_at for r in receiver.requests if r.received_at > wall
                    ],
                    timeout=60,
                )
                delivery_recovery.append(round(min(delivered_after) - started_wall, 2))
            wait_until(
                lambda: len(load.acknowledged()) >= leads_between * (outages + 1), timeout=60
            )
        finally:
            load.finish()
        # The write refused during each outage, retried with its Idempotency-Key, applies once.
        with httpx.Client(base_url=api.url, headers={"X-Api-Key": key}, timeout=30) as client:
            for n in range(outages):
                retried = client.post(
                    "/contacts",
                    json={"email": f"outage-{n}@example.com"},
                    headers={"Idempotency-Key": f"outage-{n}"},
                )
                assert retried.status_code == 201, retried.text
        wait_all_delivered(cluster.url, timeout=90)
        assert api.alive() and worker.alive(), "a Rex process died with the database"
        requests = receiver.requests

    statuses = load.statuses()
    # The authenticated API during the outage: 503 + Retry-After for reads and writes, and
    # /readyz says unavailable (/healthz is liveness: it touches no database).
    for what, status, retry_after in api_answers:
        assert status == 503, (what, status)
        assert what == "GET /readyz" or retry_after is not None, what
    assert_clean_errors(load, allowed={503})
    no_answer = [o for o in load.outcomes if o.status is None]
    assert not no_answer, f"requests without an answer (hung or dropped): {no_answer[:5]}"
    assert statuses[503] > 0, "no capture ran into the outage: the scenario did not happen"
    figures = assert_lead_promise(cluster.url, load, requests)
    # Every lead taken was acknowledged in the end: the clients retried their 503s.
    assert load.acknowledged() == load.attempted(), statuses
    report(
        "postgres restart",
        outages=outages,
        outage_s=outage_seconds,
        **figures,
        answers=dict(statuses),
        api_during_outage=sorted({f"{w} {c}" for w, c, _ in api_answers}),
        api_recovery_s=api_recovery,
        delivery_recovery_s=delivery_recovery,
    )


def test_postgres_restart_during_capture_load(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    postgres_restart_scenario(
        private_postgres, tmp_path, leads_between=130, outages=1, outage_seconds=3
    )


@pytest.mark.long
def test_postgres_restarts_during_long_capture_load(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    postgres_restart_scenario(
        private_postgres, tmp_path, leads_between=750, outages=3, outage_seconds=8
    )

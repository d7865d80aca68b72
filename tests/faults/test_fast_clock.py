"""A `rex worker` whose machine clock runs 10 minutes fast (`faketime -f +10m`) beside a
normal one, on a private PostgreSQL cluster.

Leases and due times are stored by one process and compared with "now" by another: read
from the machine's clock, the fast worker would take a lease still held by the normal one as
expired (and send the delivery a second time), and a retry due in 30 s as long due. Every
process reads the database's clock instead (rex.db.clocksync), so neither happens; the fast
worker warns about its clock in its log and in its `/readyz`, and stays ready.

Needs root and faketime (Debian's package): skips elsewhere, fails under
REX_TEST_REQUIRE_ALL=1."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx

from tests.faults.harness import (
    PrivatePostgres,
    fast_env,
    log_events,
    report,
    require_root_tools,
    rex_serve,
    rex_worker,
    running,
    subscribe,
)
from tests.receiver import ReceivedRequest, Receiver, Respond
from tests.support import api_key, free_port, sql, wait_until

FAST = ["faketime", "-f", "+10m"]


def test_a_worker_with_a_fast_clock_steals_no_lease_and_sends_nothing_early(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    require_root_tools("faketime")
    cluster = private_postgres
    env = fast_env(
        cluster.url,
        REX_LOG_JSON="1",
        # A lease far shorter than the clocks' difference, far longer than the test.
        REX_DELIVERY_TIMEOUT="60",
        REX_DELIVERY_LEASE="120",
        REX_RETRY_SCHEDULE="120,120",
    )
    key = api_key(cluster.url)
    release = threading.Event()
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def behaviour(request: ReceivedRequest) -> Respond:
        email = request.json()["data"]["email"]
        with lock:
            seen[email] = seen.get(email, 0) + 1
            first = seen[email] == 1
        if email == "leased@example.com" and first:
            # Held by the normal worker until the fast one has had its chances to steal it
            # (blocking this receiver: a stolen attempt would queue here and be counted).
            release.wait(120)
            return Respond(200)
        if email == "retried@example.com" and first:
            return Respond(500)  # its retry is due 120 s later
        return Respond(200)

    api = rex_serve(env, tmp_path / "api.log", "--no-worker")
    normal = rex_worker(env, tmp_path / "normal.log")
    fast_port = free_port()
    fast_log = tmp_path / "fast.log"
    fast = rex_worker(env, fast_log, 16, "--http-port", str(fast_port), prefix=FAST)
    with Receiver(default=behaviour) as receiver, running(api, normal):
        assert api.url is not None
        subscribe(api.url, key, receiver.url())
        # The normal worker claims the delivery and holds it (its attempt hangs).
        assert httpx.post(f"{api.url}/capture", json={"email": "leased@example.com"}).is_success
        receiver.wait_for(1, timeout=60)
        with running(fast):
            # The fast worker measured its clock (the warning comes from its first cycle,
            # which also claims), then polls a few more times while the lease is held.
            wait_until(
                lambda: any(e.get("event") == "clock_skew" for e in log_events(fast_log)),
                timeout=60,
            )
            cycles_before = time.monotonic()
            time.sleep(1.0)  # about 5 polls (REX_DELIVERY_POLL_INTERVAL=0.2)
            release.set()
            wait_until(lambda: delivery_status(cluster.url, "leased@example.com"), timeout=60)

            # A retry due in 120 s: the fast worker (whose clock says it is long due) must
            # not send it now.
            assert httpx.post(
                f"{api.url}/capture", json={"email": "retried@example.com"}
            ).is_success
            wait_until(lambda: seen.get("retried@example.com") == 1, timeout=60)
            wait_until(lambda: attempt_recorded(cluster.url, "retried@example.com"), timeout=60)
            time.sleep(2.0)  # about 10 polls of each worker
            ready = httpx.get(f"{'http://127.0.0.1'}:{fast_port}/readyz", timeout=30)
            waited = round(time.monotonic() - cycles_before, 1)
        requests = receiver.requests

    leased = [r for r in requests if r.json()["data"]["email"] == "leased@example.com"]
    retried = [r for r in requests if r.json()["data"]["email"] == "retried@example.com"]
    assert len(leased) == 1, "the fast worker stole a live lease: sent twice"
    assert len(retried) == 1, "the fast worker sent a retry before it was due"
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["clock"].startswith("warning"), ready.text
    skew = [e for e in log_events(fast_log) if e.get("event") == "clock_skew"]
    assert len(skew) == 1 and -660 < skew[0]["offset_s"] < -540, skew
    assert not [e for e in log_events(tmp_path / "normal.log") if e.get("event") == "clock_skew"]
    # The fast worker's signatures carry the database's time: within tolerance.
    for request in requests:
        timestamp = int(request.headers["webhook-timestamp"])
        assert abs(timestamp - time.time()) < 300, request.headers
    report(
        "fast clock (faketime +10m beside a normal worker)",
        measured_offset_s=skew[0]["offset_s"],
        attempts_on_leased=len(leased),
        attempts_on_retry_due_in_120s=len(retried),
        window_s=waited,
        readyz_clock=json.dumps(ready.json()["checks"]["clock"])[:60],
    )


def delivery_status(database_url: str, email: str) -> bool:
    rows = sql(
        database_url,
        "SELECT d.status FROM deliveries d JOIN events e ON e.id = d.event_id "
        "WHERE e.payload LIKE :pattern",
        pattern=f"%{email}%",
    )
    return bool(rows) and rows[0].status == "delivered"


def attempt_recorded(database_url: str, email: str) -> bool:
    rows = sql(
        database_url,
        "SELECT d.attempt_count FROM deliveries d JOIN events e ON e.id = d.event_id "
        "WHERE e.payload LIKE :pattern",
        pattern=f"%{email}%",
    )
    return bool(rows) and rows[0].attempt_count >= 1

"""PostgreSQL faults on a private cluster, with Rex as real processes (`rex serve
--no-worker` and `rex worker`):

- a silent network partition: iptables drops every packet to and from the cluster's port on
  loopback (no RST, no FIN, as when a network path dies). Captures answer 503 with
  `Retry-After` within REX_DATABASE_TIMEOUT (plus a margin) instead of hanging, and succeed
  again once the path is back, without a restart; the worker delivers everything, and
  nothing acknowledged is lost. Needs root (iptables): skips elsewhere, fails under
  REX_TEST_REQUIRE_ALL=1.
- a full disk (SQLSTATE 53100, `disk_full`): a real one is impractical to cause, so the
  cluster raises that very error from a trigger on `contacts`: captures answer 503
  `storage_full`, one warning when it starts and one when it ends.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.faults.harness import (
    ACKNOWLEDGED,
    Partition,
    PrivatePostgres,
    delivered_emails,
    fast_env,
    log_events,
    report,
    require_root_tools,
    rex_serve,
    rex_worker,
    running,
    stored_emails,
    subscribe,
    wait_all_delivered,
)
from tests.receiver import Receiver
from tests.support import api_key, sql, wait_until

TIMEOUT = 2  # REX_DATABASE_TIMEOUT for these runs
# What "within the bound" allows on top of it: a generous margin, not a measurement (the
# property is that the wait is bounded, not how fast this machine is).
MARGIN = 3.0


class Captures:
    """Captures sent one at a time by ``clients`` threads; each outcome with its wait."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acknowledged: set[str] = set()
        self.answers: list[tuple[str, int | None, float, httpx.Response | None]] = []
        self._lock = threading.Lock()

    def send(self, email: str, timeout: float = 60) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response: httpx.Response | None = httpx.post(
                f"{self.url}/capture", json={"email": email}, timeout=timeout
            )
        except httpx.HTTPError:
            response = None
        waited = time.monotonic() - started
        with self._lock:
            status = response.status_code if response is not None else None
            self.answers.append((email, status, waited, response))
            if status in ACKNOWLEDGED:
                self.acknowledged.add(email)
        return response

    def send_many(self, emails: list[str], clients: int = 3) -> None:
        pending = list(emails)
        lock = threading.Lock()

        def client() -> None:
            while True:
                with lock:
                    if not pending:
                        return
                    email = pending.pop()
                self.send(email)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)

    def until_acknowledged(self, email: str) -> None:
        """Retried (as Retry-After asks) until acknowledged; bounded."""
        wait_until(
            lambda: (r := self.send(email)) is not None and r.status_code in ACKNOWLEDGED,
            timeout=60,
            interval=0.5,
        )


def test_silent_partition_answers_503_within_the_timeout(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    require_root_tools("iptables")
    cluster = private_postgres
    env = fast_env(cluster.url, REX_DATABASE_TIMEOUT=str(TIMEOUT), REX_LOG_JSON="1")
    key = api_key(cluster.url)
    api = rex_serve(env, tmp_path / "api.log", "--no-worker")
    worker = rex_worker(env, tmp_path / "worker.log")
    with Receiver() as receiver, running(api, worker), Partition(cluster.port) as partition:
        assert api.url is not None
        subscribe(api.url, key, receiver.url())
        captures = Captures(api.url)
        captures.send_many([f"before{n}@example.com" for n in range(20)])
        assert len(captures.acknowledged) == 20, captures.answers
        time.sleep(1.5)  # pooled connections go idle (the ping on checkout is part of it)

        partition.cut()
        cut_at = len(captures.answers)
        captures.send_many([f"during{n}@example.com" for n in range(9)])
        ready = httpx.get(f"{api.url}/readyz", timeout=60)
        during = captures.answers[cut_at:]
        partition.heal()
        healed_at = time.monotonic()

        # Every lead refused during the partition, retried: acknowledged once it is over.
        for email, status, _, _ in during:
            if status not in ACKNOWLEDGED:
                captures.until_acknowledged(email)
        recovered_s = time.monotonic() - healed_at
        captures.send_many([f"after{n}@example.com" for n in range(20)])
        wait_all_delivered(cluster.url, timeout=90)
        requests = receiver.requests
        assert api.alive() and worker.alive()

    # During the partition: a 503 with Retry-After and the envelope, within the bound.
    waits = [waited for _, _, waited, _ in during]
    for email, status, waited, response in during:
        assert status == 503, (email, status, waited)
        assert response is not None and response.headers["Retry-After"] == "2"
        assert response.json()["error"]["type"] == "service_unavailable"
        assert waited <= TIMEOUT + MARGIN, f"{email} waited {waited:.1f}s"
    assert ready.status_code == 503, ready.text
    # Nothing acknowledged lost; everything stored delivered.
    stored = stored_emails(cluster.url)
    assert not [e for e, n in stored.items() if n > 1], "duplicate contacts"
    assert not captures.acknowledged - set(stored), "an acknowledged capture is not stored"
    delivered = delivered_emails(requests)
    assert not set(stored) - set(delivered), "a stored contact was never delivered"
    assert "Traceback" not in (tmp_path / "api.log").read_text()
    report(
        "silent partition (PostgreSQL, iptables DROP)",
        database_timeout_s=TIMEOUT,
        answers_during=sorted({str(s) for _, s, _, _ in during}),
        longest_wait_s=round(max(waits), 2),
        recovered_s=round(recovered_s, 2),
        acknowledged=len(captures.acknowledged),
        stored=len(stored),
        delivered=len(delivered),
    )


DISK_FULL_FUNCTION = """
CREATE FUNCTION rex_test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full';
END $$
"""
DISK_FULL_TRIGGER = """
CREATE TRIGGER rex_test_disk_full BEFORE INSERT ON contacts
  FOR EACH ROW EXECUTE FUNCTION rex_test_disk_full()
"""


def test_postgres_disk_full_answers_503_storage_full(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    cluster = private_postgres
    env = fast_env(cluster.url, REX_LOG_JSON="1")
    key = api_key(cluster.url)
    log = tmp_path / "api.log"
    api = rex_serve(env, log, "--no-worker")
    worker = rex_worker(env, tmp_path / "worker.log")
    with Receiver() as receiver, running(api, worker):
        assert api.url is not None
        subscribe(api.url, key, receiver.url())
        captures = Captures(api.url)
        captures.send_many([f"before{n}@example.com" for n in range(5)])
        sql(cluster.url, DISK_FULL_FUNCTION)
        sql(cluster.url, DISK_FULL_TRIGGER)
        refused = [captures.send(f"full{n}@example.com") for n in range(5)]
        ready = httpx.get(f"{api.url}/readyz", timeout=30)
        sql(cluster.url, "DROP TRIGGER rex_test_disk_full ON contacts")
        for n in range(5):
            captures.until_acknowledged(f"full{n}@example.com")
        wait_until(lambda: httpx.get(f"{api.url}/readyz", timeout=30).status_code == 200, 60)
        wait_all_delivered(cluster.url, timeout=60)
        requests = receiver.requests

    for response in refused:
        assert response is not None and response.status_code == 503, response
        assert response.headers["Retry-After"] == "5"
        assert response.json()["error"]["type"] == "storage_full", response.text
    assert ready.status_code == 503 and "storage" in ready.json()["checks"], ready.text
    events = log_events(log)
    assert len([e for e in events if e.get("event") == "storage_full"]) == 1
    ended = [e for e in events if e.get("event") == "storage_available"]
    assert len(ended) == 1 and ended[0]["refused"] >= 5, ended
    assert "Traceback" not in log.read_text()
    delivered = delivered_emails(requests)
    assert captures.acknowledged <= set(delivered)
    report(
        "PostgreSQL disk_full (SQLSTATE 53100 from a trigger)",
        acknowledged=len(captures.acknowledged),
        delivered=len(delivered),
        refused_503=len(refused),
        refused_logged=ended[0]["refused"],
    )

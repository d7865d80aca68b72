"""The disk under a SQLite database fills up (a 24 MiB tmpfs, filled by a file) while leads
are captured, then space is freed.

While full, every capture that needs a write answers 503 with `Retry-After` and the
`storage_full` envelope (never a 500), reads keep working, `/readyz` is not ready and says
why, `rex_storage_full` is 1. The log gets one warning when it starts and one when it ends
(with the count of refused writes), no traceback. Once space is freed captures succeed
without a restart, and every acknowledged capture is stored once and delivered; the file
passes `integrity_check`.

Needs root (mount); skips elsewhere, fails under REX_TEST_REQUIRE_ALL=1."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.faults.harness import (
    ACKNOWLEDGED,
    delivered_emails,
    fast_env,
    fill_disk,
    log_events,
    report,
    require_root_tools,
    rex_serve,
    running,
    small_disk,
    stored_emails,
    subscribe,
    wait_all_delivered,
)
from tests.receiver import Receiver
from tests.support import api_key, sql, wait_until


def metric(exposition: str, name: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def test_full_disk_under_sqlite(tmp_path: Path) -> None:
    require_root_tools("mount", "umount")
    with small_disk(24) as disk:
        database_url = f"sqlite:///{disk / 'rex.db'}"
        env = fast_env(database_url, REX_LOG_JSON="1")
        key = api_key(database_url)
        log = tmp_path / "api.log"
        api = rex_serve(env, log)
        acknowledged: set[str] = set()
        refused: list[httpx.Response] = []
        with Receiver() as receiver, running(api):
            assert api.url is not None
            subscribe(api.url, key, receiver.url())
            with httpx.Client(base_url=api.url, timeout=30) as client:

                def capture(email: str) -> httpx.Response:
                    response = client.post("/capture", json={"email": email})
                    if response.status_code in ACKNOWLEDGED:
                        acknowledged.add(email)
                    return response

                for n in range(20):
                    assert capture(f"before{n}@example.com").status_code == 201
                filler = fill_disk(disk / "filler")
                # Until the database needs a page it cannot get (the WAL may still have room
                # for a few commits): bounded in count.
                answers = []
                for n in range(400):
                    response = capture(f"full{n}@example.com")
                    answers.append(response.status_code)
                    if response.status_code == 503:
                        refused.append(response)
                        if len(refused) >= 10:
                            break
                assert len(refused) >= 10, f"the full disk refused no capture: {answers[-5:]}"
                assert set(answers) <= {*ACKNOWLEDGED, 503}, answers
                for response in refused:
                    assert response.headers["Retry-After"] == "5"
                    error = response.json()["error"]
                    assert error["type"] == "storage_full", error
                    assert "full" in error["message"].lower()
                headers = {"X-Api-Key": key}
                # Reads work; readiness and metrics say why writes do not.
                assert client.get("/contacts?limit=5", headers=headers).status_code == 200
                ready = client.get("/readyz")
                assert ready.status_code == 503, ready.text
                assert ready.json()["checks"]["storage"].startswith("full since"), ready.text
                assert metric(client.get("/metrics").text, "rex_storage_full") == 1
                assert metric(client.get("/metrics").text, "rex_storage_full_refusals_total") >= 10
                # A write of the authenticated API too: 503 storage_full, never a 500.
                contact = client.post(
                    "/contacts", json={"email": "api-full@example.com"}, headers=headers
                )
                assert contact.status_code == 503, contact.text
                assert contact.json()["error"]["type"] == "storage_full"

                filler.unlink()  # an operator frees space: no restart
                # The refused captures, retried (as their Retry-After asks), now succeed.
                retried = [f"full{n}@example.com" for n in range(len(answers))]
                for email in retried:
                    if email not in acknowledged:
                        response = wait_until(
                            lambda email=email: capture(email).status_code in ACKNOWLEDGED or None,
                            timeout=30,
                            interval=0.2,
                        )
                        assert response
                for n in range(20):
                    assert capture(f"after{n}@example.com").status_code == 201
                # Over once writes have succeeded for a few seconds with none refused (a full
                # disk flaps: a few writes fit while others do not).
                wait_until(lambda: client.get("/readyz").status_code == 200, timeout=60)
                assert metric(client.get("/metrics").text, "rex_storage_full") == 0
            wait_all_delivered(database_url, timeout=60)
            requests = receiver.requests
        # Still mounted, the server stopped: the file, and what it holds.
        assert [row[0] for row in sql(database_url, "PRAGMA integrity_check")] == ["ok"]
        stored = stored_emails(database_url)

    assert not [e for e, n in stored.items() if n > 1], "duplicate contacts"
    missing = acknowledged - set(stored)
    assert not missing, f"acknowledged captures not stored: {sorted(missing)[:5]}"
    delivered = delivered_emails(requests)
    assert not set(stored) - set(delivered), "a stored contact was never delivered"
    events = log_events(log)
    started = [e for e in events if e.get("event") == "storage_full"]
    ended = [e for e in events if e.get("event") == "storage_available"]
    assert len(started) == 1, started
    assert len(ended) == 1, ended
    assert ended[0]["refused"] >= len(refused), ended
    assert started[0]["level"] == ended[0]["level"] == "warning"
    assert "Traceback" not in log.read_text(), "a traceback was logged during the full disk"
    assert not [e for e in events if e.get("level") in ("error", "critical")], "an error logged"
    # The worker backs off quietly (at most one line), it does not log every cycle.
    assert not [e for e in events if e.get("event") == "worker_cycle_failed"]
    assert len([e for e in events if e.get("event") == "worker_paused_storage_full"]) <= 1
    report(
        "full disk (SQLite, 24 MiB tmpfs)",
        acknowledged=len(acknowledged),
        stored=len(stored),
        delivered=len(delivered),
        refused_503=len(refused),
        refused_logged=ended[0]["refused"],
        log_warnings=len(started) + len(ended),
    )

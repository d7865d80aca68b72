"""/healthz is liveness (touches nothing); /readyz checks the database, the schema's
revision and the worker's heartbeat; `rex status` reads the heartbeats and the backlog."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx

from rex.ops.health import head_revision
from tests.cli import REX
from tests.operations.conftest import Proc, first_key, rex_env, serve
from tests.receiver import Receiver
from tests.support import sql, wait_until

HEAD = head_revision()  # the newest migration this Rex ships


def status(database_url: str) -> dict:  # type: ignore[type-arg]
    result = subprocess.run(
        [REX, "status", "--json"], env=rex_env(database_url), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_readiness_follows_schema_and_heartbeat_and_status_reports_them(
    tmp_path: Path, receiver: Receiver, procs: list[Proc]
) -> None:
    database_url = f"sqlite:///{tmp_path}/rex.db"
    rex = serve(procs, database_url, tmp_path, REX_RETRY_SCHEDULE="60")
    ready = httpx.get(f"{rex.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "checks": {"database": "ok", "migrations": "ok", "worker": "ok"},
    }

    # A schema older than this Rex: not ready; liveness does not care.
    sql(database_url, "UPDATE alembic_version SET version_num = '0005'")
    behind = httpx.get(f"{rex.url}/readyz")
    assert behind.status_code == 503
    assert behind.json()["checks"]["migrations"] == f"schema at 0005, this Rex needs {HEAD}"
    assert httpx.get(f"{rex.url}/healthz").status_code == 200
    sql(database_url, "UPDATE alembic_version SET version_num = :head", head=HEAD)
    assert httpx.get(f"{rex.url}/readyz").status_code == 200

    # The embedded worker's heartbeat, as `rex status` sees it.
    report = status(database_url)
    [worker] = report["workers"]
    assert worker["kind"] == "embedded" and worker["state"] == "running"
    assert worker["last_heartbeat_age_seconds"] < 30
    assert report["schema"] == {"current": HEAD, "expected": HEAD}

    # A heartbeat gone stale (a stuck worker) makes the process not ready.
    sql(
        database_url,
        "UPDATE worker_heartbeats SET last_seen_at = '2020-01-01 00:00:00.000000'",
    )
    stale = httpx.get(f"{rex.url}/readyz")
    assert stale.status_code == 503
    assert stale.json()["checks"]["worker"].startswith("heartbeat ")
    # A worker that vanished without stopping (SIGKILL) shows as stale in `rex status`.
    sql(
        database_url,
        "INSERT INTO worker_heartbeats (worker_id, hostname, pid, kind, started_at, "
        "last_seen_at) VALUES ('gone:1', 'gone', 1, 'worker', '2020-01-01 00:00:00.000000', "
        "'2020-01-01 00:00:00.000000')",
    )
    states = {w["id"]: w["state"] for w in status(database_url)["workers"]}
    assert states["gone:1"] == "stale"
    sql(database_url, "DELETE FROM worker_heartbeats WHERE worker_id = 'gone:1'")
    # ...and the next heartbeat (every 5 s) makes it ready again.
    wait_until(lambda: httpx.get(f"{rex.url}/readyz").status_code == 200, timeout=15)

    # The backlog: one failed attempt waiting a minute, one endpoint disabled.
    key = first_key(rex)
    receiver.set_default(500)
    with httpx.Client(base_url=rex.url, headers={"X-Api-Key": key}) as client:
        client.post("/webhooks", json={"url": receiver.url(), "events": ["*"]}).raise_for_status()
        off = client.post("/webhooks", json={"url": receiver.url("/off"), "events": ["*"]})
        client.patch(f"/webhooks/{off.json()['data']['id']}", json={"enabled": False})
        client.post("/contacts", json={"email": "s@example.com"}).raise_for_status()
    receiver.wait_for(1, timeout=20)
    wait_until(lambda: sql(database_url, "SELECT 1 FROM attempts"), timeout=20)
    report = status(database_url)
    assert report["deliveries_pending"] == 1
    assert report["oldest_due_delivery_at"] is None  # its retry is not due yet
    assert report["endpoints_disabled"] == 1

    assert rex.stop() == 0, rex.text()
    [worker] = status(database_url)["workers"]
    assert worker["state"] == "stopped"
    text = subprocess.run(
        [REX, "status"], env=rex_env(database_url), capture_output=True, text=True
    )
    assert text.returncode == 0, text.stderr
    assert "deliveries pending" in text.stdout and "stopped" in text.stdout

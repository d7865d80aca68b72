"""`rex backup DEST` while Rex serves under load, then a restore into a fresh server: every
capture acknowledged before the backup started is in the copy."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from tests.cli import REX
from tests.operations.conftest import Proc, rex_env, serve
from tests.support import migrate, sql, wait_until


def test_backup_under_load_then_restore(tmp_path: Path, procs: list[Proc]) -> None:
    live = tmp_path / "live"
    live.mkdir()
    database_url = f"sqlite:///{live}/rex.db"
    rex = serve(procs, database_url, live, REX_CAPTURE_RATE_LIMIT="off")

    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(n: int) -> None:
        with httpx.Client(base_url=rex.url, timeout=15) as client:
            for i in range(2000):  # bounded: stops when told to
                if stop.is_set():
                    return
                email = f"b{n}-{i}@example.com"
                if client.post("/capture", json={"email": email}).status_code == 201:
                    with lock:
                        acknowledged.append(email)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(acknowledged) >= 50, timeout=30)
        # An endpoint: its signing secret is encrypted with the key beside the database, so
        # a backup that left the key behind would restore secrets nobody can read.
        admin = subprocess.run(
            [REX, "keys", "create", "--name", "before-backup"],
            env=rex_env(database_url),
            capture_output=True,
            text=True,
        )
        assert admin.returncode == 0, admin.stderr
        live_key = admin.stdout.strip().splitlines()[-1]
        with httpx.Client(base_url=rex.url, headers={"X-Api-Key": live_key}) as client:
            hook = client.post(
                "/webhooks", json={"url": "https://hooks.example.com/rex", "events": ["*"]}
            )
        assert hook.status_code == 201, hook.text
        endpoint_id = hook.json()["data"]["id"]
        with lock:
            before = list(acknowledged)
        dest = tmp_path / "backup.db"
        result = subprocess.run(
            [REX, "backup", str(dest)],
            env=rex_env(database_url),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert "integrity check ok" in result.stdout
        key_copy = dest.with_name(dest.name + ".key")
        assert key_copy.read_bytes() == (live / "rex.db.key").read_bytes()
        assert key_copy.stat().st_mode & 0o777 == 0o600
        wait_until(lambda: len(acknowledged) >= len(before) + 20, timeout=30)  # still serving
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert rex.stop() == 0
    again = subprocess.run(
        [REX, "backup", str(dest)], env=rex_env(database_url), capture_output=True, text=True
    )
    assert again.returncode == 2 and "already exists" in again.stderr

    # Restore: the copy becomes the database of a fresh server elsewhere.
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    shutil.copy(dest, restored_dir / "rex.db")
    shutil.copy(dest.with_name(dest.name + ".key"), restored_dir / "rex.db.key")
    restored_url = f"sqlite:///{restored_dir}/rex.db"
    made = subprocess.run(
        [REX, "keys", "create", "--name", "after-restore"],
        env=rex_env(restored_url),
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    fresh = serve(procs, restored_url, restored_dir)
    with httpx.Client(base_url=fresh.url, headers={"X-Api-Key": key}) as client:
        assert client.get("/contacts", params={"limit": 1}).status_code == 200
        # The restored secret is readable: rotating compares it with the new one.
        rotated = client.post(f"/webhooks/{endpoint_id}/rotate-secret")
        assert rotated.status_code == 200, rotated.text
    stored = {r.email for r in sql(restored_url, "SELECT email FROM contacts")}
    assert set(before) <= stored
    assert len(stored) <= len(acknowledged) + 3  # nothing the live server never stored


@pytest.mark.postgres
def test_backup_on_postgresql_runs_pg_dump(postgres_url: str, tmp_path: Path) -> None:
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed here")
    migrate(postgres_url)
    dest = tmp_path / "rex.dump"
    result = subprocess.run(
        [REX, "backup", str(dest)], env=rex_env(postgres_url), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "pg_dump" in result.stdout
    listing = subprocess.run(
        ["pg_restore", "--list", str(dest)], capture_output=True, text=True, check=True
    )
    assert "TABLE public contacts" in listing.stdout
    assert "TABLE public worker_heartbeats" in listing.stdout

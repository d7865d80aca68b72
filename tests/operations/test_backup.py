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

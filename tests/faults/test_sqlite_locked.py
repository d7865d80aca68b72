"""SQLite: another process takes the database's write lock and holds it for a few seconds
(an operator's `sqlite3` shell in a transaction, a backup tool) while leads are captured.
Captures wait for the lock (busy_timeout) or, held past it, fail cleanly with 503 and
`Retry-After`; reads keep working (WAL); afterwards the file passes `integrity_check`,
every acknowledged lead is stored once and delivered."""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.harness import (
    CaptureLoad,
    Outcome,
    assert_clean_errors,
    assert_lead_promise,
    fast_env,
    report,
    rex_serve,
    running,
    subscribe,
    wait_all_delivered,
)
from tests.receiver import Receiver
from tests.support import api_key, sql, wait_until

LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
db.execute("UPDATE workspaces SET name = name")  # a write: the lock is really taken
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
db.close()
print("released", flush=True)
"""


def hold_write_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding SQLite's write lock for ``seconds``; returns once it holds it."""
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert locker.stdout is not None
    assert locker.stdout.readline().strip() == "locked"
    return locker


def sqlite_locked_scenario(
    tmp_path: Path, *, lock_seconds: float, before: int, allowed: set[int]
) -> list[Outcome]:
    """``before`` captures are acknowledged before the lock is taken; the load goes on
    through the lock and for a moment after it (however fast the server is), then stops
    taking new leads and lets every lead it holds finish. ``allowed``: the error statuses the
    load may get. Returns the captures in flight while the file was locked."""
    path = tmp_path / "rex.db"
    database_url = f"sqlite:///{path}"
    env = fast_env(database_url)
    key = api_key(database_url)
    api = rex_serve(env, tmp_path / "api.log")
    with Receiver() as receiver, running(api):
        assert api.url is not None
        subscribe(api.url, key, receiver.url())
        load = CaptureLoad(api.url, total=100_000, clients=4, max_seconds=60 + lock_seconds)
        load.start()
        reads: list[int] = []
        try:
            wait_until(lambda: len(load.acknowledged()) >= before, timeout=60)
            locker = hold_write_lock(path, lock_seconds)
            locked_at = time.monotonic()

            def read_during_lock() -> None:
                with httpx.Client(base_url=api.url or "", headers={"X-Api-Key": key}) as client:
                    while locker.poll() is None and len(reads) < 50:
                        reads.append(client.get("/contacts?limit=5", timeout=30).status_code)
                        time.sleep(0.2)

            reader = threading.Thread(target=read_during_lock)
            reader.start()
            assert locker.wait(lock_seconds + 30) == 0
            released_at = time.monotonic()
            reader.join(30)
            time.sleep(0.5)  # captures go on after the release too
        finally:
            load.finish()
        locker.stdout.close()  # type: ignore[union-attr]
        # Captures in flight at some point while the lock was held.
        during = [o for o in load.outcomes if o.at <= released_at and o.done >= locked_at]
        wait_all_delivered(database_url, timeout=60)
        requests = receiver.requests

    assert_clean_errors(load, allowed=allowed)
    assert not [o for o in load.outcomes if o.status is None], "a capture got no answer"
    assert during, "no capture was attempted while the file was locked"
    assert reads and set(reads) == {200}, reads
    assert [row[0] for row in sql(database_url, "PRAGMA integrity_check")] == ["ok"]
    assert sql(database_url, "PRAGMA foreign_key_check") == []
    figures = assert_lead_promise(database_url, load, requests)
    # Every lead taken was acknowledged in the end: the 503s were retried after Retry-After.
    assert load.acknowledged() == load.attempted()
    waits = [round(o.done - o.at, 2) for o in during]
    report(
        f"SQLite locked {lock_seconds}s",
        **figures,
        answers=dict(load.statuses()),
        answers_while_locked=dict(collections.Counter(o.status for o in during)),
        longest_wait_s=max(waits),
        reads_while_locked=len(reads),
    )
    return during


def test_sqlite_locked_by_another_process_for_a_few_seconds(tmp_path: Path) -> None:
    """Under busy_timeout (10 s): captures wait, then succeed."""
    during = sqlite_locked_scenario(tmp_path, lock_seconds=3, before=75, allowed=set())
    # They waited for the lock (a broken busy_timeout fails fast, with 503s)...
    assert 503 not in {o.status for o in during}, [o.status for o in during]
    assert max(o.done - o.at for o in during) >= 2, "no capture waited for the lock"
    # ... and every one of them succeeded.
    assert {o.status for o in during} <= {200, 201}, [o.status for o in during]


@pytest.mark.long
def test_sqlite_locked_past_the_busy_timeout(tmp_path: Path) -> None:
    """Past busy_timeout: the waiting capture gets a clean 503 + Retry-After, nothing else."""
    sqlite_locked_scenario(tmp_path, lock_seconds=25, before=150, allowed={503})

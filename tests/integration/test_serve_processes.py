"""`rex serve`'s processes (rex.cli.children): the delivery worker beside the API on SQLite,
and `--workers N` API processes on PostgreSQL. Real `rex` processes, a real receiver."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.harness import (
    RexProcess,
    fast_env,
    rex_serve,
    running,
    subscribe,
    wait_all_delivered,
)
from tests.receiver import Receiver
from tests.support import REX_CLI, api_key, sql, temporary_postgres_database, wait_until


def children_of(pid: int) -> dict[int, list[str]]:
    """The running child processes of ``pid``: their argv, by pid."""
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return {}
    found = {}
    for child in listed:
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        found[int(child)] = argv
    return found


def worker_child(api: RexProcess) -> int:
    """The pid of `rex serve`'s delivery worker process, once it runs."""

    def find() -> int | None:
        for pid, argv in children_of(api.pid).items():
            if "worker" in argv and "--lifeline-fd" in argv:
                return pid
        return None

    return int(wait_until(find, timeout=60, interval=0.1))


def gone(pid: int) -> bool:
    """``pid`` has exited (a zombie still waiting for its parent counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def capture(url: str, emails: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for email in emails:
            response = client.post("/capture", json={"email": email})
            assert response.status_code == 201, response.text


def delivered_emails(receiver: Receiver) -> set[str]:
    return {request.json()["data"]["email"] for request in receiver.requests}


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/rex.db"


def test_sqlite_serve_delivers_from_a_worker_process_that_stops_with_it(tmp_path: Path) -> None:
    database_url = sqlite_url(tmp_path)
    key = api_key(database_url)
    api = rex_serve(fast_env(database_url), tmp_path / "api.log", "--worker", "process")
    with Receiver() as receiver, running(api):
        assert api.url is not None
        worker = worker_child(api)
        subscribe(api.url, key, receiver.url())
        emails = [f"lead{n}@example.com" for n in range(10)]
        capture(api.url, emails)
        wait_until(lambda: delivered_emails(receiver) >= set(emails), timeout=60)
        assert api.stop() == 0
    assert gone(worker)


def test_sqlite_worker_process_killed_is_restarted_and_loses_nothing(tmp_path: Path) -> None:
    database_url = sqlite_url(tmp_path)
    key = api_key(database_url)
    api = rex_serve(fast_env(database_url), tmp_path / "api.log", "--worker", "process")
    with Receiver() as receiver, running(api):
        assert api.url is not None
        first = worker_child(api)
        subscribe(api.url, key, receiver.url())
        before = [f"before{n}@example.com" for n in range(20)]
        capture(api.url, before)
        os.kill(first, signal.SIGKILL)  # mid-delivery, maybe: leases left behind
        # Captured while no worker runs: acknowledged, kept, delivered once one is back.
        during = [f"during{n}@example.com" for n in range(20)]
        capture(api.url, during)
        second = wait_until(lambda: (pid := worker_child(api)) != first and pid, timeout=60)
        assert second != first
        wait_all_delivered(database_url, timeout=90)
        assert delivered_emails(receiver) == set(before + during)
        assert "child_exited" in api.log.read_text()
    rows = sql(database_url, "SELECT count(*) AS n FROM contacts")
    assert rows[0].n == 40


def test_sqlite_worker_process_stops_when_serve_is_killed(tmp_path: Path) -> None:
    """No orphan: the lifeline pipe closes with the API process, whatever killed it."""
    database_url = sqlite_url(tmp_path)
    api = rex_serve(fast_env(database_url), tmp_path / "api.log", "--worker", "process")
    with running(api):
        worker = worker_child(api)
        api.kill()
        wait_until(lambda: gone(worker), timeout=60, interval=0.1)


def test_the_inline_worker_is_the_default(tmp_path: Path) -> None:
    """Without --worker, `rex serve` delivers from its own event loop: no child process."""
    database_url = sqlite_url(tmp_path)
    key = api_key(database_url)
    api = rex_serve(fast_env(database_url), tmp_path / "api.log")
    with Receiver() as receiver, running(api):
        assert api.url is not None
        subscribe(api.url, key, receiver.url())
        capture(api.url, ["inline@example.com"])
        wait_until(lambda: delivered_emails(receiver) == {"inline@example.com"}, timeout=60)
        assert children_of(api.pid) == {}


def test_several_api_processes_on_sqlite_are_refused(tmp_path: Path) -> None:
    env = {**os.environ, "REX_DATABASE_URL": sqlite_url(tmp_path)}
    result = subprocess.run(
        [REX_CLI, "serve", "--workers", "2"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "--workers N is for PostgreSQL" in result.stderr


@pytest.mark.postgres
def test_postgres_serve_workers_n_all_captures_delivered(
    postgres_database: str, tmp_path: Path
) -> None:
    key = api_key(postgres_database)
    api = rex_serve(fast_env(postgres_database), tmp_path / "api.log", "--workers", "2")
    with Receiver() as receiver, running(api):
        assert api.url is not None
        [other] = wait_until(
            lambda: [
                pid for pid, argv in children_of(api.pid).items() if "serve" in argv
            ] or None,
            timeout=60,
        )  # fmt: skip
        # Each capture on a connection of its own: the kernel spreads them over both.
        emails = [f"multi{n}@example.com" for n in range(40)]
        subscribe(api.url, key, receiver.url())
        for email in emails:
            capture(api.url, [email])
        wait_all_delivered(postgres_database, timeout=90)
        assert delivered_emails(receiver) == set(emails)
        assert api.stop() == 0
    assert gone(other)


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    with temporary_postgres_database(postgres_url) as url:
        yield url


def test_a_child_that_keeps_dying_is_given_up_on_loudly() -> None:
    """`rex serve` stops (exit 1) rather than serve on without its worker (the threshold is
    lowered here: the default is five deaths within a minute)."""
    from rex.cli.children import Child, Children

    async def scenario() -> tuple[str | None, list[str]]:
        gave_up: list[str] = []
        stopped = asyncio.Event()

        def give_up(reason: str) -> None:
            gave_up.append(reason)
            stopped.set()

        children = Children(
            [Child("worker", ["no-such-command"])],
            on_give_up=give_up,
            max_crashes=2,
            crash_window=600,
        )
        children.start()
        await asyncio.wait_for(stopped.wait(), timeout=120)
        await children.stop(10)
        return children.failed, gave_up

    failed, gave_up = asyncio.run(scenario())
    assert failed is not None and "worker process exited 2 times" in failed
    assert gave_up == [failed]

"""Test support: Rex served for real on 127.0.0.1, and direct database access for checks."""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from aiohttp.abc import AbstractResolver, ResolveResult

from rex.app import create_app
from rex.clock import Clock
from rex.db.engine import Database
from rex.db.schema import metadata
from rex.runtime import runtime_of
from rex.settings import Settings
from rex.worker.transport import Transport
from rex.workspaces import service as workspaces

POSTGRES_URL = os.environ.get("REX_TEST_POSTGRES_URL")
POSTGRES_SKIP_REASON = (
    "REX_TEST_POSTGRES_URL is not set, so the PostgreSQL half of the suite is skipped "
    "(.ci/run sets it to the local server)"
)

REQUIRE_ALL = os.environ.get("REX_TEST_REQUIRE_ALL") == "1"


def missing(reason: str) -> NoReturn:
    """Skip a test whose prerequisite (Node, Chromium, initdb, IPv6, the shared seeds,
    PostgreSQL) is missing here; with ``REX_TEST_REQUIRE_ALL=1`` (``.ci/run`` sets it) fail
    instead, so that CI cannot pass while leaving part of the suite unrun."""
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (REX_TEST_REQUIRE_ALL=1: required here)", pytrace=False)
    pytest.skip(reason)


# Fast retries so tests see the whole schedule in about a second. The delivery timeout is long
# on purpose: an attempt to a receiver on 127.0.0.1 never needs it, so a stall of the machine
# (or of this process, where the server runs in a thread) can delay an outcome but never change
# it. A test about timeouts sets a timeout of its own and makes the receiver Hang().
FAST = {
    "retry_schedule": (0.2, 0.2, 0.2),
    "retry_jitter": 0.0,
    "delivery_poll_interval": 0.2,
    "delivery_timeout": 30.0,
    "delivery_lease": 60.0,  # longer than the timeout, or an attempt in flight is sent twice
    "allow_private_destinations": True,
    # Every test client is 127.0.0.1: tests about capture limits set their own.
    "capture_rate_limit": "off",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(coro: Any) -> Any:
    """Run a coroutine from a synchronous test."""
    return asyncio.run(coro)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values = {**FAST, "database_url": database_url, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def _sql(database_url: str, statement: str, params: dict[str, Any] | None) -> list[Any]:
    db = Database(database_url, pool_size=1)
    # A check reads: a snapshot, not a write unit (on SQLite that took the write lock and an
    # fsync'd commit on every poll of a waiting test, beside the server under test).
    reads = statement.lstrip().split(None, 1)[0].upper() in {"SELECT", "WITH", "EXPLAIN"}
    try:
        async with db.read() if reads else db.transaction() as conn:
            result = await conn.execute(sa.text(statement), params or {})
            return list(result.all()) if result.returns_rows else []
    finally:
        await db.close()


def sql(database_url: str, statement: str, **params: Any) -> list[Any]:
    """Run one SQL statement against the test database (for checks, not for set-up)."""
    return run(_sql(database_url, statement, params))  # type: ignore[no-any-return]


async def _migrate_and_key(database_url: str, slug: str) -> str:
    db = Database(database_url, pool_size=1)
    try:
        await db.migrate()
        async with db.transaction() as conn:
            if slug == workspaces.DEFAULT_SLUG:
                workspace, _ = await workspaces.ensure_default_workspace(conn)
            else:
                workspace = await workspaces.get_by_slug(conn, slug) or (
                    await workspaces.create_workspace(conn, slug)
                )
            return (await workspaces.create_api_key(conn, workspace.id, "test"))[1]
    finally:
        await db.close()


def api_key(database_url: str, workspace: str = workspaces.DEFAULT_SLUG) -> str:
    """A fresh API key for ``workspace`` (created if needed)."""
    return run(_migrate_and_key(database_url, workspace))  # type: ignore[no-any-return]


@dataclass
class RexServer:
    url: str
    settings: Settings
    key: str

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"X-Api-Key": key or self.key}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def key_for(self, workspace: str) -> str:
        return api_key(self.database_url, workspace)


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``REX_*`` environment of a ``rex`` process."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"REX_{name.upper()}"] = str(value)
    return env


@contextmanager
def serve_rex_process(settings: Settings, *, run_worker: bool = True) -> Iterator[RexServer]:
    """Serve Rex as a separate ``rex serve`` process (with ``settings``), for the tests whose
    outcome depends on time: nothing this test process does (its threads, its garbage
    collections) can stall that server's event loop. Its log is appended to a temporary
    file, shown if it does not start."""
    key = api_key(settings.database_url)
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="rex-serve-"))
    log = workdir / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REX_")}
    args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as out:
        process = subprocess.Popen(
            [REX_CLI, *args, *([] if run_worker else ["--no-worker"])],
            env={**env, **settings_env(settings)},
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/healthz", process, log)
        yield RexServer(url=url, settings=settings, key=key)
    finally:
        stop_process(process)


@contextmanager
def serve_rex(
    settings: Settings,
    *,
    run_worker: bool = True,
    transport: Transport | None = None,
    clock: Clock | None = None,
) -> Iterator[RexServer]:
    """Serve Rex with uvicorn in a thread on a free 127.0.0.1 port (its worker sending with
    ``transport``, e.g. an ``AiohttpTransport`` with a ``StubResolver``; the app and worker
    telling the time by ``clock``, e.g. a ``ShiftedClock``)."""
    key = api_key(settings.database_url)
    port = free_port()
    app = create_app(settings, run_worker=run_worker, transport=transport, clock=clock)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        proxy_headers=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    probe_dir = os.environ.get("REX_TEST_LOOP_PROBE")
    target = (lambda: asyncio.run(_probed(server, Path(probe_dir)))) if probe_dir else server.run
    thread = threading.Thread(target=target, name=f"rex-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("Rex did not start")
        time.sleep(0.02)
    try:
        yield RexServer(url=f"http://127.0.0.1:{port}", settings=settings, key=key)
    finally:
        # End `rex listen` streams, as `rex serve` does.
        runtime_of(app).listen_hub.close_threadsafe()
        server.should_exit = True
        thread.join(timeout=30)


async def _probed(server: uvicorn.Server, directory: Path) -> None:
    """Serve with a loop-lag probe (``REX_TEST_LOOP_PROBE=<dir>``, for investigating stalls):
    asyncio's slow-callback log (with ``REX_TEST_LOOP_DEBUG=1``), every garbage collection
    over 0.1 s, a lag line for every tick late by more than 0.2 s, a
    heartbeat file an outside watcher (``py-spy dump``) can poll, and faulthandler's dump of
    every thread's stack when the loop has not ticked for 1 s (that needs no GIL)."""
    import faulthandler
    import logging

    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a diagnostic, on purpose)
    loop = asyncio.get_running_loop()
    if os.environ.get("REX_TEST_LOOP_DEBUG"):  # asyncio's debug mode: slower, more garbage
        loop.set_debug(True)
        loop.slow_callback_duration = 0.2
    log = (directory / "lag.log").open("a", buffering=1)
    handler = logging.FileHandler(directory / "asyncio.log")
    logging.getLogger("asyncio").addHandler(handler)
    heartbeat = directory / f"heartbeat.{os.getpid()}"

    async def probe() -> None:
        tick = 0.05
        while True:
            before = loop.time()
            faulthandler.dump_traceback_later(1.0, file=log)
            await asyncio.sleep(tick)
            lag = loop.time() - before - tick
            heartbeat.write_text(f"{time.time()}")
            if lag > 0.2:
                test = os.environ.get("PYTEST_CURRENT_TEST", "?")
                log.write(f"{time.time():.3f} lag {lag:.3f}s in {test}\n")

    import gc

    started: list[float] = []

    def gc_timer(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started and time.perf_counter() - started[0] > 0.1:
            took = time.perf_counter() - started[0]
            tracked = len(gc.get_objects())
            log.write(
                f"{time.time():.3f} gc gen {info['generation']} took {took:.3f}s"
                f" ({tracked} objects tracked)\n"
            )

    gc.callbacks.append(gc_timer)
    task = asyncio.create_task(probe())
    try:
        await server.serve()
    finally:
        gc.callbacks.remove(gc_timer)
        task.cancel()
        faulthandler.cancel_dump_traceback_later()
        heartbeat.unlink(missing_ok=True)
        logging.getLogger("asyncio").removeHandler(handler)
        handler.close()
        log.close()


async def _create_database(admin_url: str, name: str) -> None:
    import asyncpg

    from rex.db.engine import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(admin_url: str, name: str) -> None:
    import asyncpg

    from rex.db.engine import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextmanager
def temporary_postgres_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``admin_url``; dropped afterwards."""
    name = f"rex_test_{uuid.uuid4().hex[:12]}"
    run(_create_database(admin_url, name))
    try:
        yield str(sa.make_url(admin_url).set(database=name).render_as_string(False))
    finally:
        run(_drop_database(admin_url, name))


async def _migrate(database_url: str) -> None:
    db = Database(database_url, pool_size=1)
    try:
        await db.migrate()
    finally:
        await db.close()


def migrate(database_url: str) -> None:
    run(_migrate(database_url))


async def _empty_all(database_url: str) -> None:
    import asyncpg

    from rex.db.engine import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        # A server shared by a module may still be writing (a worker recording an attempt)
        # while the rows are emptied: PostgreSQL can pick this transaction as a deadlock's
        # victim. It is then rolled back whole; empty again (bounded).
        for attempt in range(5):
            try:
                async with conn.transaction():
                    for table in reversed(metadata.sorted_tables):  # children first
                        await conn.execute(f'DELETE FROM "{table.name}"')
                return
            except asyncpg.exceptions.DeadlockDetectedError:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await conn.close()


def truncate_all(database_url: str) -> None:
    """Empty every table of the test database, keeping its schema (and ``alembic_version``).

    ``DELETE``, children first, in one transaction: the tables of a test hold a few rows, and
    on PostgreSQL a ``TRUNCATE`` of every table (new files for each, and an exclusive lock)
    took 0.6-0.9 s on a loaded machine where this takes 0.07 s; it runs before every
    PostgreSQL test. A server may keep running on the database meanwhile."""
    url = sa.make_url(database_url)
    if url.get_backend_name() != "sqlite":
        run(_empty_all(database_url))
        return
    conn = sqlite3.connect(str(url.database), timeout=30)
    try:
        with conn:  # one transaction
            for table in reversed(metadata.sorted_tables):
                conn.execute(f'DELETE FROM "{table.name}"')
    finally:
        conn.close()


_SQLITE_TEMPLATE: Path | None = None


def migrated_sqlite_file(path: Path) -> Path:
    """Put a migrated, empty SQLite database at ``path`` (0600, folder 0700), as the first
    ``rex`` command would leave it: a copy of one migrated for this test process, so that
    each test does not run every migration again (0.5-1 s a test on a loaded machine)."""
    global _SQLITE_TEMPLATE
    if _SQLITE_TEMPLATE is None:
        folder = tempfile.mkdtemp(prefix="rex-template-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        template = Path(folder) / "rex.db"
        migrate(f"sqlite:///{template}")
        with sqlite3.connect(template) as conn:  # everything in the main file, for the copy
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        _SQLITE_TEMPLATE = template
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copyfile(_SQLITE_TEMPLATE, path)
    path.chmod(0o600)
    return path


def wait_until(predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with a clear message."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)


class StubResolver(AbstractResolver):
    """Answers from a fixed table (which a test may change); unknown names fail like
    NXDOMAIN. Tests use it instead of DNS: no query ever leaves the machine."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        self.closed = True


REX_CLI = str(Path(sys.executable).with_name("rex"))


def rex_process(
    args: list[str], env: dict[str, str], log: Path, prefix: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """Start the real ``rex`` command with ``env`` added to this environment, its output
    appended to ``log``; ``prefix``: a command it runs under (``faketime -f +10m``). Stop it
    with ``stop_process``."""
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [*prefix, REX_CLI, *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_process(process: subprocess.Popen[bytes], timeout: float = 40) -> int:
    """SIGTERM (if still running), wait, and return the exit code; SIGKILL if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        raise


def wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``url`` answers 200 (the process must stay alive meanwhile)."""

    def ready() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(url, timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, timeout=30, interval=0.1)


def first_key_from_log(log_text: str) -> str:
    """The first API key `rex serve` made: not in its log (that is not a terminal), but in the
    0600 file the log names."""
    import re

    match = re.search(r"it is in (\S+) \(mode 0600\)", log_text)
    assert match, log_text
    path = Path(match.group(1))
    assert path.stat().st_mode & 0o777 == 0o600
    [line] = [ln for ln in path.read_text().splitlines() if "REX_API_KEY=" in ln]
    assert line.split("=", 1)[1].strip() not in log_text
    return line.split("=", 1)[1].strip()


def stored_contact(rex: RexServer, capture_response: httpx.Response) -> dict[str, Any]:
    """The contact a capture wrote, read with the API key: /capture's own answer only
    echoes the request and the id (it never reads a stored value back)."""
    contact_id = capture_response.json()["data"]["id"]
    with rex.client() as client:
        response = client.get(f"/contacts/{contact_id}")
        response.raise_for_status()
        data: dict[str, Any] = response.json()["data"]
        return data

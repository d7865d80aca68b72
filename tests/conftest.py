"""Fixtures shared by every test level.

Integration tests that take ``database_url`` (or ``rex``) run twice: on a real SQLite file
and on a real PostgreSQL database created for the session from ``REX_TEST_POSTGRES_URL``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import settings as hypothesis_settings

from tests.support import (
    POSTGRES_SKIP_REASON,
    POSTGRES_URL,
    RexServer,
    api_key,
    make_settings,
    migrate,
    migrated_sqlite_file,
    missing,
    serve_rex,
    temporary_postgres_database,
    truncate_all,
)

pytest_plugins = ["tests.receiver"]

# No per-example deadline (Hypothesis' default is 200 ms): on a loaded machine a slow example
# says nothing about the property under test. (tests/integration/bad_input.py has its own.)
hypothesis_settings.register_profile("rex", deadline=None)
hypothesis_settings.load_profile("rex")


# A Rex served in this process logs through structlog's default set-up unless a test ran
# `rex`'s own configure_logging. That default renders a traceback with rich, every frame's
# local variables included: one unhandled error took over 25 s of the server's event loop.
# `rex serve` renders plain tracebacks (rex.logging); so do the tests.
structlog.configure(
    processors=[
        *structlog.get_config()["processors"][:-1],
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
    ]
)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move everything imported and collected so far out of the garbage collector's sight. A
    full collection holds the GIL, so it stalls every Rex served in a thread of this process;
    its cost grows with the objects it scans (a probe saw 0.7-1.2 s on a loaded machine)."""
    gc.collect()
    gc.freeze()


def _children(pid: int) -> list[tuple[int, str]]:
    """This machine's processes whose parent is ``pid`` (Linux /proc), with their names."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, _, rest = stat.rpartition(")")
        fields = rest.split()
        if len(fields) > 1 and fields[1] == str(pid) and fields[0] != "Z":
            found.append((int(entry.name), name.partition("(")[2]))
    return found


def pytest_sessionfinish(session: pytest.Session) -> None:
    """No process a test started outlives the run. A server whose test failed before stopping
    it would otherwise keep running (and keep a loaded machine loaded) after its test; the
    fixtures stop theirs in ``finally``, and this reports and ends any that still escaped.
    Not in the xdist controller: its children are the workers, which end on their own."""
    if getattr(session.config, "workerinput", None) is None and session.config.getoption(
        "numprocesses", None
    ):
        return
    if not Path("/proc").is_dir():
        return
    for pid, name in _children(os.getpid()):
        print(f"\ntests: ending pid {pid} ({name}), left running by a test", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL database for this test session (skips without a server)."""
    if not POSTGRES_URL:
        missing(POSTGRES_SKIP_REASON)
    with temporary_postgres_database(POSTGRES_URL) as url:
        migrate(url)
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        # Migrated already, as the PostgreSQL database is (a copy of a template file).
        return f"sqlite:///{migrated_sqlite_file(tmp_path / 'rex.db')}"
    url: str = request.getfixturevalue("postgres_url")
    truncate_all(url)
    return url


@pytest.fixture
def rex(database_url: str) -> Iterator[RexServer]:
    """Rex served on 127.0.0.1 with its delivery worker and fast retries."""
    with serve_rex(make_settings(database_url)) as server:
        yield server


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def _module_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RexServer]:
    if request.param == "sqlite":
        path = migrated_sqlite_file(tmp_path_factory.mktemp("shared") / "rex.db")
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_url")
    with serve_rex(make_settings(url)) as server:
        yield server


@pytest.fixture
def shared_rex(_module_server: RexServer) -> RexServer:
    """Like ``rex`` (both backends, default settings, an empty database and a key of the
    default workspace), but one server for the whole module: building the app is most of a
    test's cost (docs/testing.md). The database is emptied before each test, with the server
    running. For tests that use only the API (no capture: the server's workspace cache and
    capture rate limits live across tests), change no settings, and never stop the server.
    A module opts in with ``@pytest.fixture def rex(shared_rex): return shared_rex``."""
    url = _module_server.database_url
    truncate_all(url)
    return RexServer(url=_module_server.url, settings=_module_server.settings, key=api_key(url))

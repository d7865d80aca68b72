"""Fixtures of the console's browser tests: see ``tests/console/harness.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.console.harness import (
    ConsolePage,
    ConsoleServer,
    chromium,
    console_page,
    find_chromium,
    serve_console,
)
from tests.support import (
    POSTGRES_SKIP_REASON,
    POSTGRES_URL,
    missing,
    temporary_postgres_database,
)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``REX_TEST_ARTIFACTS`` (kept by CI) or a tmp folder."""
    chosen = os.environ.get("REX_TEST_ARTIFACTS")
    folder = Path(chosen) / "console" if chosen else tmp_path_factory.mktemp("console-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def console(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleServer]:
    """One `rex serve` per backend for every console test (they are isolated by workspace
    and user): on a SQLite file, and on a PostgreSQL database of its own (never the admin
    database, nor the session's shared one, which other tests empty)."""
    folder = tmp_path_factory.mktemp(f"console-server-{request.param}")
    if request.param == "sqlite":
        with serve_console(folder) as server:
            yield server
        return
    if not POSTGRES_URL:
        missing(POSTGRES_SKIP_REASON)
    with own_postgres_database(POSTGRES_URL) as url, serve_console(folder, url) as server:
        yield server


@contextmanager
def own_postgres_database(admin_url: str) -> Iterator[str]:
    """``temporary_postgres_database``, created and dropped in a thread of its own: this
    fixture may start while a module's Chromium runs (Playwright's sync API keeps an event
    loop in this thread, and ``asyncio.run`` refuses to start beside it)."""
    manager = temporary_postgres_database(admin_url)
    with ThreadPoolExecutor(1) as pool:
        url = pool.submit(manager.__enter__).result(timeout=120)
    try:
        yield url
    finally:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(manager.__exit__, None, None, None).result(timeout=120)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per test module. Not per session: Playwright's sync API keeps an event
    loop running in this thread while it is open, and any later test calling asyncio.run
    (most of the suite's helpers do) would fail."""
    if find_chromium() is None:
        missing("Chromium not found (Debian: apt-get install chromium; .ci/run installs it)")
    with chromium() as launched:
        yield launched


@pytest.fixture
def owner(
    console: ConsoleServer, browser: Browser, artifacts: Path, request: pytest.FixtureRequest
) -> Iterator[ConsolePage]:
    """A new workspace, its owner signed in, in a browser context of its own."""
    workspace = console.create_workspace()
    email, password = console.create_user(workspace=workspace, role="owner")
    with console_page(console, browser, artifacts, request.node.name) as tab:
        tab.workspace, tab.email = workspace, email
        tab.sign_in(email, password)
        yield tab

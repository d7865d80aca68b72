"""The console's browser harness: one real ``rex serve`` and one Chromium for the whole test
session, users made with the real ``rex users create``, and pages that record every request
(all must go to Rex), screenshot what they show, and run axe-core on it.

Fixtures (``tests/console/conftest.py``): ``console`` (the server, one per session and
backend: every browser test runs on SQLite and on PostgreSQL),
``browser`` (Chromium, one per module: see its docstring),
``owner`` (a signed-in owner's ``ConsolePage`` in a new workspace of its own, fresh per test),
``artifacts`` (the screenshot folder: ``REX_TEST_ARTIFACTS`` or a tmp folder).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import Browser, BrowserContext, Page, Request, sync_playwright

from rex.db.engine import Database
from rex.workspaces import service as workspaces
from tests.cli import FAST_ENV, REX
from tests.support import free_port, wait_until

AXE = Path(__file__).parent / "vendor" / "axe.min.js"

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Any name but 127.0.0.1 fails to resolve inside the browser: no DNS query ever leaves.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def find_chromium() -> str | None:
    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class ConsoleServer:
    """A real ``rex serve`` on 127.0.0.1, and the real CLI on its database."""

    url: str
    database_url: str
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes]

    def rex(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [REX, *args], env=self.env, input=stdin, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def create_workspace(self, slug: str | None = None) -> str:
        """A new workspace (made in-process: the CLI's own tests cover `rex workspaces`)."""
        slug = slug or unique("ws")

        async def make(conn: Any) -> None:
            await workspaces.create_workspace(conn, slug)

        self._in_db(make)
        return slug

    def _in_db(self, work: Any) -> Any:
        async def go() -> Any:
            db = Database(self.database_url, pool_size=1)
            try:
                async with db.transaction() as conn:
                    return await work(conn)
            finally:
                await db.close()

        # In a thread of its own: Playwright's sync API keeps an event loop in this one.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result(timeout=120)

    def create_user(
        self, email: str | None = None, *, workspace: str = "default", role: str = "owner"
    ) -> tuple[str, str]:
        """``(email, one-time password)`` of a new user (the password: stdout's last line)."""
        email = email or f"{unique('user')}@example.com"
        out = self.rex("users", "create", email, "--workspace", workspace, "--role", role)
        return email, out.stdout.strip().splitlines()[-1]

    def api_key(self, workspace: str = "default") -> str:
        """A new API key of ``workspace`` (made in-process, like ``rex keys create``)."""

        async def make(conn: Any) -> str:
            found = await workspaces.get_by_slug(conn, workspace)
            assert found is not None, workspace
            _, key = await workspaces.create_api_key(conn, found.id, "console tests")
            return key

        key: str = self._in_db(make)
        return key

    def api(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-Api-Key": key}, timeout=30)


@contextmanager
def serve_console(
    tmp: Path, database_url: str | None = None, **env: str
) -> Iterator[ConsoleServer]:
    """``rex serve`` (API, console and worker) on ``database_url``, a SQLite file in ``tmp``
    unless given."""
    port = free_port()
    database_url = database_url or f"sqlite:///{tmp / 'console.db'}"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REX_")}
    full_env.update(FAST_ENV)
    full_env.update({"REX_DATABASE_URL": database_url, "REX_CAPTURE_RATE_LIMIT": "off", **env})
    subprocess.run([REX, "migrate"], env=full_env, check=True, capture_output=True, timeout=120)
    log = tmp / "serve.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [REX, "serve", "--port", str(port)],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, timeout=180, interval=0.1)  # a loaded machine starts it slowly
        yield ConsoleServer(url, database_url, full_env, log, process)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@contextmanager
def chromium() -> Iterator[Browser]:
    executable = find_chromium()
    assert executable is not None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class ConsolePage:
    """A browser tab on the console, in a context (cookies) of its own.

    ``visit(path)`` opens a page, screenshots it and checks it with axe-core; ``requests``
    holds every URL any page of the context asked for (``assert_only_rex`` checks them)."""

    server: ConsoleServer
    context: BrowserContext
    page: Page
    artifacts: Path
    name: str
    workspace: str = "default"
    email: str = ""
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    shots: int = 0

    def url(self, path: str) -> str:
        return self.server.url + path

    def visit(self, path: str, *, check: bool = True) -> Any:
        response = self.page.goto(self.url(path))
        self.page.wait_for_load_state("load")
        self.screenshot()
        if check and response is not None and response.status < 400:
            self.check_accessibility()
        return response

    def screenshot(self, label: str | None = None) -> Path:
        self.shots += 1
        slug = label or re.sub(r"[^a-z0-9]+", "-", urlsplit(self.page.url).path.lower()).strip("-")
        path = self.artifacts / f"{self.name}-{self.shots:02d}-{slug or 'page'}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def check_accessibility(self) -> None:
        """axe-core on the page as it is: no serious or critical violation."""
        if not self.page.evaluate("() => typeof window.axe !== 'undefined'"):
            self.page.evaluate(AXE.read_text())
        result = self.page.evaluate(
            "async () => { const r = await axe.run(document); return r.violations.map("
            "v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.html)})) }"
        )
        bad = [v for v in result if v["impact"] in ("serious", "critical")]
        assert not bad, f"axe-core on {self.page.url}: {bad}"

    def sign_in(self, email: str, password: str) -> None:
        self.visit("/console/login")
        self.page.get_by_label("Email").fill(email)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_load_state("load")

    def assert_only_rex(self) -> None:
        """No request left for another host than Rex's (the page works offline)."""
        origin = urlsplit(self.server.url).netloc
        foreign = [
            u
            for u in self.requests
            if urlsplit(u).scheme in ("http", "https", "ws", "wss") and urlsplit(u).netloc != origin
        ]
        assert not foreign, foreign
        assert self.requests, "the page asked for nothing at all?"


@contextmanager
def console_page(
    server: ConsoleServer, browser: Browser, artifacts: Path, name: str
) -> Iterator[ConsolePage]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    tab = ConsolePage(server, context, page, artifacts, name)

    def on_request(request: Request) -> None:
        tab.requests.append(request.url)

    def on_dialog(dialog: Any) -> None:
        tab.dialogs.append(dialog.message)
        dialog.dismiss()

    context.on("request", on_request)
    page.on("dialog", on_dialog)
    try:
        yield tab
        tab.assert_only_rex()
    finally:
        context.close()


def wait_for_text(page: Page, text: str, timeout: float = 15) -> None:
    """Until the page shows ``text`` (bounded; the page is not reloaded)."""
    wait_until(lambda: text in page.content(), timeout=timeout, interval=0.2)


def docs_screenshot(tab: ConsolePage, name: str) -> None:
    """With ``REX_DOCS_SCREENSHOTS=docs/images``, the pictures the docs show are made from
    this run (``docs/images/<name>.png``)."""
    folder = os.environ.get("REX_DOCS_SCREENSHOTS")
    if folder:
        shutil.copy(tab.screenshot(name), Path(folder) / f"{name}.png")

"""/docs and /redoc render in Chromium from assets Rex ships: every request the page makes
goes to Rex (the browser cannot resolve any other name, and each request is recorded)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Request, sync_playwright

from tests.acceptance.test_embed_browser import CHROMIUM, CHROMIUM_ARGS
from tests.support import RexServer, make_settings, serve_rex

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium not found (Debian: apt-get install chromium; .ci/run installs it)",
)


@pytest.fixture
def rex(tmp_path: Path) -> Iterator[RexServer]:
    with serve_rex(make_settings(f"sqlite:///{tmp_path}/rex.db")) as server:
        yield server


@pytest.fixture
def browser(rex: RexServer) -> Iterator[Browser]:
    # After `rex` (Playwright's sync API keeps an event loop running on this thread).
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _render(browser: Browser, url: str, ready_selector: str) -> tuple[list[str], list[str]]:
    requests: list[str] = []
    failed: list[str] = []
    context = browser.new_context()
    page = context.new_page()

    def record(request: Request) -> None:
        requests.append(request.url)

    page.on("request", record)
    page.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))
    try:
        page.goto(url)
        page.wait_for_selector(ready_selector, timeout=30_000)
        page.wait_for_load_state("networkidle")
    finally:
        context.close()
    return requests, failed


def test_swagger_ui_renders_offline(rex: RexServer, browser: Browser) -> None:
    requests, failed = _render(browser, f"{rex.url}/docs", "text=/capture")
    assert failed == []
    assert requests and all(r.startswith(rex.url + "/") for r in requests), requests
    assert f"{rex.url}/openapi.json" in requests
    assert any("/docs-assets/swagger-ui/swagger-ui-bundle.js" in r for r in requests)


def test_redoc_renders_offline(rex: RexServer, browser: Browser) -> None:
    requests, failed = _render(browser, f"{rex.url}/redoc", "text=Authentication")
    # ReDoc's sidebar logo (cdn.redoc.ly, no option hides it) is blocked by the page's
    # Content-Security-Policy inside the browser: it never reaches the network.
    requests = [r for r in requests if not r.startswith("https://cdn.redoc.ly/redoc/logo-")]
    assert all(
        f.startswith("https://cdn.redoc.ly/redoc/logo-") and f.endswith(" csp") for f in failed
    ), failed
    assert requests and all(r.startswith(rex.url + "/") for r in requests), requests
    assert any("/docs-assets/redoc/redoc.standalone.js" in r for r in requests)

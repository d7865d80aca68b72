"""The two form snippets of docs/capture.md, submitted by a real browser (headless Chromium).

A page server on 127.0.0.1 plays the customer's site (its own origin) and serves the
snippets exactly as docs/capture.md prints them, with only the two example addresses replaced.
Chromium is Debian's ``chromium`` package driven by Playwright (never a downloaded browser);
it may resolve no name but 127.0.0.1, so nothing leaves the machine.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support import RexServer, missing, wait_until

CAPTURE_PAGE = Path(__file__).resolve().parents[2] / "docs" / "capture.md"
EXAMPLE_REX = "https://acme.rexgtm.com"
EXAMPLE_SITE = "https://www.acme.com"


def _find_chromium() -> str | None:
    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


CHROMIUM = _find_chromium()


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    if CHROMIUM is None:
        missing("Chromium not found (Debian: apt-get install chromium; .ci/run installs it)")


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


def capture_page_snippets() -> tuple[str, str]:
    """The plain form and the embed snippet, in the order docs/capture.md shows them."""
    page = CAPTURE_PAGE.read_text()
    plain, embed = re.findall(r"```html\n(.*?)```", page, flags=re.DOTALL)[:2]
    return plain, embed


def page_html(snippet: str, rex_url: str, site: str, *, head: str = "") -> str:
    form = snippet.replace(EXAMPLE_REX, rex_url).replace(EXAMPLE_SITE, site)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'>{head}<title>Landing</title></head>"
        f"<body><h1>Spring launch</h1>{form}</body></html>"
    )


@contextmanager
def site_server(pages: dict[str, str]) -> Iterator[str]:
    """The customer's website: ``pages`` by path (query strings ignored), on 127.0.0.1."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(urlsplit(self.path).path)
            if body is None:
                self.send_error(404)
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def contact(rex: RexServer, email: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        with rex.client() as client:
            found = client.get("/contacts", params={"email": email}).json()["data"]
        return found[0] if found else None

    result: dict[str, Any] = wait_until(find, timeout=30)
    return result


def fill_and_send(page: Page, email: str, first_name: str) -> None:
    page.fill("input[name=email]", email)
    page.fill("input[name=first_name]", first_name)
    page.check("input[name=consent]")
    page.click("button[type=submit]")


def test_capture_page_forms_capture_leads_with_attribution_in_chromium(rex: RexServer) -> None:
    plain, embed = capture_page_snippets()
    pages: dict[str, str] = {"/thanks": "<!doctype html><title>Thanks</title><p>Thanks page</p>"}
    with site_server(pages) as site, site_server(pages) as other_site, chromium() as browser:
        pages["/landing"] = page_html(embed, rex.url, site)
        pages["/contact"] = page_html(embed, rex.url, site)
        pages["/plain"] = page_html(
            plain,
            rex.url,
            site,
            head='<meta name="referrer" content="no-referrer-when-downgrade">',
        )
        with rex.client() as client:
            client.patch("/workspace", json={"allowed_origins": [site]}).raise_for_status()
        assert (
            httpx.get(f"{rex.url}/embed.js").headers["content-type"].startswith("text/javascript")
        )
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(30_000)

        # 1. The embedded form: posted by fetch, success shown in place, no navigation.
        page.goto(f"{site}/landing?utm_source=newsletter&utm_medium=email&utm_campaign=spring")
        page.evaluate(
            "document.querySelector('form[data-rex]')"
            ".addEventListener('rex:success', (e) => { window.rexContact = e.detail; })"
        )
        fill_and_send(page, "embed@example.com", "Emma")
        page.get_by_text("Thanks! The guide is on its way.").wait_for()
        assert page.url.startswith(f"{site}/landing")
        assert page.locator("form[data-rex]").is_hidden()
        assert page.evaluate("window.rexContact.email") == "embed@example.com"
        embedded = contact(rex, "embed@example.com")
        assert embedded["first_name"] == "Emma"
        assert embedded["consent"]["granted"] is True
        assert embedded["consent"]["text"] == "Send me product news by email."
        touch = embedded["first_touch"]
        assert (touch["utm_source"], touch["utm_medium"], touch["utm_campaign"]) == (
            "newsletter",
            "email",
            "spring",
        )
        assert touch["landing_page"] == f"{site}/landing"
        assert "_next" not in embedded["metadata"] and "_gotcha" not in embedded["metadata"]

        # 2. Same tab, another page without a campaign: the landing visit is still credited.
        page.goto(f"{site}/contact")
        fill_and_send(page, "later@example.com", "Liam")
        page.get_by_text("Thanks! The guide is on its way.").wait_for()
        later = contact(rex, "later@example.com")["first_touch"]
        assert later["utm_campaign"] == "spring"
        assert later["landing_page"] == f"{site}/landing"

        # 3. A server-side error is shown next to the form, which stays.
        page.goto(f"{site}/landing?utm_source=newsletter")
        fill_and_send(page, "typo@example", "Tom")  # the browser accepts it, Rex does not
        alert = page.get_by_role("alert")
        alert.wait_for()
        assert "not a valid email" in alert.inner_text()
        assert page.locator("form[data-rex]").is_visible()

        # 4. The plain HTML form: a real navigation, 303 to the allowed _next.
        plain_page = browser.new_context().new_page()
        plain_page.set_default_timeout(30_000)
        plain_page.goto(f"{site}/plain?utm_source=ads&utm_campaign=fall&gclid=G-123")
        fill_and_send(plain_page, "plain@example.com", "Pia")
        plain_page.wait_for_url(f"{site}/thanks")
        assert "Thanks page" in plain_page.content()
        plain_contact = contact(rex, "plain@example.com")
        assert plain_contact["source"] == "website"
        plain_touch = plain_contact["first_touch"]
        assert (plain_touch["utm_source"], plain_touch["utm_campaign"], plain_touch["gclid"]) == (
            "ads",
            "fall",
            "G-123",
        )
        assert plain_touch["landing_page"] == f"{site}/plain"

        # 5. The embed on a site that is not an allowed origin: the script cannot read the
        # answer, so the browser posts the form the plain way; one contact all the same.
        pages["/landing-elsewhere"] = page_html(embed, rex.url, other_site)
        stray = browser.new_context().new_page()
        stray.set_default_timeout(30_000)
        stray.goto(f"{other_site}/landing-elsewhere?utm_source=partner")
        fill_and_send(stray, "stray@example.com", "Sam")
        stray.wait_for_url(f"{rex.url}/capture/thanks")  # its _next is not allowed
        assert "Thank you" in stray.content()
        assert contact(rex, "stray@example.com")["first_touch"]["utm_source"] == "partner"
        with rex.client() as client:
            found = client.get("/contacts", params={"email": "stray@example.com"}).json()
        assert len(found["data"]) == 1

"""Signing in and out of the console in a real browser, and what a wrong password gets."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser

from tests.console.harness import ConsoleServer, console_page


def test_sign_in_and_out(console: ConsoleServer, browser: Browser, artifacts: Path) -> None:
    email, password = console.create_user()
    with console_page(console, browser, artifacts, "sign-in") as tab:
        tab.visit("/console/leads")  # signed out: to the sign-in page, back here after
        assert "/console/login" in tab.page.url
        tab.page.get_by_label("Email").fill(email)
        tab.page.get_by_label("Password").fill(password)
        tab.page.get_by_role("button", name="Sign in").click()
        tab.page.wait_for_url("**/console/leads")
        tab.screenshot("leads-after-sign-in")
        nav = tab.page.get_by_role("navigation", name="Main")
        for name in ("Leads", "Deals", "Tasks", "Webhooks", "Events", "Settings"):
            assert nav.get_by_role("link", name=name, exact=True).is_visible()
        [cookie] = [c for c in tab.context.cookies() if c["name"] == "rex_session"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        tab.check_accessibility()

        tab.page.get_by_role("button", name="Sign out").click()
        tab.page.wait_for_url("**/console/login?signed_out=1")
        assert "You are signed out." in tab.page.content()
        tab.screenshot("signed-out")
        # The old cookie is revoked server-side, not only forgotten by the browser.
        old = httpx.get(
            f"{console.url}/console/leads",
            cookies={"rex_session": cookie["value"]},
            follow_redirects=False,
        )
        assert old.status_code == 303 and "/console/login" in old.headers["location"]


def test_wrong_password_gets_one_generic_message(
    console: ConsoleServer, browser: Browser, artifacts: Path
) -> None:
    email, _ = console.create_user()
    with console_page(console, browser, artifacts, "wrong-password") as tab:
        tab.sign_in(email, "not the password at all")
        wrong_password = tab.page.get_by_role("alert").inner_text()
        tab.screenshot("wrong-password")
        tab.sign_in("nobody-here@example.com", "not the password at all")
        no_account = tab.page.get_by_role("alert").inner_text()
        assert wrong_password == no_account == "Wrong email or password."
        assert "/console/login" in tab.page.url

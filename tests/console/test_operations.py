"""The operations pages in a real browser against a real ``rex serve``: an endpoint whose
receiver fails, its failed attempts on the delivery's page (headers exactly as received),
Retry once it answers 200; Settings: a key created, used, revoked and refused at once;
workspace settings, the embed snippet, users; another workspace sees none of it."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx
from playwright.sync_api import Browser

from tests.console.harness import ConsolePage, ConsoleServer, console_page
from tests.receiver import Receiver, Respond
from tests.support import wait_until


def _docs_screenshot(tab: ConsolePage, name: str) -> None:
    """With ``REX_DOCS_SCREENSHOTS=docs/images`` the docs' pictures are made from this run."""
    folder = os.environ.get("REX_DOCS_SCREENSHOTS")
    if folder:
        shutil.copy(tab.screenshot(name), Path(folder) / f"{name}.png")


def _reload_until(tab: ConsolePage, text: str, timeout: float = 30) -> None:
    """Reload until the page shows ``text`` (bounded: the worker's retries are 0.2 s apart)."""

    def shows() -> bool:
        tab.page.reload()
        tab.page.wait_for_load_state("load")
        return text in tab.page.content()

    wait_until(shows, timeout=timeout, interval=0.3)


def _shown_headers(tab: ConsolePage) -> dict[str, str]:
    text = tab.page.locator("#sent-headers").inner_text()
    return dict(line.split(": ", 1) for line in text.strip().splitlines())


def test_failing_endpoint_then_retry_delivers(
    owner: ConsolePage,
    receiver: Receiver,
    console: ConsoleServer,
    browser: Browser,
    artifacts: Path,
) -> None:
    receiver.set_default(Respond(500, body="<b>boom</b> from the receiver"))
    page = owner.page
    owner.visit("/console/webhooks")
    page.get_by_label("URL").fill(receiver.url("/hook"))
    page.get_by_label("Description (optional)").fill("CRM <sync>")
    page.get_by_role("button", name="Add endpoint").click()
    page.wait_for_load_state("load")
    assert "Endpoint created" in page.content()
    secret = page.locator("#secret-value").inner_text()
    assert secret.startswith("whsec_")
    assert secret not in page.url
    owner.screenshot("endpoint-created")
    owner.check_accessibility()

    page.get_by_role("link", name=re.compile("Go to the endpoint")).click()
    page.wait_for_load_state("load")
    endpoint_url = page.url
    endpoint_id = endpoint_url.rsplit("/", 1)[1]
    assert "CRM &lt;sync&gt;" in page.content()  # escaped, shown as text
    owner.check_accessibility()
    page.get_by_role("button", name="Send a test").click()
    page.wait_for_url("**/console/deliveries/dlv_*")
    delivery_path = "/console/deliveries/" + page.url.rsplit("/", 1)[1].split("?")[0]

    # One attempt and three retries (REX_RETRY_SCHEDULE=0.2,0.2,0.2), all answered 500.
    received = receiver.wait_for(4, timeout=30)
    _reload_until(owner, 'id="delivery-status">failed<')
    rows = page.locator("tr.attempt.failed")
    assert rows.count() == 4
    assert "HTTP 500" in rows.first.inner_text()
    assert "<b>boom</b> from the receiver" in rows.first.inner_text()  # as text, not markup
    owner.screenshot("delivery-failed")
    owner.check_accessibility()

    # The headers and body shown are those the receiver got for the last attempt.
    shown = _shown_headers(owner)
    last = received[3]
    for name, value in shown.items():
        assert last.headers[name] == value, name
    assert set(last.headers) <= {*shown, "Connection"} | {k.lower() for k in shown}
    assert page.locator("#sent-body").inner_text() == last.text
    assert secret not in page.content()

    receiver.set_default(Respond(200, body="thanks"))
    page.get_by_role("button", name="Retry").click()
    page.wait_for_url("**done=retry")
    receiver.wait_for(5, timeout=30)
    _reload_until(owner, 'id="delivery-status">delivered<')
    assert page.locator("tr.attempt.ok").count() == 1
    owner.screenshot("delivery-delivered")
    owner.check_accessibility()
    _docs_screenshot(owner, "console-delivery-detail")

    # "Recover failed since…": a second test event fails, the receiver mends, recover it.
    receiver.set_default(Respond(503))
    owner.visit(f"/console/webhooks/{endpoint_id}")
    page.get_by_role("button", name="Send a test").click()
    page.wait_for_url("**/console/deliveries/dlv_*")
    second = "/console/deliveries/" + page.url.rsplit("/", 1)[1].split("?")[0]
    receiver.wait_for(9, timeout=30)
    _reload_until(owner, 'id="delivery-status">failed<')
    receiver.set_default(Respond(200))
    page.get_by_role("button", name="Recover failed since…").click()
    page.wait_for_load_state("load")
    assert "1 failed delivery due again now." in page.content()
    owner.visit(second)
    _reload_until(owner, 'id="delivery-status">delivered<')

    # Every operations page, screenshotted and checked.
    owner.visit(f"/console/deliveries?endpoint={endpoint_id}&status=delivered")
    assert delivery_path.rsplit("/", 1)[1] in page.content()
    owner.visit("/console/deliveries?status=failed&event_type=webhook.test")
    assert "No delivery for this filter." in page.content()
    owner.visit("/console/events?type=webhook.test")
    page.get_by_role("link", name=re.compile("^evt_")).first.click()
    page.wait_for_load_state("load")
    assert "webhook.test" in page.content()
    owner.screenshot("event")
    owner.check_accessibility()
    owner.visit("/console/webhooks")
    assert "CRM &lt;sync&gt;" in page.content()
    assert page.locator("table.endpoints tbody tr").count() == 1
    with console.api(console.api_key(owner.workspace)) as api:
        for n, source in enumerate(["webinar", "webinar", "ads", "<script>x</script>"]):
            made = api.post("/contacts", json={"email": f"lead{n}@example.com", "source": source})
            assert made.status_code == 201, made.text
    owner.visit("/console")
    assert page.get_by_role("img", name=re.compile("Leads per day by source")).is_visible()
    assert "4 leads in the last 30 days (webinar: 2" in page.content()
    assert "<script>x</script>" not in page.content()
    assert page.get_by_role("img", name=re.compile("Deliveries per hour by outcome")).is_visible()
    assert "p95" in page.content()
    _docs_screenshot(owner, "console-home")

    # Bad filters are a clear 4xx page, not a 500.
    assert owner.visit("/console/deliveries?status=bogus", check=False).status == 422
    assert owner.visit("/console/events?since=yesterday", check=False).status == 422

    # Another workspace's owner: every id of this one is a 404, and its lists are empty.
    other_ws = console.create_workspace()
    email, password = console.create_user(workspace=other_ws, role="owner")
    with console_page(console, browser, artifacts, "other-workspace") as other:
        other.sign_in(email, password)
        for path in (delivery_path, f"/console/webhooks/{endpoint_id}"):
            assert other.visit(path, check=False).status == 404
        other.visit("/console/webhooks")
        assert receiver.url("/hook") not in other.page.content()
        other.visit("/console/deliveries")
        assert "No delivery." in other.page.content()
        response = other.context.request.post(
            console.url + delivery_path + "/retry",
            form={"csrf_token": other.page.locator("body").get_attribute("data-csrf") or ""},
        )
        assert response.status == 404
    # No secret in a URL or the server's log.
    assert not [u for u in owner.requests if secret in u]
    assert secret not in console.log.read_text()


def test_settings_keys_revoked_at_once(
    owner: ConsolePage, console: ConsoleServer, browser: Browser, artifacts: Path
) -> None:
    page = owner.page
    owner.visit("/console/settings")
    page.get_by_label("New key's name").fill("website <backend>")
    page.get_by_role("button", name="Create key").click()
    page.wait_for_load_state("load")
    key = page.locator("#secret-value").inner_text()
    owner.screenshot("key-created")
    owner.check_accessibility()
    with httpx.Client(base_url=console.url, headers={"X-Api-Key": key}, timeout=30) as api:
        assert api.get("/workspace").json()["data"]["slug"] == owner.workspace

        owner.visit("/console/settings")
        assert "website &lt;backend&gt;" in page.content()
        page.evaluate("window.confirm = () => true")  # the person says yes to the question
        page.get_by_role("button", name=re.compile("Revoke website <backend>")).click()
        page.wait_for_url("**done=revoked")
        assert "website &lt;backend&gt;" not in page.content()
        refused = api.get("/workspace")
        assert refused.status_code == 401, refused.text
    assert key not in console.log.read_text()

    # Workspace settings, through the workspace service.
    page.get_by_label("Allowed origins (one a line)").fill("https://www.acme.com\nhttps://acme.io")
    page.get_by_label("Redirect URL").fill("https://www.acme.com/thanks")
    page.get_by_label("Rate limit").fill("600/minute")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url("**done=saved")
    with console.api(console.api_key(owner.workspace)) as api:
        data = api.get("/workspace").json()["data"]
    assert data["allowed_origins"] == ["https://www.acme.com", "https://acme.io"]
    assert data["redirect_url"] == "https://www.acme.com/thanks"
    assert data["capture_rate_limit"] == "600/minute"
    page.get_by_label("Redirect URL").fill("https://elsewhere.example/thanks")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_load_state("load")
    assert "allowed_origins" in page.content()  # refused, said why

    # The embed snippet, every value escaped for where it lands.
    owner.visit("/console/settings")
    page.get_by_label("Success message").fill('Thanks "you" <img src=x onerror=alert(1)>')
    page.get_by_label("Company").check()
    page.get_by_role("button", name="Update the snippet").click()
    page.wait_for_load_state("load")
    snippet = page.get_by_label("Paste this into your page").input_value()
    assert 'data-rex-success="Thanks &quot;you&quot; &lt;img src=x onerror=alert(1)&gt;"' in snippet
    assert 'name="company"' in snippet and f"{console.url}/embed.js" in snippet
    owner.screenshot("settings")
    owner.check_accessibility()

    # Users: a member added here can sign in, and Settings is not theirs (403).
    page.get_by_label("Email", exact=True).fill("new-member@example.com")
    page.get_by_role("button", name="Add user").click()
    page.wait_for_load_state("load")
    password = page.locator("#secret-value").inner_text()
    owner.visit("/console/settings")
    assert "new-member@example.com" in page.content()
    with console_page(console, browser, artifacts, "member") as member:
        member.sign_in("new-member@example.com", password)
        assert member.visit("/console/settings", check=False).status == 403
        assert member.visit("/console/webhooks").status == 200

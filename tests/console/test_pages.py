"""The console's pages in a real browser against a real ``rex serve``: leads arriving live,
a contact, the deals board moving a deal (and the webhook it sends), escaping, workspace
isolation, CSRF, roles and sign-in throttling."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser

from tests.console.harness import (
    ConsolePage,
    ConsoleServer,
    console_page,
    docs_screenshot,
    unique,
    wait_for_text,
)
from tests.receiver import Receiver

XSS = "<img src=x onerror=alert(1)>"


def test_a_captured_lead_appears_on_leads_without_a_reload(
    console: ConsoleServer, browser: Browser, artifacts: Path
) -> None:
    # POST /capture lands in the default workspace (no REX_BASE_DOMAIN).
    email, password = console.create_user(workspace="default", role="member")
    marker = unique("live")
    with console_page(console, browser, artifacts, "leads-live") as tab:
        tab.sign_in(email, password)
        tab.visit("/console/leads")
        reloads: list[str] = []
        tab.page.on("framenavigated", lambda frame: reloads.append(frame.url))
        lead = f"{marker}@example.com"
        with console.api(console.api_key()) as api:
            answer = api.post(
                "/capture",
                json={
                    "email": lead,
                    "first_name": "Ada",
                    "last_name": "Live",
                    "source": "webinar",
                    "utm_campaign": "spring-launch",
                },
            )
            assert answer.status_code == 201, answer.text
        wait_for_text(tab.page, lead)  # polled in, no navigation
        assert reloads == []
        row = tab.page.locator("tr", has_text=lead)
        assert "webinar" in row.inner_text() and "spring-launch" in row.inner_text()
        assert "new lead" in tab.page.locator("#live-status").inner_text()
        tab.screenshot("lead-arrived")
        tab.check_accessibility()
        docs_screenshot(tab, "console-leads")

        # Search by name finds it; a stage filter that does not match hides it.
        tab.visit(f"/console/leads?q={marker}")
        assert tab.page.locator("tr", has_text=lead).count() == 1
        tab.visit("/console/leads?q=ada+live&stage=customer")
        assert lead not in tab.page.content()

        # Open the contact: its fields, first touch and timeline.
        tab.visit(f"/console/leads?q={marker}")
        tab.page.get_by_role("link", name="Ada Live").click()
        tab.page.wait_for_load_state("load")
        tab.screenshot("contact")
        tab.check_accessibility()
        content = tab.page.content()
        assert lead in content and "spring-launch" in content and "contact.created" in content

        # Change its stage: the timeline shows what changed.
        tab.page.get_by_label("Stage", exact=True).fill("customer")
        tab.page.get_by_role("button", name="Change stage").click()
        tab.page.wait_for_load_state("load")
        assert "Stage changed." in tab.page.content()
        assert tab.page.locator(".changes", has_text="stage: lead → customer").count() == 1
        # Add a task, due in the past: it is overdue on the Tasks page.
        tab.page.get_by_label("Task", exact=True).fill(f"Call {marker}")
        tab.page.get_by_label("Due (UTC)").fill("2020-01-02")
        tab.page.get_by_role("button", name="Add task").click()
        tab.page.wait_for_load_state("load")
        assert "Task added." in tab.page.content()
        tab.visit(f"/console/tasks?contact={lead}")
        row = tab.page.locator("tr", has_text=f"Call {marker}")
        assert "overdue" in row.inner_text()
        row.get_by_role("button", name=re.compile("Mark done")).click()
        tab.page.wait_for_load_state("load")
        assert "Task marked done." in tab.page.content()
        assert tab.page.locator("tr", has_text=f"Call {marker}").count() == 0
        tab.screenshot("task-done")


def test_moving_a_deal_by_its_move_to_control_sends_deal_stage_changed(
    owner: ConsolePage, console: ConsoleServer
) -> None:
    key = console.api_key(owner.workspace)
    with Receiver() as receiver, console.api(key) as api:
        hook = api.post(
            "/webhooks", json={"url": receiver.url("/hook"), "events": ["deal.stage_changed"]}
        )
        assert hook.status_code == 201, hook.text
        contact = api.post("/contacts", json={"email": "buyer@example.com"}).json()["data"]
        deal = api.post(
            "/deals",
            json={
                "name": "Acme - 50 seats",
                "amount": 1200000,
                "currency": "USD",
                "stage": "qualified",
                "contact_id": contact["id"],
            },
        ).json()["data"]
        api.post(
            "/deals",
            json={"name": "Globex", "amount": 300050, "currency": "USD", "stage": "qualified"},
        ).raise_for_status()

        owner.visit("/console/deals")
        column = owner.page.locator("section[data-drop-stage=qualified]")
        assert "15,000.50 USD" in column.inner_text()  # both amounts, summed
        docs_screenshot(owner, "console-deals")

        card = owner.page.locator(f"#{deal['id']}")
        card.get_by_label("Move to").select_option("proposal")
        card.get_by_role("button", name=re.compile("^Move")).click()
        owner.page.wait_for_load_state("load")
        assert "Deal moved." in owner.page.content()
        owner.screenshot("deal-moved")
        owner.check_accessibility()
        proposal = owner.page.locator("section[data-drop-stage=proposal]")
        assert "Acme - 50 seats" in proposal.inner_text()
        assert "12,000.00 USD" in proposal.inner_text()

        [delivery] = receiver.wait_for(1, timeout=30, path="/hook")
        event = delivery.json()
        assert event["event"] == "deal.stage_changed"
        assert event["data"]["id"] == deal["id"] and event["data"]["stage"] == "proposal"
        assert (event["from"], event["to"]) == ("qualified", "proposal")
        assert api.get(f"/deals/{deal['id']}").json()["data"]["stage"] == "proposal"

        # Drag and drop does the same: Globex onto "negotiation".
        globex = owner.page.locator(".card", has_text="Globex")
        with owner.page.expect_navigation():  # the board reloads once the move is saved
            globex.drag_to(owner.page.locator("section[data-drop-stage=negotiation]"))
        negotiation = owner.page.locator("section[data-drop-stage=negotiation]")
        assert "Globex" in negotiation.inner_text() and "3,000.50 USD" in negotiation.inner_text()
        owner.screenshot("deal-dropped")
        _, dropped = receiver.wait_for(2, timeout=30, path="/hook")
        assert dropped.json()["data"]["name"] == "Globex"
        assert (dropped.json()["from"], dropped.json()["to"]) == ("qualified", "negotiation")


def test_a_lead_named_like_markup_renders_as_text(
    console: ConsoleServer, browser: Browser, artifacts: Path
) -> None:
    email, password = console.create_user(workspace="default", role="member")
    lead = f"{unique('xss')}@example.com"
    with console.api(console.api_key()) as api:
        api.post(
            "/capture", json={"email": lead, "first_name": XSS, "source": XSS, "company": XSS}
        ).raise_for_status()
        contact_id = api.get("/contacts", params={"email": lead}).json()["data"][0]["id"]
    with console_page(console, browser, artifacts, "xss") as tab:
        tab.sign_in(email, password)
        for path in (f"/console/leads?q={lead}", f"/console/contacts/{contact_id}"):
            tab.visit(path)
            assert XSS in tab.page.locator("main").inner_text()  # shown as text
            assert tab.page.locator("img[src=x]").count() == 0
        tab.page.wait_for_timeout(500)  # an onerror handler would have fired by now
        assert tab.dialogs == []


def test_another_workspace_sees_nothing_even_by_editing_urls(
    owner: ConsolePage, console: ConsoleServer, browser: Browser, artifacts: Path
) -> None:
    with console.api(console.api_key(owner.workspace)) as api:
        contact = api.post("/contacts", json={"email": f"{unique('secret')}@example.com"}).json()
        deal = api.post("/deals", json={"name": "Secret deal"}).json()["data"]
        task = api.post("/tasks", json={"title": "Secret task"}).json()["data"]
    contact = contact["data"]
    other = console.create_workspace()
    email, password = console.create_user(workspace=other)
    with console_page(console, browser, artifacts, "isolation") as tab:
        tab.sign_in(email, password)
        for path in ("/console/leads", "/console/deals", "/console/tasks"):
            tab.visit(path)
            content = tab.page.content()
            assert contact["email"] not in content and "Secret" not in content
        assert tab.visit(f"/console/contacts/{contact['id']}").status == 404
        assert tab.visit(f"/console/deals?pipeline={deal['pipeline_id']}").status == 404
        csrf = tab.page.locator("body").get_attribute("data-csrf")
        for path, form in (
            (f"/console/deals/{deal['id']}/move", {"stage": "won"}),
            (f"/console/contacts/{contact['id']}/stage", {"stage": "customer"}),
            (f"/console/tasks/{task['id']}/done", {}),
        ):
            answer = tab.page.request.post(
                console.url + path, form=form, headers={"X-CSRF-Token": csrf or ""}
            )
            assert answer.status == 404, (path, answer.status)
        tab.screenshot("other-workspace")
    with console.api(console.api_key(owner.workspace)) as api:
        assert api.get(f"/deals/{deal['id']}").json()["data"]["stage"] != "won"
        assert api.get(f"/contacts/{contact['id']}").json()["data"]["stage"] == "lead"


def test_a_state_change_without_its_csrf_token_is_refused(
    owner: ConsolePage, console: ConsoleServer
) -> None:
    with console.api(console.api_key(owner.workspace)) as api:
        contact = api.post("/contacts", json={"email": "csrf@example.com"}).json()["data"]
    path = f"{console.url}/console/contacts/{contact['id']}/stage"
    owner.visit(f"/console/contacts/{contact['id']}")
    token = owner.page.locator("body").get_attribute("data-csrf") or ""
    refused = [
        owner.page.request.post(path, form={"stage": "customer"}),  # no token
        owner.page.request.post(path, form={"stage": "customer", "csrf_token": "forged"}),
        owner.page.request.post(  # the right token, from another site
            path,
            form={"stage": "customer", "csrf_token": token},
            headers={"Origin": "http://evil.example"},
        ),
    ]
    assert [answer.status for answer in refused] == [403, 403, 403]
    with console.api(console.api_key(owner.workspace)) as api:
        assert api.get(f"/contacts/{contact['id']}").json()["data"]["stage"] == "lead"
    accepted = owner.page.request.post(path, form={"stage": "customer", "csrf_token": token})
    assert accepted.ok


def test_a_member_gets_403_on_owner_only_pages(
    owner: ConsolePage, console: ConsoleServer, browser: Browser, artifacts: Path
) -> None:
    email, password = console.create_user(workspace=owner.workspace, role="member")
    with console_page(console, browser, artifacts, "member") as tab:
        tab.sign_in(email, password)
        assert tab.visit("/console/leads").status == 200
        answer = tab.visit("/console/settings", check=False)
        assert answer.status == 403
        assert "Only an owner" in tab.page.content()
        tab.check_accessibility()
    assert owner.visit("/console/settings").status == 200


def test_repeated_failures_are_throttled(
    console: ConsoleServer, browser: Browser, artifacts: Path
) -> None:
    email, password = console.create_user()
    with console_page(console, browser, artifacts, "throttle") as tab:
        for _ in range(5):  # REX_SIGN_IN_MAX_FAILURES, default 5
            tab.sign_in(email, "a wrong password, again")
            assert tab.page.get_by_role("alert").inner_text() == "Wrong email or password."
        with tab.page.expect_response(lambda r: r.request.method == "POST") as info:
            tab.sign_in(email, password)  # the right one, too late
        assert info.value.status == 429
        message = tab.page.get_by_role("alert").inner_text()
        assert "Too many failed sign-ins" in message and "try again in 15 minutes" in message
        tab.screenshot("throttled")
        tab.check_accessibility()


def test_the_submissions_inbox_reprocesses_a_spam_submission(
    console: ConsoleServer, browser: Browser, artifacts: Path
) -> None:
    # Capture URLs land in the default workspace (no REX_BASE_DOMAIN): its forms are there.
    email, password = console.create_user(workspace="default", role="member")
    lead = f"{unique('inbox')}@example.com"
    with (
        console.api(console.api_key()) as api,
        console_page(console, browser, artifacts, "inbox") as tab,
    ):
        form = api.post("/forms", json={"name": unique("form"), "honeypot_fields": ["website"]})
        form_id, form_name = form.json()["data"]["id"], form.json()["data"]["name"]
        spam = {"email": lead, "first_name": "Zed", "website": "http://spam.example"}
        assert api.post(f"/capture/{form_id}", json=spam).status_code == 201
        tab.sign_in(email, password)
        tab.visit(f"/console/leads/inbox?form={form_id}")
        row = tab.page.locator("tr", has_text="honeypot field 'website' filled")
        assert "spam" in row.inner_text() and form_name in row.inner_text()
        # The form's honeypot was wrong: fix it, then reprocess the submission.
        api.patch(f"/forms/{form_id}", json={"honeypot_fields": []}).raise_for_status()
        row.get_by_role("button", name=re.compile("Reprocess")).click()
        tab.page.wait_for_load_state("load")
        assert "now accepted" in tab.page.content()
        tab.screenshot("inbox-reprocessed")
        tab.visit(f"/console/leads/inbox?form={form_id}")
        assert tab.page.locator("tr", has_text="honeypot field").count() == 0
        tab.visit(f"/console/leads?form={form_id}")
        assert tab.page.locator("tr", has_text=lead).count() == 1

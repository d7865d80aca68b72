"""Settings and an endpoint's page in a real browser against a real ``rex serve`` (both
backends): owners change a user's role and remove users, never the workspace's last owner,
only with the form's CSRF token; the API key and user lists paginate with cursors of their
own; an endpoint's description can be emptied."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser

from rex.console.paging import PAGE_SIZE
from rex.users import service as users
from rex.workspaces import service as workspaces
from tests.console.harness import ConsolePage, ConsoleServer, console_page


def _user_id(console: ConsoleServer, email: str) -> str:
    async def find(conn: Any) -> str:
        row = await users.find_by_email(conn, email)
        assert row is not None, email
        return str(row.id)

    found: str = console._in_db(find)
    return found


def _role(tab: ConsolePage, email: str, role: str) -> None:
    tab.page.get_by_label(f"Role of {email}").select_option(role)
    tab.page.get_by_role("button", name=f"Change role of {email}").click()
    tab.page.wait_for_load_state("load")


def test_owners_change_roles_and_remove_users_but_never_the_last_owner(
    owner: ConsolePage, console: ConsoleServer, browser: Browser, artifacts: Path
) -> None:
    page = owner.page
    email, password = console.create_user(workspace=owner.workspace, role="member")
    owner.visit("/console/settings")
    assert page.get_by_label(f"Role of {email}").input_value() == "member"

    with console_page(console, browser, artifacts, "promoted") as other:
        other.sign_in(email, password)
        assert other.visit("/console/settings", check=False).status == 403
        # Made owner: Settings is theirs from the next request on, in the same session.
        _role(owner, email, "owner")
        assert "Role changed." in page.content() and "done=role" in page.url
        owner.check_accessibility()
        assert other.visit("/console/settings").status == 200

        # Two owners: either may be demoted; the last one may not, nor be removed.
        _role(owner, email, "member")
        assert page.get_by_label(f"Role of {email}").input_value() == "member"
        _role(owner, owner.email, "member")
        assert "last owner" in page.content()
        owner.screenshot("last-owner")
        owner.check_accessibility()
        owner.visit("/console/settings")
        page.evaluate("window.confirm = () => true")
        page.get_by_role("button", name=f"Remove {owner.email}").click()
        page.wait_for_load_state("load")
        assert "last owner" in page.content()
        owner.visit("/console/settings")
        assert page.get_by_label(f"Role of {owner.email}").input_value() == "owner"

        # Removed: out of this workspace at their next request; the account stays.
        page.evaluate("window.confirm = () => true")
        page.get_by_role("button", name=f"Remove {email}").click()
        page.wait_for_url("**done=removed*")
        assert "User removed" in page.content() and f"Role of {email}" not in page.content()
        owner.check_accessibility()
        assert other.visit("/console/leads", check=False).status == 403
        assert "belongs to no workspace" in other.page.content()
    assert _user_id(console, email)

    # CSRF: neither change goes through without the form's token.
    owner_id = _user_id(console, owner.email)
    base = f"{console.url}/console/settings/users/{owner_id}"
    token = page.locator("body").get_attribute("data-csrf") or ""
    refused = [
        page.request.post(f"{base}/role", form={"role": "member"}),
        page.request.post(f"{base}/remove", form={"csrf_token": "forged"}),
        page.request.post(
            f"{base}/role",
            form={"role": "member", "csrf_token": token},
            headers={"Origin": "http://evil.example"},
        ),
    ]
    assert [answer.status for answer in refused] == [403, 403, 403]
    # Nor for another workspace's user, nor with a role that is not one.
    stranger, _ = console.create_user(workspace=console.create_workspace())
    elsewhere = f"{console.url}/console/settings/users/{_user_id(console, stranger)}"
    answers = [
        page.request.post(f"{elsewhere}/remove", form={"csrf_token": token}),
        page.request.post(f"{elsewhere}/role", form={"role": "member", "csrf_token": token}),
        page.request.post(f"{base}/role", form={"role": "admin", "csrf_token": token}),
    ]
    assert [answer.status for answer in answers] == [404, 404, 422]
    owner.visit("/console/settings")
    assert page.get_by_label(f"Role of {owner.email}").input_value() == "owner"


def test_settings_lists_paginate_with_cursors(owner: ConsolePage, console: ConsoleServer) -> None:
    extra = 3

    async def fill(conn: Any) -> None:
        workspace = await workspaces.get_by_slug(conn, owner.workspace)
        assert workspace is not None
        for n in range(PAGE_SIZE + extra):
            await workspaces.create_api_key(conn, workspace.id, f"key {n:03d}")
        # Users without a usable password: made here, not with argon2 fifty times.
        for n in range(PAGE_SIZE + extra):
            await _bare_user(conn, f"{owner.workspace}-{n:03d}@example.com", workspace.id)

    console._in_db(fill)
    page = owner.page
    owner.visit("/console/settings")
    keys = page.locator("table.keys tbody tr td:first-child")
    members = page.locator("table.users tbody tr td:first-child")
    assert keys.count() == PAGE_SIZE and members.count() == PAGE_SIZE
    first_keys, first_members = keys.all_inner_texts(), members.all_inner_texts()
    page.get_by_role("link", name="Next page of API keys").click()
    page.wait_for_url("**keys_cursor=*")
    owner.check_accessibility()
    assert keys.count() == extra and members.all_inner_texts() == first_members
    # Every key once, over the two pages (ids made in one millisecond have no set order).
    assert sorted(first_keys + keys.all_inner_texts()) == [
        f"key {n:03d}" for n in range(PAGE_SIZE + extra)
    ]
    # The other list keeps its own place, and this one's.
    page.get_by_role("link", name="Next page of users").click()
    page.wait_for_url(re.compile(r".*users_cursor=.*"))
    assert "keys_cursor=" in page.url and keys.count() == extra
    shown = first_members + members.all_inner_texts()
    assert len(shown) == len(set(shown)) == PAGE_SIZE + extra + 1
    # The owner, made first, is on the last page.
    assert owner.email in members.last.inner_text()
    owner.screenshot("settings-second-pages")
    owner.check_accessibility()
    page.get_by_role("link", name="Newest API keys").click()
    page.wait_for_load_state("load")
    assert keys.count() == PAGE_SIZE and members.count() == extra + 1
    assert owner.visit("/console/settings?keys_cursor=forged", check=False).status == 400


async def _bare_user(conn: Any, email: str, workspace_id: str) -> None:
    import sqlalchemy as sa

    from rex.db.schema import users as users_table
    from rex.ids import new_id, utcnow

    now = utcnow()
    user_id = new_id("usr")
    await conn.execute(
        sa.insert(users_table).values(
            id=user_id,
            email=email,
            password_hash="!",  # no password: cannot sign in
            password_changed_at=now,
            created_at=now,
            updated_at=now,
        )
    )
    await users.add_membership(conn, user_id, workspace_id, users.Role.MEMBER)


def test_an_endpoint_description_can_be_cleared(owner: ConsolePage, console: ConsoleServer) -> None:
    page = owner.page
    owner.visit("/console/webhooks")
    page.get_by_label("URL").fill("https://hooks.example.com/rex")
    page.get_by_label("Description (optional)").fill("CRM sync")
    page.get_by_role("button", name="Add endpoint").click()
    page.wait_for_load_state("load")
    page.get_by_role("link", name=re.compile("Go to the endpoint")).click()
    page.wait_for_load_state("load")
    endpoint_id = page.url.rsplit("/", 1)[1]
    description = page.get_by_label("Description", exact=True)
    assert description.input_value() == "CRM sync"

    description.fill("CRM sync, nightly")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url("**done=saved")
    with console.api(console.api_key(owner.workspace)) as api:
        assert api.get(f"/webhooks/{endpoint_id}").json()["data"]["description"] == (
            "CRM sync, nightly"
        )
        page.get_by_label("Description", exact=True).fill("")
        with page.expect_navigation():
            page.get_by_role("button", name="Save", exact=True).click()
        assert page.get_by_label("Description", exact=True).input_value() == ""
        owner.check_accessibility()
        data = api.get(f"/webhooks/{endpoint_id}").json()["data"]
        assert data["description"] is None
        assert data["events"] == ["*"]  # the events are kept as they were


def test_a_user_s_role_is_owner_only(
    owner: ConsolePage, console: ConsoleServer, browser: Browser, artifacts: Path
) -> None:
    """A member cannot change roles or remove anyone, even with a valid token."""
    email, password = console.create_user(workspace=owner.workspace, role="member")
    owner_id = _user_id(console, owner.email)
    with console_page(console, browser, artifacts, "member") as tab:
        tab.sign_in(email, password)
        tab.visit("/console/leads")
        token = tab.page.locator("body").get_attribute("data-csrf") or ""
        base = f"{console.url}/console/settings/users/{owner_id}"
        answers = [
            tab.page.request.post(f"{base}/role", form={"role": "member", "csrf_token": token}),
            tab.page.request.post(f"{base}/remove", form={"csrf_token": token}),
            tab.page.request.post(
                f"{console.url}/console/settings/users/{_user_id(console, email)}/role",
                form={"role": "owner", "csrf_token": token},
            ),
        ]
        assert [answer.status for answer in answers] == [403, 403, 403]

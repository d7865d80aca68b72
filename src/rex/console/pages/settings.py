"""Settings (owners only; members get 403): allowed origins, redirect URL and rate limit
(``rex.workspaces.service``, as ``PATCH /workspace``); the embed snippet; API keys (list,
create shown once, revoke: ``rex.ops.keys``); the workspace's users (list, invite)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Query, Request
from starlette.responses import RedirectResponse, Response

from rex.console.auth import OwnerDep, RuntimeDep
from rex.console.forms import parse
from rex.console.paging import PAGE_SIZE, Page
from rex.console.routing import console_router
from rex.console.snippet import OPTIONAL_FIELDS, SnippetOptions, embed_snippet
from rex.console.templating import render
from rex.errors import Invalid, NotFound
from rex.ops import keys
from rex.users import service as users_service
from rex.users.passwords import one_time_password
from rex.users.service import Role
from rex.workspaces import service as workspaces
from rex.workspaces.schemas import WorkspaceUpdate

router = console_router()

Text = Annotated[str | None, Query(max_length=500)]
NO_STORE = {"Cache-Control": "no-store"}


def public_base(request: Request, runtime: RuntimeDep, slug: str) -> str:
    """Where this workspace's captures go: ``REX_PUBLIC_URL`` (with the workspace's host
    when ``REX_BASE_DOMAIN`` is set), else the address this page was served from."""
    settings = runtime.settings
    base_domain = getattr(settings, "base_domain", None)
    public = getattr(settings, "public_url", None)
    if base_domain:
        scheme = str(public).split(":", 1)[0] if public else request.url.scheme
        return f"{scheme}://{slug}.{base_domain}"
    if public:
        return str(public).rstrip("/")
    return str(request.base_url).rstrip("/")


@router.get("/settings")
async def settings_page(
    request: Request,
    viewer: OwnerDep,
    runtime: RuntimeDep,
    done: Text = None,
    form_id: Text = None,
    fields: Annotated[list[str] | None, Query()] = None,
    success_message: Text = None,
    button: Text = None,
    consent_text: Text = None,
    next_url: Text = None,
    source: Text = None,
    keys_cursor: Text = None,
    users_cursor: Text = None,
) -> Response:
    async with runtime.db.read() as conn:
        workspace = await workspaces.get_by_id(conn, viewer.workspace_id)
        api_keys, next_keys = await keys.list_keys_page(
            conn, viewer.workspace_id, cursor=keys_cursor or None, limit=PAGE_SIZE
        )
        members, next_users = await users_service.workspace_users_page(
            conn, viewer.workspace_id, cursor=users_cursor or None, limit=PAGE_SIZE
        )
    if workspace is None:
        raise NotFound("workspace", viewer.workspace_id)
    options = SnippetOptions(
        base_url=public_base(request, runtime, workspace.slug),
        form_id=(form_id or "").strip() or None,
        fields=fields if fields is not None else ["first_name"],
        success_message=success_message or "Thanks! We will be in touch.",
        button=button or "Sign up",
        consent_text=consent_text or None,
        next_url=next_url or None,
        source=source or None,
    )
    notices = {
        "saved": "Settings saved.",
        "revoked": "Key revoked: it is refused from now on, by every Rex process.",
        "invited": "User added to this workspace.",
        "role": "Role changed.",
        "removed": "User removed from this workspace.",
    }
    return render(
        request,
        "settings.html",
        {
            "nav": "settings",
            "workspace": workspace,
            "keys": Page(api_keys, next_keys, keys_cursor or None),
            "members": Page(members, next_users, users_cursor or None),
            "snippet": embed_snippet(options),
            "options": options,
            "optional_fields": OPTIONAL_FIELDS,
            "notice": notices.get(done or ""),
        },
    )


@router.post("/settings/workspace")
async def save_workspace(
    viewer: OwnerDep,
    runtime: RuntimeDep,
    allowed_origins: Annotated[str, Form(max_length=20000)] = "",
    redirect_url: Annotated[str, Form(max_length=2048)] = "",
    capture_rate_limit: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    origins = [line.strip() for line in allowed_origins.replace(",", "\n").splitlines()]
    values = {
        "allowed_origins": [o for o in origins if o],
        # Empty fields clear the setting (Rex's thank-you page; the server's limit).
        "redirect_url": redirect_url.strip() or None,
        "capture_rate_limit": capture_rate_limit.strip() or None,
    }
    body = parse(WorkspaceUpdate, {"allowed_origins": values["allowed_origins"]})
    changes = body.model_dump(exclude_unset=True)
    for name in ("redirect_url", "capture_rate_limit"):
        if values[name] is None:
            changes[name] = None
        else:
            changes.update(
                parse(WorkspaceUpdate, {name: values[name]}).model_dump(exclude_unset=True)
            )
    async with runtime.db.transaction() as conn:
        await workspaces.update_settings(
            conn, viewer.workspace_id, WorkspaceUpdate.model_validate(changes)
        )
    return RedirectResponse("/console/settings?done=saved", status_code=303)


@router.post("/settings/keys")
async def create_key(
    request: Request,
    viewer: OwnerDep,
    runtime: RuntimeDep,
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    label = name.strip()
    if not label:
        raise Invalid("name", "name: give the key a name (what uses it).")
    async with runtime.db.transaction() as conn:
        key_id, key = await workspaces.create_api_key(conn, viewer.workspace_id, label)
    return render(
        request,
        "secret_once.html",
        {
            "nav": "settings",
            "title": "API key created",
            "secret": key,
            "what": f"The API key {label!r} ({key_id})",
            "back": "/console/settings",
        },
        headers=NO_STORE,
    )


@router.post("/settings/keys/{key_id}/revoke")
async def revoke_key(key_id: str, viewer: OwnerDep, runtime: RuntimeDep) -> Response:
    async with runtime.db.transaction() as conn:
        revoked = await keys.revoke(conn, key_id, viewer.workspace_id)
    if revoked is None:
        raise NotFound("API key", key_id)
    return RedirectResponse("/console/settings?done=revoked", status_code=303)


@router.post("/settings/users")
async def invite_user(
    request: Request,
    viewer: OwnerDep,
    runtime: RuntimeDep,
    email: Annotated[str, Form(max_length=320)] = "",
    role: Annotated[str, Form(max_length=16)] = "member",
) -> Response:
    """Add a user to this workspace: an existing account joins it; a new one is created
    with a one-time password, shown once here (as ``rex users create`` prints it)."""
    try:
        picked = Role(role)
    except ValueError:
        raise Invalid("role", f"role: {role!r} is not owner or member.") from None
    address = users_service.normalize_email(email)
    password = None
    async with runtime.db.transaction() as conn:
        found = await users_service.find_by_email(conn, address)
        if found is None:
            password = one_time_password()
            user = await users_service.create(conn, address, password)
            user_id = user.id
        else:
            user_id = found.id
        await users_service.add_membership(conn, user_id, viewer.workspace_id, picked)
    if password is None:
        return RedirectResponse("/console/settings?done=invited", status_code=303)
    return render(
        request,
        "secret_once.html",
        {
            "nav": "settings",
            "title": "User created",
            "secret": password,
            "what": f"The one-time password of {address}",
            "back": "/console/settings",
        },
        headers=NO_STORE,
    )


@router.post("/settings/users/{user_id}/role")
async def change_role(
    user_id: str,
    viewer: OwnerDep,
    runtime: RuntimeDep,
    role: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Make a user of this workspace owner or member (never demote its last owner)."""
    try:
        picked = Role(role)
    except ValueError:
        raise Invalid("role", f"role: {role!r} is not owner or member.") from None
    async with runtime.db.transaction() as conn:
        await users_service.set_role(conn, user_id, viewer.workspace_id, picked)
    return RedirectResponse("/console/settings?done=role#users-heading", status_code=303)


@router.post("/settings/users/{user_id}/remove")
async def remove_user(user_id: str, viewer: OwnerDep, runtime: RuntimeDep) -> Response:
    """Take a user out of this workspace (never its last owner); their account stays."""
    async with runtime.db.transaction() as conn:
        await users_service.remove_membership(conn, user_id, viewer.workspace_id)
    return RedirectResponse("/console/settings?done=removed#users-heading", status_code=303)

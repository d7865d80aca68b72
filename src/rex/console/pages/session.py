"""Sign in, sign out, and switch workspace."""

from __future__ import annotations

import hmac
import math
import secrets
from typing import Annotated

from fastapi import Form, Request
from starlette.responses import RedirectResponse, Response

from rex.console.auth import (
    RuntimeDep,
    ViewerDep,
    _same_origin,
    client_address,
    cookie_name,
    csrf_exempt,
    csrf_refused,
    not_found,
    session_policy,
    throttle_policy,
)
from rex.console.routing import console_router
from rex.console.templating import render
from rex.users import service as users
from rex.users import sessions, throttle
from rex.users.passwords import verify_password_async

router = console_router()

LOGIN_CSRF_COOKIE = "rex_login_csrf"
WRONG_CREDENTIALS = "Wrong email or password."


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path of this site, nothing else."""
    if (
        target
        and (target == "/console" or target.startswith(("/console/", "/console?")))
        and not target.startswith("/console/login")
        and "\\" not in target
        and not target.startswith("//")
    ):
        return target
    return "/console"


def _login_page(
    request: Request,
    runtime: RuntimeDep,
    *,
    email: str = "",
    error: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
    next_path: str = "/console",
    headers: dict[str, str] | None = None,
) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        {
            "email": email,
            "error": error,
            "notice": notice,
            "login_csrf": token,
            "next": next_path,
        },
        status_code=status_code,
        headers=headers,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=runtime.settings.secure_cookies,
        path="/console/login",
    )
    return response


@router.get("/login")
async def login_page(request: Request, runtime: RuntimeDep, next: str | None = None) -> Response:
    if getattr(request.state, "viewer", None) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    notice = "You are signed out." if "signed_out" in request.query_params else None
    return _login_page(request, runtime, notice=notice, next_path=safe_next(next))


@router.post("/login")
@csrf_exempt
async def login(
    request: Request,
    runtime: RuntimeDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/console",
) -> Response:
    # No session yet: the form's token must match the cookie it was served with
    # (double submit), and the request must come from the console's own origin.
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not _same_origin(request) or not expected or not hmac.compare_digest(expected, csrf_token):
        return _login_page(
            request, runtime, email=email, error=csrf_refused().message, status_code=403
        )
    settings = runtime.settings
    email = email.strip().lower()
    address = client_address(request)
    now = runtime.clock.now()
    next_path = safe_next(next)
    async with runtime.db.read() as conn:
        locked = await throttle.locked_until(conn, email, address, now)
        row = await users.find_by_email(conn, email) if email else None
    if locked is not None:
        wait = max(1, math.ceil((locked - now).total_seconds()))
        minutes = math.ceil(wait / 60)
        return _login_page(
            request,
            runtime,
            email=email,
            error=(
                "Too many failed sign-ins from this account or address. For your security, "
                f"sign-in is paused: try again in {minutes} minute{'s' if minutes != 1 else ''}."
            ),
            status_code=429,
            next_path=next_path,
            headers={"Retry-After": str(wait)},
        )
    valid = await verify_password_async(row.password_hash if row else None, password)
    if not valid or row is None:
        async with runtime.db.transaction() as conn:
            await throttle.record_failure(
                conn, email or "(none)", address, throttle_policy(settings), now
            )
        return _login_page(
            request,
            runtime,
            email=email,
            error=WRONG_CREDENTIALS,
            status_code=401,
            next_path=next_path,
        )
    async with runtime.db.transaction() as conn:
        await throttle.clear_account(conn, email)
        old = getattr(request.state, "session", None)
        if old is not None:  # a new token at every sign-in: the old one is revoked
            await sessions.revoke(conn, old.id, now)
        members = await users.memberships(conn, row.id)
        token = await sessions.start(
            conn,
            user_id=row.id,
            workspace_id=members[0].workspace_id if members else None,
            policy=session_policy(settings),
            now=now,
            ip=address,
            user_agent=request.headers.get("user-agent"),
        )
        await users.record_sign_in(conn, row.id, now)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        cookie_name(settings),
        token,
        max_age=int(settings.console_session_lifetime),
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
    return response


@router.post("/logout")
async def logout(request: Request, runtime: RuntimeDep) -> Response:
    session = getattr(request.state, "session", None)
    if session is not None:
        async with runtime.db.transaction() as conn:
            await sessions.revoke(conn, session.id, runtime.clock.now())
    response = RedirectResponse("/console/login?signed_out=1", status_code=303)
    response.delete_cookie(
        cookie_name(runtime.settings),
        path="/",
        secure=runtime.settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )
    return response


@router.post("/workspace")
async def switch_workspace(
    viewer: ViewerDep,
    runtime: RuntimeDep,
    workspace_id: Annotated[str, Form(max_length=40)],
) -> Response:
    async with runtime.db.transaction() as conn:
        switched = await sessions.switch_workspace(
            conn, viewer.session.id, viewer.user_id, workspace_id
        )
    if not switched:
        raise not_found()
    return RedirectResponse("/console", status_code=303)

"""Who is looking at the console, and what every console route does before its handler.

``ConsoleRoute`` (the route class of every console router) loads the session from its
cookie, refuses any state change without the session's CSRF token (a form field
``csrf_token`` or an ``X-CSRF-Token`` header) or from another origin, and turns domain errors
into HTML pages: another workspace's object is a 404, like a missing one. Handlers take
``ViewerDep`` (signed in, with a workspace) or ``OwnerDep`` (the workspace's owner).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import RedirectResponse, Response

from rex.api.envelope import ApiError
from rex.client_ip import rate_limit_key
from rex.console.templating import render
from rex.errors import BadCursor, Conflict, DomainError, Invalid, NotFound
from rex.runtime import Runtime, runtime_of
from rex.settings import Settings
from rex.users import service as users
from rex.users import sessions
from rex.users.service import Membership, Role
from rex.users.sessions import ActiveSession, SessionPolicy
from rex.users.throttle import ThrottlePolicy
from rex.workspaces.service import Workspace

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def cookie_name(settings: Settings) -> str:
    """The session cookie: ``__Host-`` prefixed over HTTPS (host-only, path /, Secure)."""
    return "__Host-rex_session" if settings.secure_cookies else "rex_session"


def session_policy(settings: Settings) -> SessionPolicy:
    return SessionPolicy(
        idle=timedelta(seconds=settings.console_session_idle),
        lifetime=timedelta(seconds=settings.console_session_lifetime),
    )


def throttle_policy(settings: Settings) -> ThrottlePolicy:
    return ThrottlePolicy(
        max_per_account=settings.sign_in_max_failures,
        max_per_address=settings.sign_in_max_failures_per_address,
        window=timedelta(seconds=settings.sign_in_lockout),
    )


def client_address(request: Request) -> str:
    """The client's address as sign-in throttling counts it (IPv6: its /64)."""
    runtime = runtime_of(request.app)
    address = runtime.proxy_trust.client_address(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
    )
    return rate_limit_key(address)


def expected_origin(request: Request) -> str:
    """The origin the console's own pages have: ``REX_PUBLIC_URL``, else this request's."""
    public = runtime_of(request.app).settings.public_url
    if public:
        return public.lower()
    return f"{request.url.scheme}://{request.headers.get('host', '')}".lower()


@dataclass(frozen=True)
class Viewer:
    """The signed-in user, looking at one workspace of theirs."""

    session: ActiveSession
    workspace: Workspace
    role: Role
    memberships: list[Membership]

    @property
    def workspace_id(self) -> str:
        return self.workspace.id

    @property
    def user_id(self) -> str:
        return self.session.user_id

    @property
    def email(self) -> str:
        return self.session.email

    @property
    def is_owner(self) -> bool:
        return self.role is Role.OWNER

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token


class ConsoleProblem(Exception):
    """An answer other than the page: a status, a title and a message for people."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


class SignInRequired(Exception):
    pass


def forbidden(message: str = "Only an owner of this workspace can do this.") -> ConsoleProblem:
    return ConsoleProblem(403, "Not allowed", message)


def not_found() -> ConsoleProblem:
    return ConsoleProblem(404, "Not found", "There is nothing here, or it is not yours to see.")


async def _load_session(request: Request) -> ActiveSession | None:
    runtime = runtime_of(request.app)
    token = request.cookies.get(cookie_name(runtime.settings))
    if not token or len(token) > 200:
        return None
    now = runtime.clock.now()
    async with runtime.db.read() as conn:
        session = await sessions.resolve(conn, token, now)
        members = await users.memberships(conn, session.user_id) if session else []
    if session is None:
        return None
    if sessions.needs_touch(session, now):
        async with runtime.db.transaction() as conn:
            await sessions.touch(conn, session.id, session_policy(runtime.settings), now)
    request.state.session = session
    if session.workspace is not None and session.role is not None:
        request.state.viewer = Viewer(session, session.workspace, session.role, members)
    elif members:  # the session's workspace is gone: look at another of the user's
        first = members[0]
        async with runtime.db.transaction() as conn:
            await sessions.switch_workspace(conn, session.id, session.user_id, first.workspace_id)
        async with runtime.db.read() as conn:
            again = await sessions.resolve(conn, token, now)
        if again is not None and again.workspace is not None and again.role is not None:
            request.state.viewer = Viewer(again, again.workspace, again.role, members)
    return session


def _same_origin(request: Request) -> bool:
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.lower() == expected_origin(request)
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}".lower() == expected_origin(request)
    return True


async def _submitted_token(request: Request) -> str | None:
    token = request.headers.get(CSRF_HEADER)
    if token:
        return token
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def csrf_refused() -> ConsoleProblem:
    return ConsoleProblem(
        403,
        "Request refused",
        "This form was not sent from the console page it belongs to (its security token is "
        "missing or stale). Go back, reload the page and try again.",
    )


async def check_csrf(request: Request, expected: str | None) -> None:
    """Refuse a state change from another origin or without the expected token."""
    if not _same_origin(request):
        raise csrf_refused()
    submitted = await _submitted_token(request)
    if not expected or not submitted or not hmac.compare_digest(submitted, expected):
        raise csrf_refused()


def _problem_page(request: Request, problem: ConsoleProblem) -> Response:
    return render(
        request,
        "error.html",
        {"title": problem.title, "message": problem.message, "status": problem.status},
        status_code=problem.status,
    )


def _sign_in_redirect(request: Request) -> Response:
    if request.method in SAFE_METHODS and request.headers.get("x-requested-with") is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/console/login?next={quote(target, safe='')}", status_code=303)
    return render(
        request,
        "error.html",
        {"title": "Signed out", "message": "Your session has ended: sign in again.", "status": 401},
        status_code=401,
    )


class ConsoleRoute(APIRoute):
    """Every console route: session, CSRF, and errors as pages (see the module docstring).

    A route whose endpoint has ``csrf_exempt = True`` checks its own (the sign-in form)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        exempt = bool(getattr(self.endpoint, "csrf_exempt", False))

        async def console_handler(request: Request) -> Response:
            try:
                session = await _load_session(request)
                if request.method not in SAFE_METHODS and not exempt:
                    await check_csrf(request, session.csrf_token if session else None)
                return await handler(request)
            except SignInRequired:
                return _sign_in_redirect(request)
            except ConsoleProblem as problem:
                return _problem_page(request, problem)
            except NotFound:
                return _problem_page(request, not_found())
            except (BadCursor, RequestValidationError):
                return _problem_page(
                    request,
                    ConsoleProblem(
                        400,
                        "Bad request",
                        "This page's address, or the form sent to it, is not valid.",
                    ),
                )
            except (Invalid, Conflict) as exc:
                status = 409 if isinstance(exc, Conflict) else 422
                return _problem_page(request, ConsoleProblem(status, "Not done", exc.message))
            except DomainError as exc:
                return _problem_page(request, ConsoleProblem(400, "Not done", exc.message))
            except ApiError as exc:  # capture's reprocessing still speaks HTTP
                return _problem_page(request, ConsoleProblem(exc.status, "Not done", exc.message))

        return console_handler


async def _viewer(request: Request) -> Viewer:
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    if viewer is not None:
        return viewer
    if getattr(request.state, "session", None) is not None:
        raise ConsoleProblem(
            403,
            "No workspace",
            "Your account belongs to no workspace any more: ask an owner to add you.",
        )
    raise SignInRequired()


async def _owner(viewer: Annotated[Viewer, Depends(_viewer)]) -> Viewer:
    if not viewer.is_owner:
        raise forbidden()
    return viewer


async def _runtime(request: Request) -> Runtime:
    return runtime_of(request.app)


ViewerDep = Annotated[Viewer, Depends(_viewer)]
OwnerDep = Annotated[Viewer, Depends(_owner)]
RuntimeDep = Annotated[Runtime, Depends(_runtime)]


def csrf_exempt(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a route that checks its own CSRF token (before there is a session)."""
    endpoint.csrf_exempt = True  # type: ignore[attr-defined]
    return endpoint

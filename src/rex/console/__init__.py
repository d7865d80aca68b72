"""The console: Rex's web app at ``/console``, served by every API process.

Server-rendered Jinja2 pages (``templates/``), with small scripts and a stylesheet of its own
(``static/``, shipped in the package: no build step, nothing from another host). Each section
is a module of ``pages/`` with its own router; ``auth`` loads the session, checks CSRF and
roles; ``security`` sets the Content-Security-Policy and companion headers. Users, sessions and
passwords themselves are ``rex.users``.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from rex.console.pages import ROUTERS
from rex.console.routing import console_router
from rex.console.security import ConsoleHeadersMiddleware
from rex.console.templating import render

STATIC_DIR = str(files("rex.console") / "static")


class _Static(StaticFiles):
    """The console's assets: cached a day (their URLs carry Rex's version)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["cache-control"] = "public, max-age=86400"
        return response


def install_console(app: FastAPI) -> None:
    """Mount the console's pages and assets on ``app``, with its security headers."""
    for router in ROUTERS:
        app.include_router(router)
    fallback = console_router()

    @fallback.get("/{path:path}")
    async def not_found_page(path: str, request: Request) -> Response:
        return render(
            request,
            "error.html",
            {"title": "Not found", "message": "There is no such page.", "status": 404},
            status_code=404,
        )

    app.mount("/console/static", _Static(directory=STATIC_DIR), name="console-static")
    app.include_router(fallback)
    app.add_middleware(ConsoleHeadersMiddleware)

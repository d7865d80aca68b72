"""Home, Webhooks, Events and Settings until their own pages land (branch console-ops
replaces this module). Settings is owner-only, as its real page will be."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from rex.console.auth import OwnerDep, ViewerDep
from rex.console.routing import console_router
from rex.console.templating import render

router = console_router()


def _placeholder(request: Request, nav: str, title: str) -> Response:
    return render(request, "placeholder.html", {"nav": nav, "title": title})


@router.get("")
async def home(request: Request, viewer: ViewerDep) -> Response:
    return _placeholder(request, "home", "Home")


@router.get("/webhooks")
async def webhooks(request: Request, viewer: ViewerDep) -> Response:
    return _placeholder(request, "webhooks", "Webhooks")


@router.get("/events")
async def events(request: Request, viewer: ViewerDep) -> Response:
    return _placeholder(request, "events", "Events")


@router.get("/settings")
async def settings(request: Request, viewer: OwnerDep) -> Response:
    return _placeholder(request, "settings", "Settings")

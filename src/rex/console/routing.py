"""``console_router()``: an APIRouter whose routes are ``ConsoleRoute`` (session, CSRF,
errors as pages) and stay out of the OpenAPI document (the console is not the API)."""

from __future__ import annotations

from fastapi import APIRouter

from rex.console.auth import ConsoleRoute


def console_router() -> APIRouter:
    return APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

"""The console's pages, one module (with its own ``router``) per section.

To add a page: write ``pages/<section>.py`` with ``router = console_router()`` (from
``rex.console.routing``), handlers taking ``ViewerDep`` or ``OwnerDep`` (``rex.console.auth``)
and answering ``render(request, "<template>.html", {...})``, then list it in ``ROUTERS`` below.
"""

from __future__ import annotations

from fastapi import APIRouter

from rex.console.pages import (
    contacts,
    deals,
    events,
    home,
    leads,
    session,
    settings,
    tasks,
    webhooks,
)

ROUTERS: list[APIRouter] = [
    session.router,
    leads.router,
    contacts.router,
    deals.router,
    tasks.router,
    home.router,
    webhooks.router,
    events.router,
    settings.router,
]

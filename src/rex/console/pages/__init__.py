"""The console's pages, one module (with its own ``router``) per section.

To add a page: write ``pages/<section>.py`` with ``router = console_router()`` (from
``rex.console.routing``), handlers taking ``ViewerDep`` or ``OwnerDep`` (``rex.console.auth``)
and answering ``render(request, "<template>.html", {...})``, then list it in ``ROUTERS`` below.
"""

from __future__ import annotations

from fastapi import APIRouter

from rex.console.pages import contacts, deals, leads, placeholders, session, tasks

ROUTERS: list[APIRouter] = [
    session.router,
    leads.router,
    contacts.router,
    deals.router,
    tasks.router,
    # Home, Webhooks, Events and Settings: placeholders until their pages land.
    placeholders.router,
]

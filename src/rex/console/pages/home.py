"""Home: leads per day by source, deliveries per hour by outcome, capture-to-delivery p50
and p95, failing and disabled endpoints, the backlog (``rex.console.ops_pages.home``)."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from rex.console import ops_pages
from rex.console.auth import RuntimeDep, ViewerDep
from rex.console.routing import console_router
from rex.console.templating import render

router = console_router()


@router.get("")
async def home(request: Request, viewer: ViewerDep, runtime: RuntimeDep) -> Response:
    async with runtime.db.read() as conn:
        data = await ops_pages.home(conn, viewer.workspace_id, now=runtime.clock.now())
    return render(request, "home.html", {"nav": "home", "home": data})
